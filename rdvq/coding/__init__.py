"""Turning index distributions into bits: the probability engine and the range coder."""

from rdvq.coding.engine import ProbabilityEngine
from rdvq.coding.probability import FixedPointCodebook, GaussianParameters
from rdvq.coding.range_coder import IndexDecoder, IndexEncoder
from rdvq.coding.tables import FrequencyTable

__all__ = [
    "FixedPointCodebook",
    "FrequencyTable",
    "GaussianParameters",
    "IndexDecoder",
    "IndexEncoder",
    "ProbabilityEngine",
]
