"""What a predictor returns, and the protocol every predictor (local or API) follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Prediction:
    """One example's prediction before the task judges it.

    ``latency_ms`` is this example's share of the batch it ran in (batch time / batch size); the
    evaluation separately measures single-request latency.
    """

    pred: Any
    confidence: float | None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw_output: str | None = None
    label_probs: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    """Anything that turns examples into predictions, in order. ``describe`` goes into the results record."""

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]: ...

    def describe(self) -> dict[str, Any]: ...
