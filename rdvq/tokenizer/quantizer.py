"""Vector quantizer: chunked nearest-neighbour search, codebook/commitment losses, usage statistics,
dead-code restarts and the soft posterior softmax(-d/tau) used by rate losses.

The quantizer works on flat vectors (N, D); the tokenizer flattens all taps of one stage into a
single call so that statistics and restarts see every token once per training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class VQResult:
    hard: torch.Tensor  # (N, D) selected codewords; carries the codebook gradient
    indices: torch.Tensor  # (N,) int64
    inputs: torch.Tensor  # (N, D) the vectors that were matched (unit-normalized if l2)
    loss: torch.Tensor  # codebook loss + beta * commitment loss


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a code histogram: K when all K codes are used equally, NaN when empty."""
    total = counts.double().sum()
    if total <= 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
    p = counts.double() / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum())


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        codebook_size: int,
        dim: int,
        *,
        l2_normalize: bool = True,
        beta: float = 0.25,
        dead_code_threshold: float = 1.0,
        dead_code_interval: int = 100,
        max_distance_elements: int = 1 << 22,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.l2_normalize = l2_normalize
        self.beta = beta
        self.dead_code_threshold = dead_code_threshold
        self.dead_code_interval = dead_code_interval
        self.max_distance_elements = max_distance_elements
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / math.sqrt(dim))
        # Training state, kept in checkpoints and identical on every DDP rank.
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("window_counts", torch.zeros(codebook_size, dtype=torch.float64))
        self.register_buffer("window_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("last_window_usage", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("ema_counts", torch.zeros(codebook_size, dtype=torch.float64))
        self.register_buffer("restarted_codes", torch.tensor(0, dtype=torch.long))

    # ------------------------------------------------------------------ codewords and search
    def codewords(self) -> torch.Tensor:
        """The codebook as the decoder sees it (unit rows when l2-normalized)."""
        return F.normalize(self.codebook, dim=-1) if self.l2_normalize else self.codebook

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return F.normalize(flat, dim=-1) if self.l2_normalize else flat

    def chunk_rows(self) -> int:
        """Rows per distance chunk so that a chunk holds at most ``max_distance_elements`` distances."""
        return max(1, self.max_distance_elements // self.codebook_size)

    @torch.no_grad()
    def nearest(self, inputs: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codeword for each row of ``inputs`` (already prepared), lowest index on ties.

        Memory is bounded by ``max_distance_elements`` whatever N and K are.
        """
        codes = self.codewords().detach().to(inputs.dtype)
        code_sq = codes.pow(2).sum(-1)
        out = torch.empty(inputs.shape[0], dtype=torch.long, device=inputs.device)
        step = self.chunk_rows()
        for start in range(0, inputs.shape[0], step):
            rows = inputs[start : start + step]
            # ||x||^2 is constant per row and does not change the argmin.
            out[start : start + step] = torch.addmm(code_sq, rows, codes.t(), alpha=-2.0).argmin(-1)
        return out

    def distances(self, inputs: torch.Tensor) -> torch.Tensor:
        """Squared distances (N, K), differentiable in inputs and codebook (not chunked: N x K memory)."""
        codes = self.codewords()
        return inputs.pow(2).sum(-1, keepdim=True) + codes.pow(2).sum(-1) - 2.0 * inputs @ codes.t()

    def soft_posterior(self, inputs: torch.Tensor, tau: float) -> torch.Tensor:
        """softmax(-d/tau) over the codebook for prepared inputs (N, D) -> (N, K)."""
        return torch.softmax(-self.distances(inputs.float()) / tau, dim=-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codewords())

    # ------------------------------------------------------------------ forward
    def forward(self, flat: torch.Tensor) -> VQResult:
        inputs = self.prepare(flat)
        if self.training and not bool(self.initialized):
            self._init_from_data(inputs.detach())
        indices = self.nearest(inputs.detach())
        hard = self.lookup(indices)
        loss = F.mse_loss(hard, inputs.detach()) + self.beta * F.mse_loss(hard.detach(), inputs)
        if self.training:
            self._update_statistics(indices, inputs.detach())
        return VQResult(hard=hard, indices=indices, inputs=inputs, loss=loss)

    # ------------------------------------------------------------------ training-time bookkeeping
    @torch.no_grad()
    def _sample_rows(self, inputs: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` rows drawn from the batch (with replacement when the batch is small), broadcast
        from rank 0 so that the codebook stays identical on every DDP rank."""
        picks = torch.randint(0, inputs.shape[0], (count,), device=inputs.device)
        rows = inputs[picks].to(self.codebook.dtype)
        if count > inputs.shape[0]:  # duplicates would tie forever: separate them slightly
            rows = rows + 0.01 * rows.std() * torch.randn_like(rows)
        if _distributed():
            dist.broadcast(rows, src=0)
        return rows

    @torch.no_grad()
    def _init_from_data(self, inputs: torch.Tensor) -> None:
        self.codebook.data.copy_(self._sample_rows(inputs, self.codebook_size))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update_statistics(self, indices: torch.Tensor, inputs: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).to(torch.float64)
        if _distributed():
            dist.all_reduce(counts)
        self.window_counts += counts
        self.window_steps += 1
        self.ema_counts.mul_(0.99).add_(counts, alpha=0.01)
        if self.dead_code_interval and int(self.window_steps) >= self.dead_code_interval:
            self.last_window_usage.fill_((self.window_counts > 0).double().mean())
            dead = (self.window_counts < self.dead_code_threshold).nonzero().squeeze(1)
            if dead.numel():
                self.codebook.data[dead] = self._sample_rows(inputs, dead.numel())
                self.restarted_codes += dead.numel()
            self.window_counts.zero_()
            self.window_steps.zero_()

    def usage(self) -> float:
        """Fraction of codes used during the last full dead-code window (the current one before that)."""
        if not math.isnan(float(self.last_window_usage)):
            return float(self.last_window_usage)
        return float((self.window_counts > 0).double().mean())
