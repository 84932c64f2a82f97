"""VQ tokenizer: conv encoder/decoder, (residual) vector quantization, multi-scale taps."""

from rdvq.tokenizer.config import TokenizerConfig
from rdvq.tokenizer.quantizer import VectorQuantizer, VQResult
from rdvq.tokenizer.tokenizer import Branch, Quantization, Tokenizer

__all__ = ["Branch", "Quantization", "Tokenizer", "TokenizerConfig", "VQResult", "VectorQuantizer"]
