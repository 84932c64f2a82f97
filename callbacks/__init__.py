"""Lightning callbacks used by the training configs."""

from callbacks.reconstructions import ReconstructionLogger

__all__ = ["ReconstructionLogger"]
