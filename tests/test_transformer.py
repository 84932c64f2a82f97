"""The masked transformer: its slice schedule and windows, causality, the incremental loop against
the teacher-forced pass, header checks and bounded decoding of crafted sizes."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from rdvq.codec import ImageCodec, VQCodec, container
from rdvq.encode_options import EncodeOptions
from rdvq.entropy import BranchBatch, TransformerConfig, build_entropy_model
from rdvq.entropy.slices import SliceSchedule, coding_order, default_tiles
from rdvq.errors import BitstreamError, ConfigError, InvalidHeaderError
from rdvq.tokenizer import Tokenizer, TokenizerConfig

MULTI = dict(channel_mult=[1, 2, 2, 2], scales=[2, 4, 8])


def random_model(window: int = 2, kv_cache: bool = True, layout: dict = MULTI, **tokenizer) -> tuple[Tokenizer, torch.nn.Module, TransformerConfig]:
    """A tiny tokenizer and a transformer with random weights (a trained head starts at zero,
    which would make every distribution uniform and every test below trivial)."""
    torch.manual_seed(0)
    config = TokenizerConfig(base_channels=8, embed_dim=4, codebook_size=48, **layout, **tokenizer)
    tokenizer_module = Tokenizer(config).eval()
    entropy_config = TransformerConfig(layers=2, width=16, heads=2, window=window, kv_cache=kv_cache)
    model = build_entropy_model(entropy_config, tokenizer_module).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return tokenizer_module, model, entropy_config


def random_branches(tokenizer: Tokenizer, size: tuple[int, int], seed: int = 0) -> list[BranchBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in tokenizer.latent_shapes(*size):
        codewords = tokenizer.quantizers[0].codewords().detach()
        out.append(BranchBatch(torch.randint(0, 48, (1, h, w), generator=g), torch.randn(1, 4, h, w, generator=g), codewords))
    return out


# ---------------------------------------------------------------------------------------- schedule
def test_rdvq_schedule_is_28_regular_sub_lattices_coarse_to_fine() -> None:
    shapes = [(16, 16), (8, 8), (4, 4)]  # a 256 x 256 window at /16, /32, /64
    schedule = SliceSchedule(3, None, window=4)
    layout, groups = schedule.groups(shapes)
    groups = list(groups)
    assert layout.order == (2, 1, 0) and default_tiles(3) == [(2, 2), (2, 4), (4, 4)]
    plan = groups[0].plan
    assert schedule.num_slices == len(plan.slices) == 28
    assert [s.size for s in plan.slices] == [4] * 4 + [8] * 8 + [16] * 16
    assert [s.branch for s in plan.slices] == [2] * 4 + [1] * 8 + [0] * 16
    for s in plan.slices:  # a shifted lattice: every position is the first one plus a multiple of the tile
        (h, w) = plan.sizes[s.branch]
        rows, cols = s.positions // w, s.positions % w
        tile_rows, tile_cols = {2: (2, 2), 1: (2, 4), 0: (4, 4)}[s.branch]
        assert ((rows - rows[0]) % tile_rows == 0).all() and ((cols - cols[0]) % tile_cols == 0).all()
    for branch, (h, w) in enumerate(shapes):  # every position exactly once
        assert sorted(plan.branch_positions(branch).tolist()) == list(range(h * w))
    # co-located tokens of different scales share rotary coordinates (finest-grid units)
    assert torch.allclose(plan.slices[0].coords[0], torch.tensor([1.5, 1.5]))


def test_residual_stages_are_coded_in_stage_order_within_a_scale() -> None:
    assert coding_order([(8, 8), (8, 8), (4, 4), (4, 4)]) == [2, 3, 0, 1]


@pytest.mark.parametrize("window", [1, 3, 8])
def test_windows_tile_the_image_and_crop_paste_round_trip(window: int) -> None:
    shapes = [(20, 28), (10, 14), (5, 7)]
    layout, groups = SliceSchedule(3, None, window).groups(shapes, max_tokens=100)
    maps = [torch.randn(2, h, w, 3) for h, w in shapes]
    rebuilt = [torch.full_like(m, float("nan")) for m in maps]
    for group in groups:
        assert group.plan.num_tokens * len(group.origins) <= max(100, group.plan.num_tokens)
        for i, ratio in enumerate(layout.ratios):
            group.paste(rebuilt[i], group.crop(maps[i], ratio), ratio)
    for original, copy in zip(maps, rebuilt):
        assert torch.equal(original, copy)


def test_bad_transformer_configs_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        TransformerConfig(width=30, heads=3)
    with pytest.raises(ConfigError, match="tiles"):
        TransformerConfig(tiles=[[2, 2, 2]])
    with pytest.raises(ConfigError, match="window"):
        TransformerConfig(window=0)
    tokenizer = Tokenizer(TokenizerConfig(base_channels=8, embed_dim=4, codebook_size=48, **MULTI))
    with pytest.raises(ConfigError, match="3 branches"):
        build_entropy_model(TransformerConfig(tiles=[[2, 2]]), tokenizer)


# ---------------------------------------------------------------------------------------- causality
def _slice_logits_parallel(model, branches) -> list[torch.Tensor]:
    """Teacher-forced log-probabilities of each slice of a one-window image, in schedule order."""
    layout, groups = model.schedule.groups([tuple(b.indices.shape[-2:]) for b in branches])
    log_probs = model.log_probs(branches)
    return [log_probs[s.branch].flatten(1, 2)[0, s.positions] for s in next(groups).plan.slices]


def test_changing_a_slice_never_changes_the_logits_of_earlier_slices() -> None:
    tokenizer, model, _ = random_model(window=8)
    branches = random_branches(tokenizer, (32, 40))
    layout, groups = model.schedule.groups([tuple(b.indices.shape[-2:]) for b in branches])
    slices = next(groups).plan.slices
    with torch.no_grad():
        before = _slice_logits_parallel(model, branches)
        for changed in (0, 5, 13):
            spec = slices[changed]
            edited = [dataclasses.replace(b, indices=b.indices.clone()) for b in branches]
            flat = edited[spec.branch].indices.view(1, -1)
            flat[0, spec.positions] = (flat[0, spec.positions] + 1) % 48
            after = _slice_logits_parallel(model, edited)
            for s in range(changed + 1):
                assert torch.equal(before[s], after[s]), (changed, s)
            assert any(not torch.allclose(before[s], after[s]) for s in range(changed + 1, len(slices)))


@pytest.mark.parametrize("kv_cache", [True, False])
def test_incremental_loop_computes_the_teacher_forced_distributions(kv_cache: bool) -> None:
    tokenizer, model, _ = random_model(window=8, kv_cache=kv_cache)
    branches = random_branches(tokenizer, (32, 40))
    layout, groups = model.schedule.groups([tuple(b.indices.shape[-2:]) for b in branches])
    codewords = [b.codewords for b in branches]
    seen = {}

    def choose(slice_id, number, spec, logits):
        seen[slice_id] = torch.log_softmax(logits[0], -1)
        return branches[spec.branch].indices.view(1, -1)[:, spec.positions]

    with torch.no_grad():
        expected = _slice_logits_parallel(model, branches)
        maps = model.run_schedule(layout, groups, codewords, choose)
    assert all(torch.equal(m, b.indices) for m, b in zip(maps, branches))
    for slice_id, log_probs in seen.items():
        torch.testing.assert_close(log_probs, expected[slice_id], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------- codec
def _codec(window: int = 2, **kwargs) -> ImageCodec:
    tokenizer, model, config = random_model(window=window, **kwargs)
    return ImageCodec(VQCodec(tokenizer, model, config))


def test_whole_image_and_windowed_coding_both_round_trip() -> None:
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(3))
    streams = {}
    for window in (8, 2):  # one window for the whole image, and 2 x 3 windows
        codec = _codec(window=window)
        encoded = codec.encode(image)
        assert torch.equal(codec.decompress(encoded.data), encoded.reconstruction)
        streams[window] = container.unpack(encoded.data).streams
    assert streams[8] != streams[2]  # windows change the context, so the streams differ


def test_files_without_kv_cache_round_trip() -> None:
    codec = _codec(window=8, kv_cache=False)
    image = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(4))
    encoded = codec.encode(image)
    assert torch.equal(codec.decompress(encoded.data), encoded.reconstruction)


@pytest.fixture(scope="module")
def transformer_file() -> tuple[ImageCodec, bytes]:
    codec = _codec()
    return codec, codec.compress(torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize(
    "parameters, match",
    [((48, 28, 0, 0), "top_k"), ((0, 0, 0, 0), "slice count"), ((0, 29, 0, 0), "slice count"),
     ((0, 4, 2, 0), "completion"), ((0, 4, 1, 1 << 32), "seed"), ((0, 28, 0), "parameters")],
)
def test_header_parameters_are_validated(transformer_file, parameters, match: str) -> None:
    codec, valid = transformer_file
    crafted = container.pack(dataclasses.replace(container.unpack(valid), parameters=parameters))
    with pytest.raises(InvalidHeaderError, match=match):
        codec.decompress(crafted)


def test_encoder_refuses_options_it_cannot_honour() -> None:
    codec = _codec()
    image = torch.rand(3, 16, 16)
    with pytest.raises(ConfigError, match="28 slices"):
        codec.compress(image, EncodeOptions(slices=29))
    with pytest.raises(ConfigError, match="--seed"):
        codec.compress(image, EncodeOptions(slices=3, seed=4))


def test_decoding_stays_fast_on_a_stream_that_ends_early(transformer_file) -> None:
    codec, valid = transformer_file
    parsed = container.unpack(valid)
    crafted = container.pack(dataclasses.replace(parsed, height=1024, width=1024, streams=(parsed.streams[0][:8],)))
    start = time.perf_counter()
    with pytest.raises(BitstreamError):
        codec.decompress(crafted)
    assert time.perf_counter() - start < 2.0
