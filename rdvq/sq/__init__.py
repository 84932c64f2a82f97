"""The scalar-quantization codec family: a mean-scale hyperprior with rounding (USQ) or trellis-coded
quantization (TCQ) of its latents."""

from rdvq.sq.config import ScalarCodecConfig
from rdvq.sq.model import ScalarHyperprior

__all__ = ["ScalarCodecConfig", "ScalarHyperprior"]
