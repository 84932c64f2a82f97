#!/usr/bin/env bash
# Compress and decompress every image of a folder through the CLI and compare each decoded PNG
# with the encoder's reconstruction (rdvq compress --recon-dir), byte for byte.
#   benchmarks/cli_roundtrip.sh CKPT IMAGE_DIR [rdvq compress options, e.g. --slices 4 --rdo-lambda 0.02]
# Prints one summary line (files, identical, mean bpp); exits non-zero if any PNG differs.
set -euo pipefail
ckpt=$1 images=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rdvq compress --ckpt "$ckpt" --out-dir "$work/files" --recon-dir "$work/encoder" "$@" "$images"/*.png >/dev/null
rdvq decompress --ckpt "$ckpt" --out-dir "$work/decoded" "$work/files"/*.rdvq >/dev/null
total=0 same=0 bits=0 pixels=0
for encoder in "$work/encoder"/*.png; do
    name=$(basename "$encoder" .png)
    total=$((total + 1))
    cmp -s "$encoder" "$work/decoded/$name.png" && same=$((same + 1))
    bits=$((bits + 8 * $(stat -c %s "$work/files/$name.rdvq")))
    pixels=$((pixels + $(python -c "from PIL import Image; w, h = Image.open('$encoder').size; print(w * h)")))
done
echo "$ckpt $*: $same / $total decoded PNGs identical to the encoder's reconstruction, $(python -c "print(f'{$bits / $pixels:.5f}')") bpp (all files)"
[ "$same" -eq "$total" ]
