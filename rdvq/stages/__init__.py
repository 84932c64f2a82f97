"""Training stages, one LightningModule each (A: VQPretrain; B: RateAdaptation)."""

from rdvq.stages.base import RDVQStage
from rdvq.stages.pretrain import AdversarialConfig, DistortionConfig, VQPretrain
from rdvq.stages.rate_adaptation import RateAdaptation

__all__ = ["AdversarialConfig", "DistortionConfig", "RDVQStage", "RateAdaptation", "VQPretrain"]
