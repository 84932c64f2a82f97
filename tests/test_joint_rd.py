"""Stage C (JointRD): the rate's gradient reaches the encoder through the soft posterior, a larger
lambda gives fewer bits, the rate-distortion point lives in the checkpoint, and a run from a
stage B checkpoint trains, logs lambda and tau, and writes files that decode."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from conftest import fit
from datamodules import sample_photo_paths
from rdvq.codec import ImageCodec
from rdvq.checkpointing import read_checkpoint
from rdvq.entropy import StaticConfig, TransformerConfig
from rdvq.errors import ConfigError
from rdvq.image_io import read_image
from rdvq.stages import AdversarialConfig, DistortionConfig, JointRD
from rdvq.checkpointing import RD_POINT_KEY
from rdvq.stages.vq_parts import rate
from rdvq.tokenizer import TokenizerConfig
from test_training import FixedBatch, _trainer

TINY = TokenizerConfig(base_channels=8, channel_mult=[1, 2, 2], scales=[4], embed_dim=8, codebook_size=32)


def _photo_batch() -> torch.Tensor:
    photo = read_image(sample_photo_paths("train")[0])
    return torch.stack([photo[:, 32 * i : 32 * i + 32, 100:132] for i in range(4)])


def _stage(entropy_model=None, **kwargs) -> JointRD:
    kwargs.setdefault("tokenizer", None if "init_from" in kwargs else TINY)
    return JointRD(
        entropy_model=entropy_model, distortion=DistortionConfig(perceptual_weight=0.0),
        adversarial=AdversarialConfig(weight=0.0), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3), **kwargs,
    )


def _encoder_gradient(stage: JointRD, batch: torch.Tensor) -> float:
    tokenizer = stage.codec.tokenizer
    quantization = tokenizer.quantize(tokenizer.encode(batch))
    tau = stage.rd_point.tau if stage.rate_targets == "soft" else None
    bpp, _ = rate(stage.codec, quantization, batch.shape[-2] * batch.shape[-1], tau, observe=False)
    if not bpp.requires_grad:  # nothing on the rate's path has a gradient
        return 0.0
    bpp.backward()
    return sum(float(p.grad.abs().sum()) for p in tokenizer.encoder.parameters() if p.grad is not None)


@pytest.mark.parametrize("targets", ["soft", "hard"])
def test_rate_gradient_reaches_the_encoder_through_the_soft_posterior(targets: str) -> None:
    """The static table's rate depends on the latents only through the targets: with the soft
    posterior the encoder gets a gradient, with hard indices it gets none."""
    torch.manual_seed(0)
    stage = _stage(StaticConfig(), rate_targets=targets)
    stage.codec.entropy_model.counts(0).copy_(torch.rand(32, dtype=torch.float64) * 100)
    gradient = _encoder_gradient(stage, _photo_batch())
    assert (gradient > 0) == (targets == "soft"), gradient
    assert all(q.codebook.grad is None for q in stage.codec.tokenizer.quantizers)  # frozen by default


def test_transformer_rate_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    stage = _stage(TransformerConfig(layers=1, width=16, heads=2, window=8))
    with torch.no_grad():
        for head in stage.codec.entropy_model.heads:
            head.weight.normal_(0.0, 0.5)
    assert _encoder_gradient(stage, _photo_batch()) > 0


def test_a_larger_lambda_gives_fewer_bits(stage_b_checkpoint: Path) -> None:
    batch = _photo_batch()
    bits = {}
    for lmbda in (0.0, 1.0):
        torch.manual_seed(0)
        stage = _stage(init_from=str(stage_b_checkpoint), lmbda=lmbda, tau=0.05)
        _trainer(12).fit(stage, FixedBatch(batch, 12))
        stage.eval()
        with torch.no_grad():
            quantization = stage.codec.tokenizer.quantize(stage.codec.tokenizer.encode(batch))
            bits[lmbda] = float(rate(stage.codec, quantization, 1, None, observe=False)[0])
    assert bits[1.0] < 0.8 * bits[0.0], bits


def test_the_rd_point_is_set_by_a_sweep_and_kept_in_checkpoints() -> None:
    stage = _stage(StaticConfig(), lmbda=0.2, tau=0.05)
    point = stage.rd_point
    assert (point.lmbda, point.tau) == (0.2, 0.05)
    point.set_rd_point(0.7, None)
    assert (point.lmbda, point.tau) == (0.7, 0.05)
    point.set_rd_point(1.5, 0.1)
    checkpoint = {"state_dict": stage.state_dict()}
    stage.on_save_checkpoint(checkpoint)
    assert checkpoint[RD_POINT_KEY] == {"lmbda": 1.5, "tau": 0.1}
    resumed = _stage(StaticConfig(), lmbda=0.2, tau=0.05)
    resumed.on_load_checkpoint(checkpoint)
    assert (resumed.rd_point.lmbda, resumed.rd_point.tau) == (1.5, 0.1)
    with pytest.raises(ConfigError, match="tau"):
        point.set_rd_point(1.0, 0.0)
    with pytest.raises(ConfigError, match="lmbda"):
        _stage(StaticConfig(), lmbda=-1.0)


def test_stage_c_from_a_stage_b_checkpoint(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    fit("tiny_joint_rd.yaml", tmp_path, "--model.init_from", str(stage_b_checkpoint))
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ramp = [float(r["train/lambda_effective"]) for r in rows if r.get("train/lambda_effective")]
    assert ramp == pytest.approx([0.0, 0.05, 0.1, 0.1])  # lmbda 0.1, warm-up over 2 steps
    assert {round(float(r["train/tau"]), 6) for r in rows if r.get("train/tau")} == {0.05}
    assert any(r.get("val/bpp_real") for r in rows)
    last = tmp_path / "checkpoints" / "last.ckpt"
    stored = read_checkpoint(last)
    assert stored[RD_POINT_KEY] == {"lmbda": 0.1, "tau": 0.05}
    before = read_checkpoint(stage_b_checkpoint)["state_dict"]
    for name, tensor in stored["state_dict"].items():
        if name.endswith("codebook"):  # frozen: bit-identical to stage B's
            assert torch.equal(tensor, before[name])
    codec = ImageCodec.from_checkpoint(last)
    image = read_image(sample_photo_paths("val")[0])[:, :48, :64]
    encoded = codec.encode(image)
    assert torch.equal(codec.decompress(encoded.data), encoded.reconstruction)
