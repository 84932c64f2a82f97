"""Every index entropy model, keyed by the ``kind`` configs use.

Registering a model is one entry in :data:`MODELS`; configs, checkpoints and the codec find it
from here. :data:`EntropyModelConfig` is the union of the models' config dataclasses, which the
Lightning CLI resolves by their ``kind`` field (``--model.init_args.entropy_model.kind static``
switches the model and its fields).
"""

from __future__ import annotations

from typing import Any, Union

from rdvq.entropy.base import IndexEntropyModel
from rdvq.entropy.hypervq import HyperVQModel
from rdvq.entropy.static_table import StaticTableModel
from rdvq.entropy.transformer import TransformerModel
from rdvq.entropy.uniform import UniformModel
from rdvq.errors import CheckpointError, ConfigError
from rdvq.tokenizer import Tokenizer

MODELS: tuple[type[IndexEntropyModel], ...] = (UniformModel, StaticTableModel, HyperVQModel, TransformerModel)

ENTROPY_MODELS: dict[str, type[IndexEntropyModel]] = {model.kind: model for model in MODELS}
# Built from MODELS, so a new model needs no second line here (static type checkers see only Any).
EntropyModelConfig = Union[tuple(model.config_class for model in MODELS)]  # type: ignore[valid-type]  # noqa: UP007


def entropy_model_class(kind: str) -> type[IndexEntropyModel]:
    if kind not in ENTROPY_MODELS:
        raise ConfigError(f"unknown entropy model kind {kind!r} (choose {', '.join(ENTROPY_MODELS)})")
    return ENTROPY_MODELS[kind]


def build_entropy_model(config: Any, tokenizer: Tokenizer, coding_only: bool = False) -> IndexEntropyModel:
    """The model ``config`` describes, for the branches of ``tokenizer`` (``coding_only``: see
    :meth:`IndexEntropyModel.build`)."""
    sizes = [tokenizer.quantizer(b).codebook_size for b in tokenizer.branches]
    return entropy_model_class(config.kind).build(config, sizes, tokenizer.config.embed_dim, coding_only)


def entropy_config_from_dict(data: dict[str, Any]) -> Any:
    """A stored config dict (with its ``kind``) back to its dataclass, re-validated."""
    if not isinstance(data, dict) or "kind" not in data:
        raise CheckpointError("stored entropy model configuration has no kind")
    return entropy_model_class(data["kind"]).config_class.from_dict(data)
