"""Training stages, one LightningModule each, composed of shared parts.

A: :class:`VQPretrain`; B: :class:`RateAdaptation`. Parts: :class:`DistortionLoss`, :class:`RateTerm`.
"""

from rdvq.stages.base import RDVQStage
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.pretrain import VQPretrain
from rdvq.stages.rate import RateTerm
from rdvq.stages.rate_adaptation import RateAdaptation

__all__ = [
    "AdversarialConfig",
    "DistortionConfig",
    "DistortionLoss",
    "RDVQStage",
    "RateAdaptation",
    "RateTerm",
    "VQPretrain",
]
