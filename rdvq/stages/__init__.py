"""Training stages, one LightningModule each, composed of shared parts.

A: :class:`VQPretrain`; B: :class:`RateAdaptation`; C: :class:`JointRD`; D: :class:`DecoderRetraining`
(any codec family). Scalar codec: :class:`ScalarCodecTraining` (end to end), then stage D. Parts:
:class:`DistortionLoss`, :class:`RateTerm`, :class:`FileValidation`.
"""

from rdvq.stages.base import CodecStage, RDVQStage
from rdvq.stages.decoder_retraining import DecoderRetraining
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.joint_rd import JointRD
from rdvq.stages.pretrain import VQPretrain
from rdvq.stages.rate import RateTerm
from rdvq.stages.rate_adaptation import RateAdaptation
from rdvq.stages.scalar_training import ScalarCodecTraining

__all__ = [
    "AdversarialConfig",
    "CodecStage",
    "DecoderRetraining",
    "DistortionConfig",
    "DistortionLoss",
    "FileValidation",
    "JointRD",
    "RDVQStage",
    "RateAdaptation",
    "RateTerm",
    "ScalarCodecTraining",
    "VQPretrain",
]
