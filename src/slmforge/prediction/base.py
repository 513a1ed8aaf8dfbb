"""What a predictor returns, and the protocol every predictor (local or API) follows."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


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


class IncompletePredictions(RuntimeError):
    """A predictor stopped before every example was predicted (an API request budget ran out).

    ``predictions``: one entry per input example, in order; a :class:`Prediction` where the example
    finished, ``None`` where it did not. Defined here, beside the protocol, so that the evaluation can keep
    the finished rows without importing any one predictor.
    """

    def __init__(self, message: str, predictions: list[Prediction | None]) -> None:
        super().__init__(message)
        self.predictions = predictions


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for prediction, then the model's previous mode (training may resume)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], float]]:
    """Indices of batches of similar length (little padding), each with a start time; callers put results
    back in input order and divide the batch's elapsed time by its size for a per-example latency."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size], time.perf_counter()
