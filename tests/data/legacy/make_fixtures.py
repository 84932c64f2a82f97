"""Write the compatibility fixtures: tiny checkpoints of every stage and family, and one file each.

Run at commit fd4b27c (codec description version 1: stage-specific checkpoint layouts
``tokenizer.`` / ``rate.entropy_model.`` / ``model.`` and the ``rdvq_joint_rd`` key) with

    .venv/bin/python tests/data/legacy/make_fixtures.py

Checkpoints keep only what a codec reads (weights, codec description, rate-distortion point), so
they stay small. Each file is one image (40 x 1100, wide enough for several coding tiles and
transformer windows) coded with the options in ``manifest.json``; the manifest records the file's
SHA-256 and the decoded symbols' CRC, which ``tests/test_legacy_fixtures.py`` checks against
today's decoder and encoder (bitstream format 2 is unchanged).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import skimage.data
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from rdvq.app.training import run_training_cli  # noqa: E402
from rdvq.codec import ImageCodec  # noqa: E402
from rdvq.codec.image_codec import symbol_crc  # noqa: E402
from rdvq.encode_options import EncodeOptions  # noqa: E402
from rdvq.image_io import write_png  # noqa: E402

CONFIGS = HERE.parents[1] / "configs"
KEEP = ("state_dict", "rdvq_codec", "rdvq_joint_rd", "rdvq_rd_point")
TRANSFORMER = ["--model.init_args.entropy_model=TransformerConfig", "--model.init_args.entropy_model.layers", "1",
               "--model.init_args.entropy_model.width", "16", "--model.init_args.entropy_model.heads", "2"]


def fixture_image() -> torch.Tensor:
    """(3, 40, 1100) in [0, 1]: rows of scikit-image's astronaut, side by side."""
    photo = skimage.data.astronaut()
    strip = np.concatenate([photo[100:140, :550], photo[300:340, :550]], axis=1)
    return torch.from_numpy(np.ascontiguousarray(strip)).permute(2, 0, 1).float() / 255.0


def fit(config: str, root: Path, *extra: str) -> Path:
    run_training_cli(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(root), *extra])
    return root / "checkpoints" / "last.ckpt"


def keep(source: Path, name: str) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    target = HERE / name
    torch.save({k: v for k, v in checkpoint.items() if k in KEEP}, target)
    return target


def main() -> None:
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = keep(fit("tiny_stage_a.yaml", root / "a"), "vq_stage_a.ckpt")
        runs = {
            "vq_uniform.ckpt": ("tiny_stage_b.yaml", ["--model.init_args.entropy_model=UniformConfig"], a),
            "vq_static.ckpt": ("tiny_stage_b.yaml", ["--model.init_args.entropy_model=StaticConfig"], a),
            "vq_hypervq.ckpt": ("tiny_stage_b.yaml", [], a),
            "vq_transformer.ckpt": ("tiny_stage_b.yaml", TRANSFORMER, a),
        }
        made = {}
        for name, (config, extra, init) in runs.items():
            made[name] = keep(fit(config, root / name, "--model.init_from", str(init), *extra), name)
        made["vq_joint_rd.ckpt"] = keep(
            fit("tiny_joint_rd.yaml", root / "c", "--model.init_from", str(made["vq_hypervq.ckpt"])), "vq_joint_rd.ckpt"
        )
        made["vq_stage_d.ckpt"] = keep(
            fit("tiny_stage_d.yaml", root / "vd", "--model.init_from", str(made["vq_joint_rd.ckpt"])), "vq_stage_d.ckpt"
        )
        for quantizer in ("usq", "tcq4", "tcq8"):
            name = f"sq_{quantizer}.ckpt"
            made[name] = keep(fit("tiny_sq.yaml", root / name, "--model.init_args.codec.quantizer", quantizer), name)
        made["sq_stage_d.ckpt"] = keep(
            fit("tiny_stage_d.yaml", root / "sd", "--model.init_from", str(made["sq_usq.ckpt"]),
                "--model.init_args.train_hyper_decoder", "true"), "sq_stage_d.ckpt"
        )
    image = fixture_image()
    write_png(HERE / "image.png", image)
    cases = [
        ("vq_uniform.ckpt", EncodeOptions()),
        ("vq_static.ckpt", EncodeOptions()),
        ("vq_hypervq.ckpt", EncodeOptions()),
        ("vq_hypervq.ckpt", EncodeOptions(top_k=4, search_width=8)),
        ("vq_transformer.ckpt", EncodeOptions()),
        ("vq_transformer.ckpt", EncodeOptions(slices=2, completion="sample", seed=7)),
        ("vq_joint_rd.ckpt", EncodeOptions(rdo_lambda=0.01)),
        ("vq_stage_d.ckpt", EncodeOptions()),
        ("sq_usq.ckpt", EncodeOptions()),
        ("sq_tcq4.ckpt", EncodeOptions()),
        ("sq_tcq8.ckpt", EncodeOptions()),
        ("sq_stage_d.ckpt", EncodeOptions()),
    ]
    for number, (checkpoint, options) in enumerate(cases):
        codec = ImageCodec.from_checkpoint(HERE / checkpoint, engine="torch")
        encoded = codec.encode(image, options, estimate=False)
        file_name = f"{Path(checkpoint).stem}_{number}.rdvq"
        (HERE / file_name).write_bytes(encoded.data)
        entries.append({
            "checkpoint": checkpoint,
            "file": file_name,
            "options": {k: v for k, v in asdict(options).items() if k in options.requested()},
            "file_sha256": hashlib.sha256(encoded.data).hexdigest(),
            "symbol_crc": symbol_crc(encoded.symbols),
            "fingerprint": codec.fingerprint.hex(),
        })
    (HERE / "manifest.json").write_text(json.dumps({"image": "image.png", "files": entries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
