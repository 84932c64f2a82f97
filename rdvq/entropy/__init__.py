"""Entropy models for VQ indices, interchangeable in every stage and in the codec."""

from rdvq.entropy.base import BranchBatch, CodingContext, IndexEntropyModel, RateEstimate
from rdvq.entropy.config import EntropyModelConfig, build_entropy_model
from rdvq.entropy.hypervq import HyperVQModel
from rdvq.entropy.static_table import StaticTableModel
from rdvq.entropy.uniform import UniformModel

__all__ = [
    "BranchBatch",
    "CodingContext",
    "EntropyModelConfig",
    "HyperVQModel",
    "IndexEntropyModel",
    "RateEstimate",
    "StaticTableModel",
    "UniformModel",
    "build_entropy_model",
]
