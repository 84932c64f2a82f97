"""Plain-dict round trip for configuration dataclasses: checkpoints store configurations as dicts
(loadable with ``torch.load(weights_only=True)``), and reading them back re-validates."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar, TypeVar

from rdvq.errors import ConfigError

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """Mixin for dataclasses; ``section`` names the config in error messages."""

    section: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        unknown = set(data) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        if unknown:
            raise ConfigError(f"{cls.section}: unknown keys {sorted(unknown)}")
        return cls(**data)
