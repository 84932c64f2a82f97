"""Static frequency table per branch: the Huffman-class baseline (what Control-GIC ships).

Counts are accumulated from training batches only (never from evaluation images), summed across
DDP ranks, and stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.distributed as dist

from rdvq.coding import IndexDecoder, IndexEncoder
from rdvq.coding.header import HeaderSchema
from rdvq.coding.probability import frequencies, logit_buckets
from rdvq.config_dict import DictConfig
from rdvq.encode_options import EncodeOptions
from rdvq.entropy.base import BranchBatch, CodingContext, CompressedIndices, IndexEntropyModel, RateEstimate, cross_entropy_bits
from rdvq.errors import ConfigError


@dataclass
class StaticConfig(DictConfig):
    """``smoothing`` is added to every count, so codes never seen in training stay codable."""

    section: ClassVar[str] = "entropy_model (static)"

    kind: Literal["static"] = "static"
    smoothing: float = 0.5

    def __post_init__(self) -> None:
        if self.smoothing <= 0:
            raise ConfigError("entropy_model.smoothing must be > 0")


class StaticTableModel(IndexEntropyModel):
    kind = "static"
    model_id = 1
    header = HeaderSchema("entropy model static")
    config_class = StaticConfig

    def __init__(self, codebook_sizes: list[int], smoothing: float = 0.5) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.num_branches = len(codebook_sizes)
        for i, size in enumerate(codebook_sizes):
            self.register_buffer(f"counts_{i}", torch.zeros(size, dtype=torch.float64))

    @classmethod
    def build(cls, config: StaticConfig, codebook_sizes: list[int], dim: int, coding_only: bool = False) -> "StaticTableModel":
        return cls(codebook_sizes, smoothing=config.smoothing)

    def counts(self, branch: int) -> torch.Tensor:
        return getattr(self, f"counts_{branch}")

    def log_probs(self, branch: int) -> torch.Tensor:
        counts = self.counts(branch) + self.smoothing
        return (counts / counts.sum()).log().float()

    @torch.no_grad()
    def observe(self, branches: list[BranchBatch]) -> None:
        for i, branch in enumerate(branches):
            counts = self.counts(i)
            batch = torch.bincount(branch.indices.flatten(), minlength=counts.numel()).to(counts)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(batch)
            counts += batch

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        bits = []
        for i, branch in enumerate(branches):
            log_probs = self.log_probs(i).to(branch.latents.device).expand(*branch.indices.shape, -1)
            bits.append(cross_entropy_bits(log_probs, branch))
        return RateEstimate(index_bits=bits, side_bits=[torch.zeros_like(b) for b in bits])

    def row(self, branch: int) -> torch.Tensor:
        return frequencies(logit_buckets(self.log_probs(branch).cpu().unsqueeze(0)))[0]

    def compress(self, branches: list[BranchBatch], context: CodingContext, options: EncodeOptions) -> CompressedIndices:
        encoder = IndexEncoder()
        for i, branch in enumerate(branches):
            encoder.encode_iid(branch.indices, self.row(i))
        return CompressedIndices(streams=[encoder.finish()], parameters=self.header.pack(), indices=[b.indices for b in branches])

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        self.read_header(streams, parameters)
        decoder = IndexDecoder(streams[0])
        return [decoder.decode_iid(h * w, self.row(i)).reshape(1, h, w) for i, (h, w) in enumerate(shapes)]
