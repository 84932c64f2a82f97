"""Stage D: for the scalar codec (USQ and TCQ) and the VQ codec it trains the decoder only (the
optional hyper-decoder too, for the scalar codec), on exactly the symbols the deployed encoder
writes; a short run lowers the distortion on a fixed batch; its checkpoints resume, compress and
decompress like any other; bad configurations are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import fit
from rdvq.codec import ImageCodec
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.stages import DecoderRetraining, ScalarCodecTraining
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig
from rdvq.checkpointing import RD_POINT_KEY
from rdvq.sq import ScalarCodecConfig
from test_codec import assert_round_trip
from test_training import FixedBatch

DECODER_PREFIX = {"sq": ("codec.model.g_s.",), "vq": ("codec.tokenizer.decoder.",)}


def _scalar_checkpoint(path: Path, quantizer: str) -> Path:
    """A tiny scalar codec with varied symbols, saved as a stage checkpoint (no training needed)."""
    torch.manual_seed(0)
    stage = ScalarCodecTraining(
        codec=ScalarCodecConfig(channels=8, latent_channels=6, quantizer=quantizer), lmbda=0.02,
        distortion=DistortionConfig(perceptual_weight=0.0), adversarial=AdversarialConfig(weight=0.0),
    )
    with torch.no_grad():
        stage.codec.model.g_a[-1].weight.mul_(40.0)
        stage.codec.model.h_s[-1].bias[:6].add_(1.0)
    checkpoint = {"state_dict": stage.state_dict()}
    stage.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, stage_b_checkpoint: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stage_d_inputs")
    return {
        "usq": _scalar_checkpoint(root / "usq.ckpt", "usq"),
        "tcq4": _scalar_checkpoint(root / "tcq4.ckpt", "tcq4"),
        "vq": stage_b_checkpoint,
    }


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _stage(checkpoint: Path, lr: float = 1e-3, **kwargs) -> DecoderRetraining:
    return DecoderRetraining(
        init_from=str(checkpoint), distortion=DistortionConfig(perceptual_weight=0.0), adversarial=AdversarialConfig(weight=0.0),
        optimizer=lambda p: torch.optim.Adam(p, lr=lr), **kwargs,
    )


def _train(stage: DecoderRetraining, steps: int, batch: torch.Tensor, root: Path | None = None, ckpt_path=None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root,
    )
    trainer.fit(stage, FixedBatch(batch, steps), ckpt_path=ckpt_path)
    return trainer


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not (torch.equal(before[k], after[k]) or (before[k].is_floating_point() and before[k].isnan().all()))}


@pytest.mark.parametrize("kind", ["usq", "tcq4", "vq"])
def test_stage_d_trains_only_the_decoder_and_its_checkpoint_is_a_codec(kind: str, checkpoints, tmp_path: Path) -> None:
    source = checkpoints[kind]
    stage = _stage(source)
    trainer = _train(stage, 3, _batch())
    trainer.save_checkpoint(tmp_path / "d.ckpt")
    before = torch.load(source, weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "d.ckpt", weights_only=True)
    changed = _changed(before, after["state_dict"])
    assert changed and all(k.startswith(DECODER_PREFIX["vq" if kind == "vq" else "sq"]) for k in changed), changed
    assert after["rdvq_codec"] == torch.load(source, weights_only=True)["rdvq_codec"]
    assert_round_trip(ImageCodec.from_checkpoint(tmp_path / "d.ckpt"), torch.rand(3, 37, 53))


@pytest.mark.parametrize("kind, options", [("tcq4", EncodeOptions(rdo_lambda=0.5)), ("vq", EncodeOptions(rdo_lambda=0.5))])
def test_stage_d_trains_on_exactly_what_the_codec_writes(kind: str, options: EncodeOptions, checkpoints) -> None:
    stage = _stage(checkpoints[kind], options=options)
    batch = _batch(1)
    _, symbols = stage.deployed_symbols(batch)
    codec = ImageCodec.from_checkpoint(checkpoints[kind])
    for i, image in enumerate(batch):
        for got, written in zip(symbols, codec.encode(image, options).symbols):
            assert torch.equal(got[i : i + 1], written)


def test_a_short_stage_d_run_lowers_the_distortion_of_trellis_coded_latents(checkpoints) -> None:
    stage = _stage(checkpoints["tcq4"], lr=3e-3)
    batch = _batch(2)

    def distortion() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(stage.codec.synthesize(stage.deployed_symbols(batch)[1], (64, 64)), batch))

    start = distortion()
    _train(stage, 30, batch)
    assert distortion() < 0.7 * start


def test_the_hyper_decoder_retrains_on_rate_and_distortion(checkpoints, tmp_path: Path) -> None:
    stage = _stage(checkpoints["usq"], train_hyper_decoder=True)
    assert stage.rd_point.lmbda == torch.load(checkpoints["usq"], weights_only=True)[RD_POINT_KEY]["lmbda"]
    trainer = _train(stage, 3, _batch())
    trainer.save_checkpoint(tmp_path / "d.ckpt")
    changed = _changed(torch.load(checkpoints["usq"], weights_only=True)["state_dict"],
                       torch.load(tmp_path / "d.ckpt", weights_only=True)["state_dict"])
    assert {k.split(".")[2] for k in changed} == {"g_s", "h_s"}
    assert_round_trip(ImageCodec.from_checkpoint(tmp_path / "d.ckpt"), torch.rand(3, 30, 70))
    with pytest.raises(ConfigError, match="no hyper-decoder"):
        _stage(checkpoints["vq"], train_hyper_decoder=True)


def test_stage_d_resumes_from_its_own_checkpoint(checkpoints, tmp_path: Path) -> None:
    batch = _batch()
    trainer = _train(_stage(checkpoints["tcq4"]), 2, batch)
    trainer.save_checkpoint(tmp_path / "d.ckpt")
    saved = torch.load(tmp_path / "d.ckpt", weights_only=True)["state_dict"]
    resumed = _stage(checkpoints["tcq4"])
    trainer = _train(resumed, 2, batch, ckpt_path=str(tmp_path / "d.ckpt"))  # nothing left to train: loads only
    assert trainer.global_step == 2
    for name, tensor in resumed.codec.model.g_s.state_dict().items():
        assert torch.equal(tensor, saved[f"codec.model.g_s.{name}"])


def test_stage_d_refuses_what_the_codec_cannot_do(checkpoints, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--top-k"):
        _stage(checkpoints["usq"], options=EncodeOptions(top_k=4))
    with pytest.raises(ConfigError, match="--slices"):
        _stage(checkpoints["vq"], options=EncodeOptions(slices=2))
    with pytest.raises(ConfigError, match="init_from"):
        DecoderRetraining(init_from="")


def test_stage_d_through_the_cli(checkpoints, tmp_path: Path) -> None:
    cli = fit("tiny_stage_d.yaml", tmp_path, "--model.init_from", str(checkpoints["tcq4"]),
              "--model.init_args.options.rdo_lambda", "0.2", "--trainer.max_steps", "3")
    assert cli.model.options == EncodeOptions(rdo_lambda=0.2)
    assert_round_trip(ImageCodec.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt"), torch.rand(3, 33, 65))
