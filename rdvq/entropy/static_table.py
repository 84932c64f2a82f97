"""Static frequency table per branch: the Huffman-class baseline (what Control-GIC ships).

Counts are accumulated from training batches only (never from evaluation images), summed across
DDP ranks, and stored in the checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from rdvq.coding import IndexDecoder, IndexEncoder
from rdvq.coding.probability import frequencies, logit_buckets
from rdvq.entropy.base import BranchBatch, CodingContext, IndexEntropyModel, RateEstimate, cross_entropy_bits


class StaticTableModel(IndexEntropyModel):
    model_id = 1
    kind = "static"

    def __init__(self, codebook_sizes: list[int], smoothing: float = 0.5) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.num_branches = len(codebook_sizes)
        for i, size in enumerate(codebook_sizes):
            self.register_buffer(f"counts_{i}", torch.zeros(size, dtype=torch.float64))

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

    def compress(self, branches: list[BranchBatch], encoder: IndexEncoder, context: CodingContext) -> list[bytes]:
        for i, branch in enumerate(branches):
            encoder.encode_iid(branch.indices, self.row(i))
        return []

    def decompress(
        self, side_streams: list[bytes], shapes: list[tuple[int, int]], decoder: IndexDecoder, context: CodingContext
    ) -> list[torch.Tensor]:
        return [decoder.decode_iid(h * w, self.row(i)).reshape(1, h, w) for i, (h, w) in enumerate(shapes)]
