"""Tokenizer shapes, exact nearest-neighbour search, straight-through gradients, bounded memory,
dead-code restarts and config validation."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.tokenizer import Tokenizer, TokenizerConfig, VectorQuantizer

BRANCH_CONFIGS = {
    "single": dict(channel_mult=[1, 1, 2, 2, 2], scales=[16]),
    "multi": dict(channel_mult=[1, 1, 2, 2, 2, 2, 2], scales=[16, 32, 64], attention_scales=[64]),
    "residual": dict(channel_mult=[1, 2, 2, 2], scales=[8], residual_stages=3, l2_normalize=False),
    "multi_residual": dict(channel_mult=[1, 2, 2, 2, 2], scales=[8, 16], residual_stages=2, l2_normalize=False),
    "stem": dict(stem=4, channel_mult=[1, 2, 2], scales=[16]),
    "stem_multi": dict(stem=2, channel_mult=[1, 2, 2, 2, 2], scales=[8, 16, 32]),
}


def tiny(**overrides) -> TokenizerConfig:
    base = dict(base_channels=8, num_res_blocks=1, embed_dim=8, codebook_size=64, dead_code_interval=0)
    base.update(overrides)
    return TokenizerConfig(**base)


@pytest.mark.parametrize("name", sorted(BRANCH_CONFIGS))
def test_shapes_for_every_branch_configuration(name: str) -> None:
    config = tiny(**BRANCH_CONFIGS[name])
    tokenizer = Tokenizer(config).eval()
    h, w = 2 * config.stride, 3 * config.stride
    x = torch.rand(2, 3, h, w)
    x_hat, q = tokenizer(x)
    assert x_hat.shape == x.shape
    assert len(q.indices) == len(tokenizer.branches) == len(config.scales) * config.residual_stages
    assert [tuple(i.shape[1:]) for i in q.indices] == tokenizer.latent_shapes(h, w)
    for branch, indices, inputs in zip(tokenizer.branches, q.indices, q.inputs):
        assert indices.dtype == torch.long and int(indices.max()) < config.codebook_size
        assert inputs.shape == (2, config.embed_dim, h // branch.scale, w // branch.scale)
    # Decoding from indices alone gives the same image as the forward pass.
    torch.testing.assert_close(tokenizer.decode_indices(q.indices), x_hat, rtol=1e-4, atol=1e-5)


def test_multiscale_shares_one_codebook() -> None:
    tokenizer = Tokenizer(tiny(**BRANCH_CONFIGS["multi"]))
    assert len(tokenizer.quantizers) == 1
    assert {tokenizer.quantizer(b) for b in tokenizer.branches} == {tokenizer.quantizers[0]}


@pytest.mark.parametrize("l2", [True, False])
def test_nearest_neighbour_equals_brute_force(l2: bool) -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(300, 6, l2_normalize=l2, max_distance_elements=1000).double()
    x = vq.prepare(torch.randn(777, 6, dtype=torch.float64))
    brute = torch.cdist(x, vq.codewords().detach()).argmin(-1)
    assert vq.chunk_rows() == 3  # the search really is chunked
    assert torch.equal(vq.nearest(x), brute)


def test_ties_pick_the_lowest_index() -> None:
    vq = VectorQuantizer(4, 2, l2_normalize=False)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    assert vq.nearest(torch.tensor([[2.0, 0.0], [0.0, 3.0]])).tolist() == [0, 1]


def test_straight_through_gradient_reaches_encoder() -> None:
    tokenizer = Tokenizer(tiny(**BRANCH_CONFIGS["multi"])).train()
    x_hat, q = tokenizer(torch.rand(1, 3, 64, 64))
    x_hat.square().mean().backward()  # distortion only: no VQ loss in the graph
    grad = tokenizer.encoder.conv_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    for head in tokenizer.encoder.heads.values():
        assert head.out.weight.grad.abs().sum() > 0


def test_commitment_and_codebook_losses_train_their_sides() -> None:
    vq = VectorQuantizer(16, 4, l2_normalize=False, beta=0.25)
    vq.initialized.fill_(True)
    x = torch.randn(32, 4, requires_grad=True)
    result = vq(x)
    result.loss.backward()
    assert x.grad.abs().sum() > 0  # commitment pulls the encoder
    assert vq.codebook.grad.abs().sum() > 0  # codebook loss pulls the codewords


def test_soft_posterior_is_a_distribution_that_sharpens_with_tau() -> None:
    vq = VectorQuantizer(32, 4)
    x = vq.prepare(torch.randn(10, 4))
    hard = vq.nearest(x)
    for tau in (1.0, 0.01):
        p = vq.soft_posterior(x, tau)
        torch.testing.assert_close(p.sum(-1), torch.ones(10))
    assert torch.equal(vq.soft_posterior(x, 1e-4).argmax(-1), hard)


def test_large_codebook_search_runs_in_bounded_memory() -> None:
    """K=100000: a dense (4096 x 100000) distance matrix would need 1.6 GB; the chunked search
    must stay far below that (peak RSS growth measured in a fresh process)."""
    script = textwrap.dedent(
        """
        from pathlib import Path
        import torch
        from rdvq.tokenizer import VectorQuantizer

        def kib(field):
            line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
            return int(line.split()[1])

        torch.set_num_threads(2)
        vq = VectorQuantizer(100_000, 32, max_distance_elements=1 << 22)
        x = vq.prepare(torch.randn(4096, 32))
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
        before = kib("VmRSS")
        idx = vq.nearest(x)
        assert idx.shape == (4096,) and int(idx.max()) < 100_000
        print((kib("VmHWM") - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth_mib = int(out.stdout.strip().splitlines()[-1])
    assert 0 < growth_mib < 200, f"peak memory grew by {growth_mib} MiB"


def test_dead_codes_are_revived() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 4, l2_normalize=False, dead_code_threshold=1.0, dead_code_interval=5).train()
    vq.initialized.fill_(True)
    with torch.no_grad():  # every code far from the data: only a handful win the argmin
        vq.codebook.copy_(torch.randn(64, 4) * 0.01 + 10.0)
        vq.codebook[:2] = 0.0
    data = torch.randn(512, 4)
    for _ in range(5):
        vq(data)
    assert vq.last_window_usage.item() <= 2 / 64  # before the restart only two codes were used
    assert int(vq.restarted_codes) >= 62
    usage = torch.bincount(vq.nearest(data), minlength=64)
    assert (usage > 0).float().mean() > 0.5  # revived codes now sit on the data and win


def test_data_dependent_init_happens_once() -> None:
    vq = VectorQuantizer(8, 3, l2_normalize=False).train()
    data = torch.randn(100, 3) + 5.0
    vq(data)
    assert bool(vq.initialized)
    first = vq.codebook.detach().clone()
    assert (first.mean(0) - 5.0).abs().max() < 1.0  # codewords were drawn from the data
    vq(data)
    assert torch.equal(vq.codebook.detach(), first)


def test_pad_to_multiple_handles_tiny_images() -> None:
    x = torch.rand(1, 3, 1, 1)
    padded = pad_to_multiple(x, 16)
    assert padded.shape == (1, 3, 16, 16)
    assert torch.equal(padded, x.expand(1, 3, 16, 16))
    assert pad_to_multiple(torch.rand(1, 3, 32, 48), 16).shape == (1, 3, 32, 48)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(scales=[16], channel_mult=[1, 2]), "channel_mult needs 5 entries"),
        (dict(scales=[12]), "powers of two"),
        (dict(residual_stages=2, l2_normalize=True), "l2_normalize"),
        (dict(codebook_size=0), "codebook_size"),
        (dict(base_channels=12), "multiple of 8"),
        (dict(stem=3, channel_mult=[1, 2]), "powers of two"),
        (dict(stem=32, scales=[16], channel_mult=[1]), "at least the stem"),
        (dict(stem=4, scales=[16], channel_mult=[1, 2, 2, 2, 2]), "channel_mult needs 3 entries"),
    ],
)
def test_bad_configs_raise_config_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenizerConfig(**overrides)


def test_a_stem_moves_no_layer_to_full_resolution() -> None:
    """With a stem of 4 the first convolution already sees 4x4 pixel blocks as channels."""
    tokenizer = Tokenizer(tiny(**BRANCH_CONFIGS["stem"]))
    seen = []
    hook = lambda module, inputs, output: seen.append(inputs[0].shape[-2:])  # noqa: E731
    handles = [m.register_forward_hook(hook) for m in tokenizer.modules() if isinstance(m, torch.nn.Conv2d)]
    tokenizer(torch.rand(1, 3, 32, 48))
    for handle in handles:
        handle.remove()
    assert max(h * w for h, w in seen) <= (32 // 4 + 1) * (48 // 4 + 1)  # a downsampling conv sees its pad
