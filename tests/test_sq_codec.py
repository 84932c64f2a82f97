"""The scalar codec family: bit-exact round trips with rounding and with TCQ on odd sizes and over
several coding tiles, CompressAI's scale-to-table mapping, tiles that see the hyper-synthesis'
whole receptive field, valid state-conditioned tables, typed errors for files it did not write,
and a loaded codec that codes without importing CompressAI."""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdvq.codec import ImageCodec, SQCodec, container
from rdvq.coding import QuantizedCdfs
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError, InvalidHeaderError, ModelMismatchError
from rdvq.sq import ScalarCodecConfig, ScalarHyperprior
from rdvq.sq.gaussian import build_indexes
from rdvq.hyper.tiles import HALO, tile_spans
from rdvq.sq.trellis import quantizers_of_levels
from conftest import kodak_dir
from test_codec import assert_round_trip, rdvq

REPO = Path(__file__).resolve().parents[1]


def make_sq_model(quantizer: str = "usq", seed: int = 0) -> ScalarHyperprior:
    """A tiny untrained model whose latents and scales are large enough to give varied symbols."""
    torch.manual_seed(seed)
    model = ScalarHyperprior(ScalarCodecConfig(channels=8, latent_channels=6, quantizer=quantizer))
    with torch.no_grad():
        model.g_a[-1].weight.mul_(400.0)
        model.h_a[-1].weight.mul_(20.0)
        model.h_s[-1].bias[:6].add_(3.0)  # the scale half of the hyper-synthesis output
    model.update_tables()
    return model.eval()


@functools.cache
def make_sq_codec(quantizer: str = "usq", seed: int = 0) -> ImageCodec:
    return ImageCodec(SQCodec(make_sq_model(quantizer, seed)))


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (20, 1090)])
@pytest.mark.parametrize("quantizer", ["usq", "tcq4", "tcq8"])
def test_round_trip_is_bit_exact(quantizer: str, size: tuple[int, int]) -> None:
    codec = make_sq_codec(quantizer)
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    data = assert_round_trip(codec, image)
    assert container.unpack(data).model_id == ("usq", "tcq4", "tcq8").index(quantizer)
    levels = codec.unpack(data).symbols[1]
    assert levels.abs().max() > 2  # the test exercises real symbols, not an all-zero image
    if size[1] > 1024:
        assert len(tile_spans(levels.shape[-1] // 4)) == 2
    if quantizer != "usq":  # every level is one its trellis state's quantizer can reconstruct
        codec.latent.model.quantizers(levels)


@pytest.mark.parametrize("quantizer", ["usq", "tcq4"])
def test_rdo_lambda_trades_bits_for_distortion(quantizer: str) -> None:
    """USQ: entropy-constrained rounding; TCQ: the trellis Lagrangian. Files decode unchanged."""
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    codec = make_sq_codec(quantizer)
    sizes = [len(assert_round_trip(codec, image, EncodeOptions(rdo_lambda=value))) for value in (0.0, 5.0)]
    assert sizes[1] < sizes[0]  # a larger Lagrangian spends fewer bits
    if quantizer == "usq":  # lambda 0 is rounding
        assert codec.compress(image, EncodeOptions(rdo_lambda=0.0)) == codec.compress(image)
    with pytest.raises(ConfigError, match="--top-k"):
        codec.compress(image, EncodeOptions(top_k=4))


def test_trellis_rows_restart_in_every_tile() -> None:
    """Each row of each coding tile is one trellis: the decoder derives the quantizers tile by tile."""
    codec = make_sq_codec("tcq8")
    levels = codec.encode(torch.rand(3, 20, 1090, generator=torch.Generator().manual_seed(4))).symbols[1]
    second_tile = levels[..., 64:]
    quantizers = codec.latent.model.quantizers(levels)
    assert torch.equal(quantizers[..., 64:], quantizers_of_levels(second_tile, codec.latent.model.trellis))


def test_scales_map_to_tables_as_compressai_does() -> None:
    from compressai.entropy_models import GaussianConditional
    from compressai.models.base import get_scale_table

    reference = GaussianConditional(None)
    reference.update_scale_table(get_scale_table())
    table = reference.scale_table
    scales = torch.cat([
        torch.rand(5000) * 300 - 20,
        table, torch.nextafter(table, torch.tensor(-1.0)), torch.nextafter(table, torch.tensor(1e9)),
        torch.tensor([0.0, 0.11, 1e-8, 1e6, -3.0]),
    ]).reshape(1, 1, -1)
    ours = build_indexes(scales, table, reference.scale_bound)
    assert torch.equal(ours, reference.build_indexes(scales).to(ours.dtype))


def test_coding_tiles_see_the_whole_receptive_field() -> None:
    model = make_sq_model()
    z = torch.randn(1, 8, 37, 45).round()
    with torch.no_grad():
        whole_means, whole_scales = model.gaussian_parameters(z)
        means, scales = model.tiled_gaussians(z)
    assert len(tile_spans(37)) * len(tile_spans(45)) == 9 and HALO >= 2
    torch.testing.assert_close(means, whole_means, rtol=0, atol=1e-5)
    torch.testing.assert_close(scales, whole_scales, rtol=0, atol=1e-5)


def test_trellis_tables_are_valid_cdfs_of_the_decision_cells() -> None:
    model = make_sq_model("tcq4")
    cdfs = QuantizedCdfs.from_entropy_model(model.trellis_tables)  # refuses invalid 16-bit CDFs
    scales = model.gaussian_conditional.scale_table
    assert cdfs.num_tables == 2 * scales.numel()
    # Q0 and Q1 of one scale: equal index ranges; Q1's zero is likelier under a wide Gaussian in Q0
    # (cell [-1, 1] against [-0.5, 0.5]).
    for i in (0, 20, 63):
        q0, q1 = cdfs.rows[2 * i], cdfs.rows[2 * i + 1]
        assert q0.numel() == q1.numel() and int(cdfs.offsets[2 * i]) == int(cdfs.offsets[2 * i + 1])
        zero = -int(cdfs.offsets[2 * i])
        assert q0[zero] >= q1[zero]


def test_files_of_another_quantizer_or_layout_are_refused() -> None:
    image = torch.rand(3, 40, 40)
    usq, tcq = make_sq_codec("usq"), make_sq_codec("tcq4")
    parsed = container.unpack(usq.compress(image))
    with pytest.raises(ModelMismatchError):
        tcq.decompress(usq.compress(image))  # another model altogether (fingerprint)
    for field, value in (("model_id", 1), ("parameters", (0,)), ("streams", (b"", b""))):
        crafted = container.pack(dataclasses.replace(parsed, **{field: value}))
        with pytest.raises(ModelMismatchError if field == "model_id" else InvalidHeaderError):
            usq.decompress(crafted)


def save_checkpoint(model: ScalarHyperprior, path: Path) -> Path:
    """``model`` as an SQ stage checkpoint holds it (weights under ``codec.model.``, codec description)."""
    from rdvq.checkpointing import write_codec_description

    checkpoint = {"state_dict": {f"codec.model.{k}": v for k, v in model.state_dict().items()}}
    write_codec_description(checkpoint, "sq", **SQCodec(model).description())
    torch.save(checkpoint, path)
    return path


def test_a_loaded_codec_codes_without_importing_compressai(tmp_path: Path) -> None:
    model = make_sq_model("tcq4")
    path = save_checkpoint(model, tmp_path / "sq.ckpt")
    script = (
        "import sys, torch\n"
        "from rdvq.codec import ImageCodec\n"
        f"codec = ImageCodec.from_checkpoint({str(path)!r})\n"
        "image = torch.rand(3, 50, 70)\n"
        "encoded = codec.encode(image, estimate=False)\n"
        "assert torch.equal(codec.decompress(encoded.data), encoded.reconstruction)\n"
        "print('compressai' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
    # Same fingerprint whether the model is the training one or the coding one.
    assert ImageCodec.from_checkpoint(path).fingerprint == ImageCodec(SQCodec(model)).fingerprint


def test_kodak_images_round_trip_through_the_cli_with_tcq(tmp_path: Path) -> None:
    """Three Kodak images (benchmarks/retraining.py codes all 24 with trained models)."""
    sources = sorted(str(p) for p in kodak_dir().glob("kodim*.png"))[::8]
    checkpoint = str(save_checkpoint(make_sq_model("tcq8"), tmp_path / "tcq.ckpt"))
    done = rdvq("compress", *sources, "--ckpt", checkpoint, "--out-dir", str(tmp_path / "files"),
                "--recon-dir", str(tmp_path / "encoder"), "--rdo-lambda", "0.2")
    assert done.returncode == 0, done.stderr
    files = sorted(str(p) for p in (tmp_path / "files").glob("*.rdvq"))
    done = rdvq("decompress", *files, "--ckpt", checkpoint, "--out-dir", str(tmp_path / "decoder"))
    assert done.returncode == 0, done.stderr
    for source in sources:
        name = Path(source).name
        assert (tmp_path / "decoder" / name).read_bytes() == (tmp_path / "encoder" / name).read_bytes(), name
    done = rdvq("compress", sources[0], "--ckpt", checkpoint, "-o", str(tmp_path / "x.rdvq"), "--top-k", "4")
    assert done.returncode == 1 and done.stderr.strip().endswith(": the scalar codec (tcq8) does not support --top-k")
    assert "Traceback" not in done.stderr
