"""Bit-exact round trips for every entropy model and tokenizer layout, odd image inputs, rate
accuracy of a trained model, checkpoint loading, the stage B freeze and the codec CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import kodak_dir
from datamodules import sample_photo_paths
from rdvq.codec import ImageCodec, VQCodec
from rdvq.coding import probability as P
from rdvq.encode_options import EncodeOptions
from rdvq.entropy import ENTROPY_MODELS, build_entropy_model
from rdvq.entropy.hypervq import gaussian_log_probs
from rdvq.errors import CheckpointError, ConfigError, DecodeMismatchError, ModelMismatchError
from rdvq.image_io import ImageWarning, read_image, to_uint8
from rdvq.tokenizer import Tokenizer, TokenizerConfig

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {
    "single": dict(channel_mult=[1, 2, 2], scales=[4]),
    "multi": dict(channel_mult=[1, 2, 2, 2], scales=[2, 4, 8]),
    "residual": dict(channel_mult=[1, 2, 2], scales=[4], residual_stages=2, l2_normalize=False),
}


ENTROPY_KWARGS = {
    "hypervq": dict(hyper_channels=3, hyper_hidden=8),
    "static": {},
    "uniform": {},
    "transformer": dict(layers=1, width=16, heads=2, window=8),
}


def make_codec(layout: str, kind: str, sigma: str = "scalar", engine: str = "auto") -> ImageCodec:
    torch.manual_seed(0)
    config = TokenizerConfig(base_channels=8, embed_dim=4, codebook_size=48, **LAYOUTS[layout])
    tokenizer = Tokenizer(config).eval()
    extra = dict(sigma=sigma) if kind == "hypervq" else {}
    entropy_config = ENTROPY_MODELS[kind].config_class(**ENTROPY_KWARGS[kind], **extra)
    model = build_entropy_model(entropy_config, tokenizer).eval()
    if kind == "static":
        for i in range(len(tokenizer.branches)):
            model.counts(i).copy_(torch.rand(48, dtype=torch.float64) * 100)
    if kind == "transformer":  # a trained model's heads are not zero: give it non-uniform distributions
        with torch.no_grad():
            for head in model.heads:
                head.weight.normal_(0.0, 0.5)
    model.update_tables()
    return ImageCodec(VQCodec(tokenizer, model, entropy_config, engine))


def assert_round_trip(codec: ImageCodec, image: torch.Tensor, options: EncodeOptions = EncodeOptions()) -> bytes:
    encoded = codec.encode(image, options)
    decoded = codec.unpack(encoded.data)
    assert (decoded.height, decoded.width) == tuple(image.shape[-2:])
    assert len(decoded.symbols) == len(encoded.symbols)
    for got, sent in zip(decoded.symbols, encoded.symbols):
        assert torch.equal(got, sent)
    decoded_image = codec.decompress(encoded.data)
    assert decoded_image.shape == image.shape
    assert torch.equal(decoded_image, encoded.reconstruction)
    return encoded.data


@pytest.mark.parametrize("size", [(37, 53), (1, 1)])
@pytest.mark.parametrize("kind", ["uniform", "static", "hypervq", "transformer"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_round_trip_is_bit_exact(layout: str, kind: str, size: tuple[int, int]) -> None:
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    assert_round_trip(make_codec(layout, kind), image)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_round_trip_with_bounded_tail_floor_and_diagonal_sigma(layout: str) -> None:
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2))
    assert_round_trip(make_codec(layout, "hypervq", sigma="diagonal"), image, EncodeOptions(top_k=5))


@pytest.mark.parametrize("kind", ["uniform", "static"])
def test_options_a_model_does_not_implement_are_refused(kind: str) -> None:
    with pytest.raises(ConfigError, match="--top-k"):
        make_codec("single", kind).compress(torch.rand(3, 16, 16), EncodeOptions(top_k=4))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_odd_image_files_round_trip(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"image_{mode.replace(';', '')}.png"
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (21, 30), dtype=np.uint16)).save(path)
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 256, (21, 30, 4), dtype=np.uint8), "RGBA").save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)).convert(mode).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path)
    # Only a dropped alpha channel is worth a warning; a grey, palette or 16-bit file is no loss.
    expected = [f"{path}: discarded the alpha channel (transparency) of the image"] if mode == "RGBA" else []
    assert [(w.category, str(w.message)) for w in caught] == [(ImageWarning, m) for m in expected]
    assert image.shape == (3, 21, 30)
    assert_round_trip(make_codec("single", "hypervq"), image)


def test_decoding_with_another_model_is_refused() -> None:
    data = make_codec("single", "hypervq").compress(torch.rand(3, 16, 16))
    with pytest.raises(ModelMismatchError):
        make_codec("multi", "hypervq").decompress(data)


def test_index_checksum_catches_a_decoder_with_other_probabilities() -> None:
    codec = make_codec("single", "static")
    data = codec.compress(torch.rand(3, 32, 32))
    model = codec.latent.entropy_model
    model.counts(0).copy_(model.counts(0).flip(0))  # same fingerprint, different table
    with pytest.raises(DecodeMismatchError):
        codec.decompress(data)


def test_empty_index_maps_never_reach_the_coder() -> None:
    codec = make_codec("single", "uniform")
    codec.latent.tokenizer.quantizers[0].codebook_size = 1  # alphabet of one: nothing to code
    encoded = codec.encode(torch.rand(3, 8, 8))
    assert len(encoded.data) < 64


# ---------------------------------------------------------------------------------------- trained
def test_checkpoint_tables_are_used_as_stored(stage_b_checkpoint: Path) -> None:
    saved = torch.load(stage_b_checkpoint, weights_only=True)["state_dict"]
    codec = ImageCodec.from_checkpoint(stage_b_checkpoint)
    for name, tensor in codec.latent.entropy_model.state_dict().items():
        if name.endswith(("_quantized_cdf", "_offset", "_cdf_length")):
            assert tensor.numel() > 0 and torch.equal(tensor, saved[f"codec.entropy_model.{name}"]), name
    image = read_image(sample_photo_paths("val")[0])
    assert_round_trip(codec, image[:, :96, :128])


def test_file_size_matches_the_estimate_of_a_trained_model(stage_b_checkpoint: Path) -> None:
    codec = ImageCodec.from_checkpoint(stage_b_checkpoint)
    image = read_image(sample_photo_paths("val")[1])
    encoded = codec.encode(image)
    header_bits = 8 * (37 + 3)  # fixed fields + the varint parameter and length
    coder_slack_bits = 64  # the range coder flushes at most two words
    assert len(encoded.data) * 8 <= 1.01 * encoded.estimated_bits + header_bits + coder_slack_bits
    assert len(encoded.data) * 8 >= 0.99 * encoded.estimated_bits


def test_all_kodak_images_round_trip_through_the_cli(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    sources = sorted(str(p) for p in kodak_dir().glob("kodim*.png"))
    assert len(sources) == 24
    done = rdvq("compress", *sources, "--ckpt", str(stage_b_checkpoint), "--out-dir", str(tmp_path / "files"),
                "--recon-dir", str(tmp_path / "encoder"), "--top-k", "8")
    assert done.returncode == 0, done.stderr
    files = sorted(str(p) for p in (tmp_path / "files").glob("*.rdvq"))
    done = rdvq("decompress", *files, "--ckpt", str(stage_b_checkpoint), "--out-dir", str(tmp_path / "decoder"))
    assert done.returncode == 0, done.stderr
    for source in sources:
        name = Path(source).name
        assert (tmp_path / "decoder" / name).read_bytes() == (tmp_path / "encoder" / name).read_bytes(), name


def test_stage_b_keeps_the_tokenizer_bit_identical(stage_a_checkpoint: Path, stage_b_checkpoint: Path) -> None:
    a = torch.load(stage_a_checkpoint, weights_only=True)["state_dict"]
    b = torch.load(stage_b_checkpoint, weights_only=True)["state_dict"]
    tokenizer_keys = [k for k in a if k.startswith("codec.tokenizer.")]
    assert tokenizer_keys
    for key in tokenizer_keys:
        assert torch.equal(a[key], b[key]) or (a[key].isnan().all() and b[key].isnan().all()), key


def test_stage_a_checkpoint_cannot_compress(stage_a_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="no entropy model"):
        ImageCodec.from_checkpoint(stage_a_checkpoint)


# -------------------------------------------------------------------------------------------- CLI
def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def rdvq(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdvq", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_round_trip_and_errors(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(source)
    ckpt = str(stage_b_checkpoint)
    done = rdvq("compress", str(source), "--ckpt", ckpt, "--out-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    compressed = tmp_path / "out" / "photo.rdvq"
    assert "bpp" in done.stdout and f"{compressed.stat().st_size} bytes" in done.stdout
    done = rdvq("decompress", str(compressed), "--ckpt", ckpt, "-o", str(tmp_path / "decoded.png"))
    assert done.returncode == 0, done.stderr
    # Both outputs get the permissions a plain open() would give them (not tempfile's 0600).
    assert compressed.stat().st_mode == (tmp_path / "decoded.png").stat().st_mode
    assert compressed.stat().st_mode & 0o777 == 0o666 & ~_umask()
    codec = ImageCodec.from_checkpoint(stage_b_checkpoint)
    expected = to_uint8(codec.encode(read_image(source)).reconstruction)
    assert torch.equal(to_uint8(read_image(tmp_path / "decoded.png")), expected)

    corrupt = tmp_path / "corrupt.rdvq"
    data = bytearray(compressed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.rdvq"
    truncated.write_bytes(compressed.read_bytes()[:-3])
    done = rdvq("decompress", str(corrupt), str(truncated), str(source), "--ckpt", ckpt, "--out-dir", str(tmp_path / "bad"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    for line, message in zip(lines, ["checksum mismatch", "truncated", "not an rdvq file"]):
        assert message in line
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())

    before = compressed.read_bytes()
    done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(compressed))
    assert done.returncode == 1 and "--force" in done.stderr
    assert compressed.read_bytes() == before
    # --recon-dir outputs follow the same rule, checked before anything is written.
    recon = tmp_path / "recon" / "photo.png"
    recon.parent.mkdir()
    recon.write_bytes(b"an existing reconstruction")
    fresh = tmp_path / "fresh.rdvq"
    done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(fresh), "--recon-dir", str(recon.parent))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {recon} exists (use --force to overwrite)"
    assert recon.read_bytes() == b"an existing reconstruction" and not fresh.exists()
    done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(fresh), "--recon-dir", str(recon.parent), "--force")
    assert done.returncode == 0, done.stderr
    assert fresh.read_bytes() == before and torch.equal(to_uint8(read_image(recon)), expected)
    twin = tmp_path / "twin" / "photo.png"
    twin.parent.mkdir()
    twin.write_bytes(source.read_bytes())
    done = rdvq("compress", str(source), str(twin), "--ckpt", ckpt, "--recon-dir", str(tmp_path / "recons"), "--force")
    assert done.returncode == 1 and done.stderr.strip().endswith("their outputs would collide in --recon-dir")
    assert not (tmp_path / "recons").exists() and not twin.with_suffix(".rdvq").exists()
    clash = recon.parent / "photo.png"  # -o names the very file the reconstruction would be
    done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(clash), "--recon-dir", str(recon.parent), "--force")
    assert done.returncode == 1 and "both an output and a reconstruction" in done.stderr
    assert torch.equal(to_uint8(read_image(recon)), expected)  # untouched
    done = rdvq("compress", str(tmp_path / "missing.png"), "--ckpt", ckpt, "--out-dir", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_a_loaded_codec_codes_without_compressai_and_matches_the_training_model(stage_b_checkpoint: Path) -> None:
    script = (
        "import sys, torch\n"
        "from rdvq.codec import ImageCodec\n"
        f"codec = ImageCodec.from_checkpoint({str(stage_b_checkpoint)!r})\n"
        "image = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0))\n"
        "encoded = codec.encode(image, estimate=False)\n"
        "assert torch.equal(codec.decompress(encoded.data), encoded.reconstruction)\n"
        "assert 'compressai' not in sys.modules, 'the codec path imported compressai'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]

    from rdvq.stages import RateAdaptation

    stage = RateAdaptation(init_from=str(stage_b_checkpoint), entropy_model=None)
    trained = stage.deployed_codec()  # the live training modules (the real EntropyBottleneck)
    loaded = ImageCodec.from_checkpoint(stage_b_checkpoint)
    assert stage.codec.training and not trained.latent.training  # the stage's own codec is untouched
    assert trained.fingerprint == loaded.fingerprint
    image = read_image(sample_photo_paths("val")[2])[:, :64, :80]
    a, b = trained.encode(image), loaded.encode(image)  # the estimate builds CompressAI's model on demand
    assert a.data == b.data and a.estimated_bits == pytest.approx(b.estimated_bits, rel=1e-6)



def test_the_rate_estimate_clamps_means_where_the_coder_does() -> None:
    """Means far outside the fixed-point range are clamped by the coder; the estimate that training
    minimizes must clamp them the same way, or a model learns rates its files cannot reach (one
    trained model had sigma at its upper bound and means 30x the limit: files 11 % over)."""
    g = torch.Generator().manual_seed(0)
    codewords = torch.nn.functional.normalize(torch.randn(64, 8, generator=g), dim=-1)
    mu = torch.randn(1, 8, 4, 4, generator=g) * 30000
    sigma = torch.full((1, 1, 4, 4), 100.0)
    estimate = -gaussian_log_probs(mu, sigma, codewords).reshape(16, 64).double() / math.log(2)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    params = P.GaussianParameters.from_float(mu[0].flatten(1).t(), sigma[0, 0].flatten(), codebook)
    coded = P.PRECISION - torch.log2(P.frequencies(P.gaussian_buckets(params, codebook)).double())
    assert estimate.max() < 20  # moderate costs: the coder's floor of 24 bits plays no part
    assert (estimate - coded).abs().max() < 0.1  # the 1/64-nat buckets and the rounding of shares
