"""Checkpoints and files written before the codec became one module still work.

``tests/data/legacy`` holds tiny checkpoints of every stage and family saved by rdvq at fd4b27c
(codec description version 1) and one file per entropy model and SQ quantizer, coded from
``image.png`` (40 x 1100 pixels: several hyper-synthesis tiles and transformer windows). The files
pin each model's layout (tiles, slice order, header parameter order) beside the engine's golden
streams: they must decode to the recorded symbols, and today's encoder must write them byte for
byte from the migrated checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from rdvq.checkpointing import CODEC_PREFIX, DESCRIPTION_VERSION, RD_POINT_KEY, read_checkpoint
from rdvq.codec import ImageCodec
from rdvq.codec.image_codec import symbol_crc
from rdvq.encode_options import EncodeOptions
from rdvq.image_io import read_image
from rdvq.stages import JointRD, RateAdaptation

LEGACY = Path(__file__).parent / "data" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_legacy_files_decode_and_reencode_byte_for_byte(entry: dict) -> None:
    codec = ImageCodec.from_checkpoint(LEGACY / entry["checkpoint"])
    assert codec.fingerprint.hex() == entry["fingerprint"]
    data = (LEGACY / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["file_sha256"]
    decoded = codec.unpack(data)
    assert symbol_crc(decoded.symbols) == entry["symbol_crc"]
    image = read_image(LEGACY / "image.png")
    encoded = codec.encode(image, EncodeOptions(**entry["options"]), estimate=False)
    assert encoded.data == data
    assert torch.equal(codec.decompress(data), encoded.reconstruction)


def test_version_1_checkpoints_are_migrated_on_read() -> None:
    joint = read_checkpoint(LEGACY / "vq_joint_rd.ckpt")
    assert joint["rdvq_codec"]["version"] == DESCRIPTION_VERSION == 2
    assert joint[RD_POINT_KEY] == {"lmbda": 0.1, "tau": 0.05} and "rdvq_joint_rd" not in joint
    assert all(k.startswith(CODEC_PREFIX) for k in joint["state_dict"])
    assert any(k.startswith("codec.entropy_model.") for k in joint["state_dict"])
    scalar = read_checkpoint(LEGACY / "sq_usq.ckpt")
    assert all(k.startswith("codec.model.") for k in scalar["state_dict"]) and scalar[RD_POINT_KEY]["tau"] is None
    original = torch.load(LEGACY / "vq_stage_a.ckpt", weights_only=True)
    migrated = read_checkpoint(LEGACY / "vq_stage_a.ckpt")
    for key, tensor in original["state_dict"].items():
        assert torch.equal(migrated["state_dict"]["codec." + key], tensor)


def test_a_version_1_checkpoint_initializes_the_next_stage() -> None:
    stage = RateAdaptation(init_from=str(LEGACY / "vq_stage_a.ckpt"))
    stored = torch.load(LEGACY / "vq_stage_a.ckpt", weights_only=True)["state_dict"]
    own = stage.codec.tokenizer.state_dict()
    assert all(torch.equal(own[k[len("tokenizer."):]], v) for k, v in stored.items() if k.startswith("tokenizer."))
    joint = JointRD(init_from=str(LEGACY / "vq_hypervq.ckpt"), lmbda=0.3)
    model = torch.load(LEGACY / "vq_hypervq.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(joint.codec.entropy_model.state_dict()["priors.0.analysis.0.weight"],
                       model["rate.entropy_model.priors.0.analysis.0.weight"])
