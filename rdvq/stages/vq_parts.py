"""Parts the VQ stages share: building the codec they train, the rate of a quantization, and
the codebook statistics of what they code.

The rate is in bits per pixel, against hard indices or against the soft posterior
``softmax(-d / tau)`` (RDVQ's relaxation). Nothing is detached: when the tokenizer ran with
gradients (joint training) the rate's gradient reaches the encoder through the soft posterior; when
it ran without (rate adaptation) only the entropy model learns.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch

from rdvq.codec import VQCodec
from rdvq.entropy import BranchBatch, RateEstimate, entropy_config_from_dict
from rdvq.errors import ConfigError
from rdvq.tokenizer import Quantization, TokenizerConfig
from rdvq.tokenizer.quantizer import perplexity

RateTargets = Literal["soft", "hard"]


def vq_codec(
    stage: Any, tokenizer: TokenizerConfig | None, entropy_model: Any | None, default_entropy: Any | None, *,
    with_entropy_model: bool = True,
) -> VQCodec:
    """The codec a VQ stage trains: each configuration as given, else as the ``init_from``
    checkpoint describes it, else (entropy model only) ``default_entropy``. Stage A trains a
    tokenizer alone (``with_entropy_model=False``)."""
    stored_tokenizer = stage.inherited("tokenizer", tokenizer)
    if stored_tokenizer is None:
        raise ConfigError("model.tokenizer is required unless model.init_from names a checkpoint to inherit it from")
    if isinstance(stored_tokenizer, dict):
        stored_tokenizer = TokenizerConfig.from_dict(stored_tokenizer)
    if not with_entropy_model:
        return VQCodec.build(stored_tokenizer, None)
    stored_entropy = stage.inherited("entropy_model", entropy_model)
    if isinstance(stored_entropy, dict):
        stored_entropy = entropy_config_from_dict(stored_entropy)
    return VQCodec.build(stored_tokenizer, stored_entropy if stored_entropy is not None else default_entropy)


def check_rate_targets(targets: str) -> None:
    if targets not in ("soft", "hard"):
        raise ConfigError(f"rate_targets must be soft or hard, got {targets!r}")


def rate(
    codec: VQCodec, quantization: Quantization, pixels: int, tau: float | None, observe: bool
) -> tuple[torch.Tensor, RateEstimate]:
    """(mean bits per pixel of the batch, per-branch bits) of a quantization: cross-entropy with
    the soft posterior at temperature ``tau``, or with the hard indices when ``tau`` is None.
    ``observe``: let a counting model (static table) count the batch first."""
    tokenizer = codec.tokenizer
    codewords = [tokenizer.quantizer(b).codewords().detach() for b in tokenizer.branches]
    targets = tokenizer.soft_posteriors(quantization, tau) if tau is not None else [None] * len(codewords)
    branches = [
        BranchBatch(indices=i, latents=v, codewords=c, targets=t)
        for i, v, c, t in zip(quantization.indices, quantization.inputs, codewords, targets)
    ]
    if observe:
        codec.entropy_model.observe(branches)
    estimate = codec.entropy_model(branches)
    return estimate.total().mean() / pixels, estimate


def log_rate(stage: pl.LightningModule, split: str, bpp: torch.Tensor, estimate: RateEstimate, pixels: int) -> None:
    """Total and per-branch bpp (and side information per branch, where a model has any)."""
    stage.log(f"{split}/bpp", bpp, prog_bar=True)
    for branch, index_bits, side_bits in zip(stage.codec.tokenizer.branches, estimate.index_bits, estimate.side_bits):
        stage.log(f"{split}/bpp_{branch.name}", index_bits.mean() / pixels)
        if side_bits.abs().sum() > 0:
            stage.log(f"{split}/bpp_side_{branch.name}", side_bits.mean() / pixels)


def log_codebook_usage(stage: pl.LightningModule, split: str, counts: list[torch.Tensor]) -> None:
    """Usage (share of codewords used) and perplexity of per-branch index counts, averaged over
    branches (and per residual stage when there are several)."""
    usages = [(c > 0).double().mean() for c in counts]
    if len(counts) > 1:
        for number, usage in enumerate(usages):
            stage.log(f"{split}/usage_r{number}", usage.float())
    stage.log(f"{split}/usage", torch.stack(usages).mean().float(), prog_bar=True)
    stage.log(f"{split}/perplexity", torch.stack([perplexity(c) for c in counts]).mean().float())


def index_counts(codec: VQCodec, index_maps: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-quantizer counts of every index in ``index_maps`` (image after image, branch after branch)."""
    tokenizer = codec.tokenizer
    counts = [torch.zeros(q.codebook_size, dtype=torch.float64) for q in tokenizer.quantizers]
    for maps in index_maps:
        for branch, indices in zip(tokenizer.branches, maps):
            counts[branch.stage] += torch.bincount(indices.flatten().cpu(), minlength=counts[branch.stage].numel()).double()
    return counts


def log_quantizer_statistics(stage: pl.LightningModule) -> None:
    """Training-time usage, perplexity and restarts of the quantizers' running statistics."""
    quantizers = stage.codec.tokenizer.quantizers
    stage.log("train/usage", sum(q.usage() for q in quantizers) / len(quantizers))
    stage.log("train/perplexity", sum(float(perplexity(q.ema_counts)) for q in quantizers) / len(quantizers))
    stage.log("train/restarted_codes", float(sum(int(q.restarted_codes) for q in quantizers)))
