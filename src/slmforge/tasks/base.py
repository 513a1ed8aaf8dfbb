"""What every task provides: prompts, target strings, parsing of free text, and metrics.

Tasks own their semantics; models and predictors only "score these continuations" or "generate until".
Prompt text is rendered with the tokenizer's chat template when it has one (so training and inference
see the identical template), and with a plain ``### Input / ### Output`` template otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from slmforge.records import PredictionRow

Message = dict[str, str]
T = TypeVar("T")


class TaskError(ValueError):
    """Task configuration that does not fit the data; the message says what to change."""


def options_from_config(
    cls: type[T], value: T | Mapping[str, Any] | None, key: str, prepare: Callable[[dict], dict] | None = None
) -> T:
    """A task's option dataclass from config: ``None`` -> defaults, an instance as is, a mapping checked
    for unknown keys (named with ``task.<key>``), optionally ``prepare``d, then constructed. A
    ``ValueError`` from construction becomes a :class:`TaskError`."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(str(k) for k in value if k not in known)  # type: ignore[union-attr]
    if unknown:
        raise TaskError(f"task.{key} has unknown key(s) {unknown}; allowed keys: {sorted(known)}")
    try:
        d = dict(value)  # type: ignore[arg-type]
        return cls(**(prepare(d) if prepare else d))
    except TaskError:
        raise
    except ValueError as e:
        raise TaskError(str(e)) from e


class Task(ABC):
    """Base class. ``decoding`` is ``"scoring"`` (pick among fixed choices) or ``"generation"``."""

    name: str = "task"
    decoding: str = "generation"
    target_key: str = "output"

    def __init__(self, system_prompt: str | None = None, instruction: str = "") -> None:
        self.system_prompt = system_prompt
        self.instruction = instruction

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:  # noqa: B027
        """Learn what the task needs from the training data (labels, length bounds) and validate others."""

    @abstractmethod
    def user_content(self, example: dict[str, Any]) -> str: ...

    @abstractmethod
    def target(self, example: dict[str, Any]) -> str:
        """The exact answer string the model is trained to produce (EOS is appended by the tokenizer step)."""

    def gold(self, example: dict[str, Any]) -> Any:
        return example[self.target_key]

    def messages(self, example: dict[str, Any], shots: Sequence[dict[str, Any]] = ()) -> list[Message]:
        """Chat messages for ``example``; few-shot examples become earlier user/assistant turns."""
        msgs: list[Message] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        for shot in shots:
            msgs.append({"role": "user", "content": self.user_content(shot)})
            msgs.append({"role": "assistant", "content": self.target(shot)})
        msgs.append({"role": "user", "content": self.user_content(example)})
        return msgs

    @abstractmethod
    def parse(self, raw: str) -> tuple[Any, dict[str, Any]]:
        """Free text (an API reply, a generation) -> (prediction, details). Never raises."""

    @abstractmethod
    def correct(self, pred: Any, gold: Any) -> float:
        """Per-example score in [0, 1] (routing and ensembles use it)."""

    @abstractmethod
    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]: ...

    @property
    def primary_metric(self) -> str:
        return "accuracy"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "decoding": self.decoding}


def fit_prompt(ids: list[int], budget: int) -> list[int]:
    """``ids`` cut to ``budget`` tokens from the middle: the template head (system turn, instruction: up to
    32 tokens) and the tail (the text's end and the assistant marker) are kept. Training rows and
    prediction prompts are cut by this one rule, so a model sees at inference what it saw in training."""
    if len(ids) <= budget:
        return ids
    head = min(32, max(budget, 0) // 4)
    return ids[:head] + ids[len(ids) - (budget - head) :]


def render_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """The prompt string up to where the assistant's answer starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            parts.append(f"### Input:\n{m['content']}\n\n### Output:\n")
        else:
            parts.append(f"{m['content']}{tokenizer.eos_token or ''}\n\n")
    return "".join(parts)
