"""The rate-distortion point of a stage: lambda, tau and lambda's warm-up, as one part.

``loss = distortion + lambda * bpp`` (plus the family's other terms); ``tau`` is the temperature of
the soft posterior ``softmax(-d / tau)`` where the family has one (VQ), None where it has none (the
scalar codec). A lambda/tau sweep (:class:`callbacks.RDSweep`) moves the point with
:meth:`RDPoint.set_rd_point`; the point travels in every checkpoint under one key
(:data:`rdvq.checkpointing.RD_POINT_KEY`), so a resumed run continues where it was and stage D
knows the lambda a codec was trained at.
"""

from __future__ import annotations

from typing import Any

from rdvq.errors import ConfigError


def _check(lmbda: float, tau: float | None) -> None:
    if not lmbda >= 0:
        raise ConfigError(f"lmbda must be >= 0, got {lmbda}")
    if tau is not None and not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")


class RDPoint:
    def __init__(self, lmbda: float, tau: float | None = None, warmup_steps: int = 0) -> None:
        _check(lmbda, tau)
        if warmup_steps < 0:
            raise ConfigError(f"lambda_warmup_steps must be >= 0, got {warmup_steps}")
        self.lmbda = float(lmbda)
        self.tau = None if tau is None else float(tau)
        self.warmup_steps = warmup_steps

    def set_rd_point(self, lmbda: float, tau: float | None = None) -> None:
        """Move to another point. ``tau`` None keeps the current temperature; a family without a
        soft posterior ignores ``tau``."""
        tau = self.tau if tau is None or self.tau is None else tau
        _check(lmbda, tau)
        self.lmbda, self.tau = float(lmbda), tau if tau is None else float(tau)

    def weight(self, step: int) -> float:
        """lambda at ``step``: a linear ramp from 0 over the first ``warmup_steps`` steps."""
        if self.warmup_steps == 0:
            return self.lmbda
        return self.lmbda * min(1.0, step / self.warmup_steps)

    def logs(self, step: int) -> dict[str, float]:
        logs = {"train/lambda": self.lmbda, "train/lambda_effective": self.weight(step)}
        if self.tau is not None:
            logs["train/tau"] = self.tau
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {"lmbda": self.lmbda, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_rd_point(state["lmbda"], state.get("tau"))
