"""Generation metrics: reference overlap (ROUGE-L, chrF, BLEU), exact match, token accuracy, constraints.

Everything here runs offline: torchmetrics' ROUGE-L uses its own whitespace tokenizer and needs nltk
only for stemming/``rougeLsum`` (both off here); ``SacreBLEUScore`` with the default ``13a`` tokenizer
is implemented inside torchmetrics and needs neither the ``sacrebleu`` package nor a download.

Conventions:

- exact match compares prediction and reference after collapsing whitespace (case-sensitive);
- token accuracy, per example, is the number of positions where the whitespace tokens agree divided by
  the longer of the two token lists (1.0 when both are empty), averaged over examples;
- ROUGE-L is the mean per-example F-measure; chrF and BLEU are corpus-level, all in [0, 1];
- constraint compliance: an example complies when it meets every configured constraint; per-constraint
  rates are over the examples that constraint was checked on (per-example required phrases make
  ``required_phrases`` apply only to some examples).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torchmetrics
from torch import Tensor
from torchmetrics.text import CHRFScore, ROUGEScore, SacreBLEUScore

CONSTRAINT_NAMES: tuple[str, ...] = ("required_phrases", "regex", "length", "forbidden_phrases")


@dataclass
class Constraints:
    """Output constraints for a generation task.

    Phrases match as substrings, case-insensitively unless ``case_sensitive``; ``regex`` must be found
    somewhere in the text (``re.search``; anchor it with ``^...$`` to match the whole text); the length
    bounds count whitespace-separated words, inclusive. :mod:`slmforge.schema.text_grammar` turns them into
    the grammar constrained decoding enforces (and says which regexes it cannot express).
    """

    required_phrases: list[str] = field(default_factory=list)
    regex: str | None = None
    min_words: int | None = None
    max_words: int | None = None
    forbidden_phrases: list[str] = field(default_factory=list)
    case_sensitive: bool = False

    def __post_init__(self) -> None:
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as e:
                raise ValueError(
                    f"constraints.regex {self.regex!r} is not a valid regular expression: {e}"
                ) from e
        if self.min_words is not None and self.max_words is not None and self.min_words > self.max_words:
            raise ValueError(f"constraints: min_words ({self.min_words}) > max_words ({self.max_words})")

    @property
    def configured(self) -> bool:
        return bool(
            self.required_phrases
            or self.regex is not None
            or self.min_words is not None
            or self.max_words is not None
            or self.forbidden_phrases
        )


def _contains(text: str, phrase: str, case_sensitive: bool) -> bool:
    return phrase in text if case_sensitive else phrase.casefold() in text.casefold()


def check_constraints(
    text: str, constraints: Constraints, required_extra: Sequence[str] | None = None
) -> dict[str, bool]:
    """Which configured constraints ``text`` meets, e.g. ``{"regex": True, "length": False}``.

    Only constraints that apply are keys: ``required_phrases`` when the config or ``required_extra``
    (this example's own required phrases) names any; ``length`` when a word bound is set.
    """
    out: dict[str, bool] = {}
    required = [*constraints.required_phrases, *(required_extra or [])]
    cs = constraints.case_sensitive
    if required:
        out["required_phrases"] = all(_contains(text, p, cs) for p in required)
    if constraints.regex is not None:
        out["regex"] = re.search(constraints.regex, text) is not None
    if constraints.min_words is not None or constraints.max_words is not None:
        n = len(text.split())
        lo = constraints.min_words if constraints.min_words is not None else 0
        hi = constraints.max_words if constraints.max_words is not None else math.inf
        out["length"] = lo <= n <= hi
    if constraints.forbidden_phrases:
        out["forbidden_phrases"] = not any(_contains(text, p, cs) for p in constraints.forbidden_phrases)
    return out


class ConstraintCompliance(torchmetrics.Metric):
    """Rate of outputs meeting all constraints, and per constraint; sum states, accumulates anywhere."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    n: Tensor
    n_compliant: Tensor
    checked: Tensor
    passed: Tensor

    def __init__(self, constraints: Constraints | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.constraints = constraints or Constraints()
        self.add_state("n", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_compliant", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        k = len(CONSTRAINT_NAMES)
        self.add_state("checked", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("passed", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, preds: Sequence[str], per_example_required: Sequence[Sequence[str]] | None = None
    ) -> None:
        if per_example_required is not None and len(per_example_required) != len(preds):
            raise ValueError(
                f"{len(preds)} predictions but {len(per_example_required)} per-example phrase lists"
            )
        checked = [0] * len(CONSTRAINT_NAMES)
        passed = [0] * len(CONSTRAINT_NAMES)
        compliant = 0
        for i, text in enumerate(preds):
            extra = per_example_required[i] if per_example_required is not None else None
            result = check_constraints(text, self.constraints, extra)
            for j, name in enumerate(CONSTRAINT_NAMES):
                if name in result:
                    checked[j] += 1
                    passed[j] += int(result[name])
            compliant += int(all(result.values()))  # no constraint at all: trivially compliant
        self.n += len(preds)
        self.n_compliant += compliant
        self.checked += torch.tensor(checked, device=self.checked.device)
        self.passed += torch.tensor(passed, device=self.passed.device)

    def compute(self) -> dict[str, Any]:
        """``{"compliance": rate, "per_constraint": {name: rate}}`` for constraints checked at least once."""
        n = int(self.n)
        checked, passed = self.checked.tolist(), self.passed.tolist()
        return {
            "compliance": int(self.n_compliant) / n if n else math.nan,
            "per_constraint": {
                name: passed[j] / checked[j] for j, name in enumerate(CONSTRAINT_NAMES) if checked[j] > 0
            },
        }


def _squash(text: str) -> str:
    return " ".join(text.split())


def token_accuracy(pred: str, reference: str) -> float:
    """Position-wise whitespace-token agreement divided by the longer length (1.0 if both empty)."""
    p, r = pred.split(), reference.split()
    longest = max(len(p), len(r))
    if longest == 0:
        return 1.0
    return sum(a == b for a, b in zip(p, r, strict=False)) / longest


class GenerationMetrics:
    """ROUGE-L, chrF, BLEU, exact match, token accuracy and constraint compliance in one accumulator.

    A plain object rather than a :class:`torchmetrics.Metric`: it composes several torchmetrics text
    metrics, each of which synchronises its own state across processes when computed, and a parent
    Metric's ``forward``/``reset`` bookkeeping would not reach them.
    ``update(preds, targets, per_example_required=None)`` then ``compute()`` -> plain Python dict.
    """

    def __init__(self, constraints: Constraints | None = None) -> None:
        self.constraints = constraints or Constraints()
        self.rouge = ROUGEScore(rouge_keys="rougeL", use_stemmer=False)
        self.chrf = CHRFScore()
        self.bleu = SacreBLEUScore()  # torchmetrics' own 13a tokenizer: offline
        self.compliance = ConstraintCompliance(self.constraints)
        self._n = 0
        self._exact = 0
        self._token_acc = 0.0

    def update(
        self,
        preds: Sequence[str],
        targets: Sequence[str],
        per_example_required: Sequence[Sequence[str]] | None = None,
    ) -> None:
        preds, targets = [str(p) for p in preds], [str(t) for t in targets]
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
        if not preds:
            return
        self.rouge.update(preds, targets)
        self.chrf.update(preds, [[t] for t in targets])
        self.bleu.update(preds, [[t] for t in targets])
        self.compliance.update(preds, per_example_required)
        self._n += len(preds)
        self._exact += sum(_squash(p) == _squash(t) for p, t in zip(preds, targets, strict=True))
        self._token_acc += sum(token_accuracy(p, t) for p, t in zip(preds, targets, strict=True))

    def compute(self) -> dict[str, Any]:
        """``{"n", "rougeL", "chrf", "bleu", "exact_match", "token_accuracy", "compliance", "per_constraint"}``."""
        if self._n == 0:
            nan = math.nan
            return dict.fromkeys(
                ("rougeL", "chrf", "bleu", "exact_match", "token_accuracy", "compliance"), nan
            ) | {
                "n": 0,
                "per_constraint": {},
            }
        return {
            "n": self._n,
            "rougeL": float(self.rouge.compute()["rougeL_fmeasure"]),
            "chrf": float(self.chrf.compute()),
            "bleu": float(self.bleu.compute()),
            "exact_match": self._exact / self._n,
            "token_accuracy": self._token_acc / self._n,
            **self.compliance.compute(),
        }

    def reset(self) -> None:
        for m in (self.rouge, self.chrf, self.bleu, self.compliance):
            m.reset()
        self._n, self._exact, self._token_acc = 0, 0, 0.0
