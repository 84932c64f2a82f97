"""rdvq: rate-distortion-optimized vector-quantized generative image compression."""

__version__ = "0.1.0"
