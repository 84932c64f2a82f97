"""Lightning callbacks used by the training configs."""

from callbacks.checkpointing import ResumableCheckpoint
from callbacks.reconstructions import ReconstructionLogger

__all__ = ["ReconstructionLogger", "ResumableCheckpoint"]
