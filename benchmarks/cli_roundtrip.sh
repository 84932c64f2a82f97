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
total=0 same=0
for encoder in "$work/encoder"/*.png; do
    total=$((total + 1))
    cmp -s "$encoder" "$work/decoded/$(basename "$encoder")" && same=$((same + 1))
done
bpp=$(python - "$work" <<'PY'
import math
import sys
from pathlib import Path
from PIL import Image
work = Path(sys.argv[1])
bits = sum(8 * f.stat().st_size for f in (work / "files").glob("*.rdvq"))
pixels = sum(math.prod(Image.open(p).size) for p in (work / "encoder").glob("*.png"))
print(f"{bits / pixels:.5f}")
PY
)
echo "$ckpt${*:+ $*}: $same / $total decoded PNGs identical to the encoder's reconstruction, $bpp bpp (all files)"
[ "$same" -eq "$total" ]
