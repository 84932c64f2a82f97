"""Entropy models for VQ indices, interchangeable in every stage and in the codec."""

from rdvq.entropy.base import BranchBatch, CodingContext, CompressedIndices, IndexEntropyModel, RateEstimate
from rdvq.entropy.hypervq import HyperVQConfig, HyperVQModel
from rdvq.entropy.registry import (
    ENTROPY_MODELS,
    EntropyModelConfig,
    build_entropy_model,
    entropy_config_from_dict,
    entropy_model_class,
)
from rdvq.entropy.static_table import StaticConfig, StaticTableModel
from rdvq.entropy.transformer import TransformerConfig, TransformerModel
from rdvq.entropy.uniform import UniformConfig, UniformModel

__all__ = [
    "ENTROPY_MODELS",
    "BranchBatch",
    "CodingContext",
    "CompressedIndices",
    "EntropyModelConfig",
    "HyperVQConfig",
    "HyperVQModel",
    "IndexEntropyModel",
    "RateEstimate",
    "StaticConfig",
    "StaticTableModel",
    "TransformerConfig",
    "TransformerModel",
    "UniformConfig",
    "UniformModel",
    "build_entropy_model",
    "entropy_config_from_dict",
    "entropy_model_class",
]
