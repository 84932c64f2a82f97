"""Training stages, one LightningModule each, composed of shared parts; every stage trains its
codec family's module, ``self.codec``.

A: :class:`VQPretrain`; B: :class:`RateAdaptation`; C: :class:`JointRD`; D: :class:`DecoderRetraining`
(any codec family). Scalar codec: :class:`ScalarCodecTraining` (end to end), then stage D. Parts:
:class:`DistortionLoss`, :class:`RDPoint`, :class:`FileValidation`.
"""

from rdvq.stages.base import CodecStage, DecoderStage
from rdvq.stages.decoder_retraining import DecoderRetraining
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.joint_rd import JointRD
from rdvq.stages.pretrain import VQPretrain
from rdvq.stages.rate_adaptation import RateAdaptation
from rdvq.stages.rd_point import RDPoint
from rdvq.stages.scalar_training import ScalarCodecTraining

__all__ = [
    "AdversarialConfig",
    "CodecStage",
    "DecoderRetraining",
    "DecoderStage",
    "DistortionConfig",
    "DistortionLoss",
    "FileValidation",
    "JointRD",
    "RDPoint",
    "RateAdaptation",
    "ScalarCodecTraining",
    "VQPretrain",
]
