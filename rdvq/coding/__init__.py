"""Turning index distributions into bits: the probability engine and the range coder."""

from rdvq.coding.cdf_tables import QuantizedCdfs, decode_indexed, encode_indexed
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
    "QuantizedCdfs",
    "decode_indexed",
    "encode_indexed",
]
