"""What every task provides: prompts, target strings, parsing of free text, and metrics.

Tasks own their semantics; models and predictors only "score these continuations" or "generate until".
Prompt text is rendered with the tokenizer's chat template when it has one (so training and inference
see the identical template), and with a plain ``### Input / ### Output`` template otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slmforge.errors import TaskError
from slmforge.prompting import Message
from slmforge.records import PredictionRow

T = TypeVar("T")


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


@dataclass(frozen=True)
class PredictionProtocol:
    """Everything a predictor may know of a task, declared once (predictors never probe a task).

    decoding: ``scoring`` (pick one of ``labels``) or ``generation``; output_format: ``label`` | ``json`` |
    ``text``; messages(example, shots) -> chat messages; parse(raw) -> (prediction, details);
    labels: the label set (classification); schema: the extraction schema (constrained decoding);
    max_new_tokens: the task's output length bound (None: the predictor's default); value_bounds: per-field
    length bounds learned from training data (constrained decoding); max_prompt_tokens: the prompt budget
    (``task.max_length`` minus the longest answer), the same cut training rows get. output_grammar(example,
    options) -> :class:`~slmforge.schema.grammar.OutputGrammar`: what constrained decoding allows (None: the
    task has no grammar); ``example`` is None unless ``grammar_per_row`` (e.g. spans copied from the input);
    ``options`` are the user's ``eval.constraint`` settings (bounds).
    """

    name: str
    decoding: str
    output_format: str
    messages: Callable[..., list[Message]]
    parse: Callable[[str], tuple[Any, dict[str, Any]]]
    labels: tuple[str, ...] | None = None
    schema: Any | None = None
    max_new_tokens: int | None = None
    value_bounds: dict[str, int] = field(default_factory=dict)
    max_prompt_tokens: int = 512
    output_grammar: Callable[[dict[str, Any] | None, Mapping[str, Any]], Any] | None = None
    grammar_per_row: bool = False


class Task(ABC):
    """Base class. ``decoding`` is ``"scoring"`` (pick among fixed choices) or ``"generation"``."""

    name: str = "task"
    decoding: str = "generation"
    target_key: str = "output"
    output_format: str = "text"
    higher_is_better: bool = True  # of the primary metric

    def __init__(
        self, system_prompt: str | None = None, instruction: str = "", max_length: int = 512
    ) -> None:
        self.system_prompt = system_prompt
        self.instruction = instruction
        # The one length rule: a training row (prompt + answer) fits max_length tokens, the prompt cut in the
        # middle when it does not; a prediction prompt gets the same budget less the longest answer.
        self.max_length = int(max_length)
        self.answer_tokens = 0

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

    def set_length_bound(self, tokenizer: Any, train: Sequence[dict[str, Any]]) -> int | None:
        """Learn the output length bound from the training targets: tokens of the longest target + EOS (the
        prompt budget at prediction is ``max_length`` minus this). Generation tasks also stop there."""
        targets = {self.target(ex) for ex in train}
        self.answer_tokens = max(
            (len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in targets), default=1
        )
        return None

    @property
    def max_prompt_tokens(self) -> int:
        return max(16, self.max_length - self.answer_tokens)

    # ---- abstention (selective prediction): classification overrides; other tasks always answer ----------

    @property
    def abstention_needs_validation(self) -> bool:
        """Whether the evaluation must predict the validation split first, to choose an abstention
        threshold there before the test rows are judged."""
        return False

    def choose_abstention(
        self, validation_rows: Sequence[PredictionRow] | None, where: str
    ) -> dict[str, Any] | None:
        """The abstention rule for one predictor (``None``: never abstain), chosen on ``validation_rows``
        (``where`` says which split they are, for the record). Per predictor, never stored on the task:
        one task serves every predictor of a comparison."""
        return None

    def apply_abstention(
        self, rows: Sequence[PredictionRow], choice: dict[str, Any] | None
    ) -> list[PredictionRow]:
        """``rows`` with the rule of :meth:`choose_abstention` applied (unchanged without one)."""
        return list(rows)

    def row_details(self, raw: str, gold: Any) -> dict[str, Any]:
        """Per-row details of a free-text output for ``predictions.jsonl`` (extraction: per-field verdicts)."""
        return {}

    def protocol(self) -> PredictionProtocol:
        """What predictors see of this task (read at predict time: length bounds are set after setup).
        Subclasses add what they declare (labels, schema, length bounds) with ``dataclasses.replace``."""
        return PredictionProtocol(
            name=self.name,
            decoding=self.decoding,
            output_format=self.output_format,
            messages=self.messages,
            parse=self.parse,
            max_prompt_tokens=self.max_prompt_tokens,
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "decoding": self.decoding}
