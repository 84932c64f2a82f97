"""Lightning callbacks used by the training configs."""

from callbacks.checkpointing import ResumableCheckpoint
from callbacks.rd_evaluation import RDEvaluation
from callbacks.rd_sweep import RDSweep, SweepTarget
from callbacks.reconstructions import ReconstructionLogger

__all__ = ["RDEvaluation", "RDSweep", "SweepTarget", "ReconstructionLogger", "ResumableCheckpoint"]
