"""Encoder-side rate choices: test-time rate control (code the first T slices, the decoder completes
the rest) and entropy-constrained index selection (--rdo-lambda); files decode bit-exactly with
the unchanged decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fit
from datamodules import sample_photo_paths
from rdvq.codec import ImageCodec, VQCodec, container
from rdvq.encode_options import EncodeOptions
from rdvq.entropy import TransformerConfig, build_entropy_model
from rdvq.errors import ConfigError
from rdvq.image_io import read_image
from rdvq.tokenizer import Tokenizer, TokenizerConfig
from test_codec import assert_round_trip, make_codec, rdvq

IMAGE = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(11))


def transformer_codec(tiles=((1, 2), (2, 2)), window: int = 16) -> ImageCodec:
    """Two scales with a 2 + 4 slice schedule, random (non-uniform) weights."""
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(base_channels=8, embed_dim=4, codebook_size=48, channel_mult=[1, 2, 2], scales=[2, 4])).eval()
    config = TransformerConfig(layers=1, width=16, heads=2, window=window, tiles=[list(t) for t in tiles])
    model = build_entropy_model(config, tokenizer).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return ImageCodec(VQCodec(tokenizer, model, config))


def slice_masks(codec: ImageCodec, shapes) -> list[list[torch.Tensor]]:
    """Per slice, per branch: a boolean map of the positions that slice covers (one window)."""
    model = codec.latent.entropy_model
    layout, groups = model.schedule.groups(shapes)
    out = []
    for spec in next(groups).plan.slices:
        masks = [torch.zeros(h * w, dtype=torch.bool) for h, w in shapes]
        masks[spec.branch][spec.positions] = True
        out.append([m.view(1, *shape) for m, shape in zip(masks, shapes)])
    return out


@pytest.mark.parametrize("completion, seed", [("argmax", 0), ("sample", 12345)])
def test_every_slice_count_decodes_to_the_encoders_reconstruction(completion: str, seed: int) -> None:
    codec = transformer_codec()
    count = codec.latent.entropy_model.num_slices
    nearest = codec.encode(IMAGE).symbols
    shapes = [tuple(s.shape[-2:]) for s in nearest]
    masks = slice_masks(codec, shapes)
    sizes = []
    for sent in range(1, count + 1):
        data = assert_round_trip(codec, IMAGE, EncodeOptions(slices=sent, completion=completion, seed=seed))
        symbols = codec.unpack(data).symbols
        for spec_masks in masks[:sent]:  # coded slices carry the encoder's own indices
            for got, want, mask in zip(symbols, nearest, spec_masks):
                assert torch.equal(got[mask], want[mask])
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_sampled_completion_follows_its_seed() -> None:
    codec = transformer_codec()
    options = [EncodeOptions(slices=1, completion="sample", seed=s) for s in (1, 1, 2)]
    first, again, other = (codec.encode(IMAGE, o).symbols for o in options)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_rate_control_needs_a_slice_ordered_model() -> None:
    with pytest.raises(ConfigError, match="--slices"):
        make_codec("single", "hypervq").compress(IMAGE, EncodeOptions(slices=2))
    with pytest.raises(ConfigError, match="--rdo-lambda"):
        make_codec("single", "static").compress(IMAGE, EncodeOptions(rdo_lambda=0.1))


def _latent_distortion(codec: ImageCodec, symbols: list[torch.Tensor]) -> float:
    analysis = codec.analyze(IMAGE)
    total = 0.0
    for branch, indices in zip(analysis, symbols):
        sent = branch.codewords[indices[0]].permute(2, 0, 1)
        total += float((branch.latents[0] - sent).square().sum())
    return total


@pytest.mark.parametrize("kind", ["hypervq", "transformer"])
def test_index_selection_trades_latent_distortion_for_rate(kind: str) -> None:
    codec = make_codec("multi", kind) if kind == "hypervq" else transformer_codec(window=1)
    nearest = codec.encode(IMAGE).symbols
    results = []
    for rdo_lambda in (0.0, 0.01, 0.1, 1.0):
        data = assert_round_trip(codec, IMAGE, EncodeOptions(rdo_lambda=rdo_lambda))
        symbols = codec.unpack(data).symbols
        if rdo_lambda == 0.0:  # the nearest codeword (up to rounding in exact ties)
            agree = sum(int((s == n).sum()) for s, n in zip(symbols, nearest)) / sum(n.numel() for n in nearest)
            assert agree > 0.99
        results.append((len(data), _latent_distortion(codec, symbols)))
    sizes, distortions = zip(*results)
    assert sizes[-1] < sizes[0] and distortions[-1] > distortions[0]
    assert all(a >= b for a, b in zip(sizes, sizes[1:])), sizes


def test_index_selection_with_rate_control_and_tail_floor() -> None:
    codec = transformer_codec()
    assert_round_trip(codec, IMAGE, EncodeOptions(slices=3, rdo_lambda=0.1, top_k=6, completion="sample", seed=3))


# ---------------------------------------------------------------------------------------- trained
@pytest.fixture(scope="module")
def transformer_checkpoint(stage_a_checkpoint: Path, tmp_path_factory) -> Path:
    """A tiny stage B run of the transformer (16 slices on the single /4 branch)."""
    root = tmp_path_factory.mktemp("stage_b_transformer")
    fit(
        "tiny_stage_b.yaml", root, "--model.init_from", str(stage_a_checkpoint),
        "--model.init_args.entropy_model=TransformerConfig", "--model.init_args.entropy_model.layers", "1",
        "--model.init_args.entropy_model.width", "16", "--model.init_args.entropy_model.heads", "2",
        "--model.init_args.entropy_model.window", "4",
    )
    return root / "checkpoints" / "last.ckpt"


def test_cli_rate_control_and_index_selection_decode_to_the_reconstruction(transformer_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(source)
    ckpt = str(transformer_checkpoint)
    runs = {"sampled": ["--slices", "9", "--completion", "sample", "--seed", "77"], "selected": ["--slices", "12", "--rdo-lambda", "0.05"]}
    for name, flags in runs.items():
        done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(tmp_path / f"{name}.rdvq"), "--recon-dir", str(tmp_path / name), *flags)
        assert done.returncode == 0, done.stderr
    done = rdvq("decompress", *(str(tmp_path / f"{name}.rdvq") for name in runs), "--ckpt", ckpt, "--out-dir", str(tmp_path / "decoded"))
    assert done.returncode == 0, done.stderr
    for name in runs:
        assert (tmp_path / "decoded" / f"{name}.png").read_bytes() == (tmp_path / name / "photo.png").read_bytes()
    done = rdvq("compress", str(source), "--ckpt", ckpt, "-o", str(tmp_path / "x.rdvq"), "--slices", "17")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {source}: --slices 17: this model codes 16 slices"


def test_trained_transformer_file_size_matches_its_estimate(transformer_checkpoint: Path) -> None:
    codec = ImageCodec.from_checkpoint(transformer_checkpoint)
    image = read_image(sample_photo_paths("val")[0])[:, :96, :128]
    encoded = codec.encode(image)
    streams = sum(len(s) for s in container.unpack(encoded.data).streams) * 8
    assert abs(streams / encoded.estimated_bits - 1) < 0.05, (streams, encoded.estimated_bits)
