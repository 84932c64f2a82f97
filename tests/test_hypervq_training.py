"""HyperVQ's bounds on sigma and on the means keep their gradients, so training can leave them,
and coding sees exactly the plain clamps."""

from __future__ import annotations

import math

import torch

from rdvq.coding.probability import mean_limit
from rdvq.entropy.base import BranchBatch
from rdvq.entropy.hypervq import HyperVQModel, clamp_passing_gradient, gaussian_log_probs

DIM, SIZE = 4, 16


def _branch() -> BranchBatch:
    g = torch.Generator().manual_seed(0)
    codewords = torch.nn.functional.normalize(torch.randn(SIZE, DIM, generator=g), dim=-1)
    indices = torch.randint(0, SIZE, (1, 8, 8), generator=g)
    return BranchBatch(indices=indices, latents=codewords[indices].permute(0, 3, 1, 2), codewords=codewords)


def test_the_clamp_is_the_plain_clamp_forward_and_the_identity_backward() -> None:
    x = torch.tensor([-1e9, -3.0, -1.0, 0.0, 0.5, 2.0, 7.0, 1e9], dtype=torch.float32, requires_grad=True)
    y = clamp_passing_gradient(x, -2.0, 1.5)
    assert torch.equal(y, x.detach().clamp(-2.0, 1.5))
    (y * torch.arange(8.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(8.0))
    with torch.no_grad():
        assert torch.equal(clamp_passing_gradient(x, -2.0, 1.5), x.clamp(-2.0, 1.5))


def test_a_sigma_pinned_at_its_bound_and_means_beyond_theirs_still_get_gradients() -> None:
    """The collapse this guards against: with a plain clamp these gradients were exactly zero."""
    branch = _branch()
    model = HyperVQModel(1, DIM, channels=2, hidden=8)
    last = model.priors[0].synthesis[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:DIM] = 10 * mean_limit(branch.codewords, diagonal=False)  # every mean beyond the limit
        last.bias[DIM] = 20.0  # sigma = 0.5 e^20, far above the upper bound of 100
    mu, sigma = model.priors[0].gaussian(torch.zeros(1, 2, 2, 2), 8, 8)
    assert torch.allclose(sigma, torch.full_like(sigma, 100.0))
    bits = -gaussian_log_probs(mu, sigma, branch.codewords).gather(-1, branch.indices.unsqueeze(-1)).sum() / math.log(2)
    bits.backward()
    assert last.bias.grad[DIM] != 0  # through a plain clamp, exactly zero
    assert last.bias.grad[:DIM].abs().min() > 0
