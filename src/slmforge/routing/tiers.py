"""Tier rules: send some inputs to the expensive predictor on sight, before trusting the cheap one.

Some inputs are known to be hard for a small model (very long texts, another language, a pattern the
fine-tuning data never covered). Sending them straight to the expensive predictor skips the cheap
model's latency and cost and avoids trusting a confidence that is unreliable out of distribution.

Rules, each a :class:`TierRule`:

- ``max_chars``: text longer than N characters goes to the expensive predictor;
- ``pattern``: text matching a regular expression (``re.search``; use ``(?i)`` for case-insensitive);
- ``non_ascii_share``: more than this share of the non-whitespace characters is non-ASCII (a cheap
  language proxy for a model fine-tuned on English);
- ``labels``: the cheap predictor's *predicted* label is in a set (e.g. a rare class it handles badly).
  Gold labels are unknown at serving time, so this rule necessarily runs the cheap model first: an
  example it escalates pays both latencies and both costs, like a low-confidence escalation.

The first three are decided from the text alone (``needs_cheap`` False); routing by them costs only the
expensive predictor.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slmforge.records import PredictionRow
from slmforge.routing.errors import RoutingError
from slmforge.routing.threshold import RoutingPoint, _arrays, _check_costs, _point, _sweep, align_rows

RULE_KINDS = ("max_chars", "pattern", "labels", "non_ascii_share")


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def non_ascii_share(text: str) -> float:
    """Share of non-whitespace characters outside ASCII (0 for an empty or all-whitespace text)."""
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 0.0
    return sum(ord(ch) > 127 for ch in chars) / len(chars)


@dataclass(frozen=True)
class TierRule:
    """One rule; build with ``TierRule("max_chars", 2000)`` or ``TierRule.from_dict({"max_chars": 2000})``."""

    kind: str
    value: Any

    def __post_init__(self) -> None:
        k, v = self.kind, self.value
        if k not in RULE_KINDS:
            raise RoutingError(f"unknown tier rule kind {k!r}; expected one of {list(RULE_KINDS)}")
        if k == "max_chars":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RoutingError(f"tier rule max_chars needs a non-negative integer, got {v!r}")
        elif k == "pattern":
            if not isinstance(v, str) or not v:
                raise RoutingError(f"tier rule pattern needs a non-empty regular expression, got {v!r}")
            try:
                _compile(v)
            except re.error as e:
                raise RoutingError(f"tier rule pattern {v!r} is not a valid regular expression: {e}") from e
        elif k == "non_ascii_share":
            if isinstance(v, bool) or not isinstance(v, int | float) or not (0.0 <= v < 1.0):
                raise RoutingError(f"tier rule non_ascii_share needs a share in [0, 1), got {v!r}")
        else:  # labels
            if isinstance(v, str) or not isinstance(v, Iterable):
                raise RoutingError(f"tier rule labels needs a list of label strings, got {v!r}")
            labels = tuple(sorted({str(x) for x in v}))
            if not labels:
                raise RoutingError("tier rule labels needs at least one label")
            object.__setattr__(self, "value", labels)  # hashable and order-independent

    @property
    def needs_cheap(self) -> bool:
        """True when the rule needs the cheap predictor's output (so the cheap model runs first)."""
        return self.kind == "labels"

    def matches(self, text: str, cheap_pred: Any = None) -> bool:
        """Whether this rule sends the input to the expensive predictor."""
        if self.kind == "max_chars":
            return len(text) > self.value
        if self.kind == "pattern":
            return _compile(self.value).search(text) is not None
        if self.kind == "non_ascii_share":
            return non_ascii_share(text) > self.value
        return cheap_pred is not None and str(cheap_pred) in self.value

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": list(self.value) if self.kind == "labels" else self.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | TierRule, where: str = "<tier rule>") -> TierRule:
        """From ``{"kind": k, "value": v}`` or the short form ``{k: v}`` (handy in Hydra configs)."""
        if isinstance(d, TierRule):
            return d
        if not isinstance(d, Mapping):
            raise RoutingError(
                f"{where}: a tier rule must be a mapping like {{'max_chars': 2000}}, got {d!r}"
            )
        if "kind" in d:
            if set(d) != {"kind", "value"}:
                raise RoutingError(f"{where}: a tier rule needs exactly 'kind' and 'value', got {sorted(d)}")
            kind, value = d["kind"], d["value"]
        elif len(d) == 1:
            ((kind, value),) = d.items()
        else:
            raise RoutingError(f"{where}: the short form of a tier rule has one key, got {sorted(d)}")
        try:
            return cls(str(kind), value)
        except RoutingError as e:
            raise RoutingError(f"{where}: {e}") from None


def parse_rules(rules: Iterable[Mapping[str, Any] | TierRule]) -> list[TierRule]:
    """A list of :class:`TierRule` from rules or their dict forms."""
    return [TierRule.from_dict(r, where=f"tier rule #{i}") for i, r in enumerate(rules)]


def pre_route(text: str, rules: Sequence[TierRule]) -> bool:
    """True when a text-only rule sends ``text`` to the expensive predictor without running the cheap one."""
    return any(r.matches(text) for r in rules if not r.needs_cheap)


def tier_masks(
    cheap: Sequence[PredictionRow], expensive: Sequence[PredictionRow], rules: Sequence[TierRule]
) -> tuple[np.ndarray, np.ndarray]:
    """``(pre_routed, post_escalate)`` boolean arrays over aligned rows.

    ``pre_routed``: a text rule matched (expensive only). ``post_escalate``: no text rule matched but the
    label rule did on the cheap prediction (cheap then expensive).
    """
    text_rules = [r for r in rules if not r.needs_cheap]
    label_rules = [r for r in rules if r.needs_cheap]
    texts = [c.text or e.text or "" for c, e in zip(cheap, expensive, strict=True)]
    if text_rules and not any(texts):
        raise RoutingError(
            "tier rules on the input text need predictions with their 'text' field, but every row's text "
            "is empty; re-evaluate with input texts saved in predictions.jsonl, or use only 'labels' rules"
        )
    pre = np.array([any(r.matches(t) for r in text_rules) for t in texts], dtype=bool)
    post = np.array([any(r.matches("", c.pred) for r in label_rules) for c in cheap], dtype=bool) & ~pre
    return pre, post


def apply_tiers(
    cheap: Sequence[PredictionRow],
    expensive: Sequence[PredictionRow],
    rules: Sequence[TierRule | Mapping[str, Any]],
    threshold: float,
    cost_cheap: float,
    cost_exp: float,
) -> RoutingPoint:
    """The point for tier rules plus a confidence threshold on what the rules leave to the cheap model.

    Text-rule examples cost the expensive predictor only (latency and cost); label-rule and
    low-confidence examples cost both.
    """
    _check_costs(cost_cheap, cost_exp)
    parsed = parse_rules(rules)
    c, e = align_rows(cheap, expensive)
    pre, post = tier_masks(c, e, parsed)
    kind = "tiered" if parsed else "threshold"
    return _point(_arrays(c, e), threshold, cost_cheap, cost_exp, pre, post, kind)


def sweep_tiers(
    cheap: Sequence[PredictionRow],
    expensive: Sequence[PredictionRow],
    rules: Sequence[TierRule | Mapping[str, Any]],
    cost_cheap: float,
    cost_exp: float,
    cheap_name: str = "cheap",
    expensive_name: str = "expensive",
) -> list[RoutingPoint]:
    """:func:`~slmforge.routing.threshold.sweep_thresholds` with tier rules applied first.

    With no rules this is exactly the plain threshold sweep.
    """
    _check_costs(cost_cheap, cost_exp)
    parsed = parse_rules(rules)
    c, e = align_rows(cheap, expensive, cheap_name, expensive_name)
    if not parsed:
        return _sweep(c, e, cost_cheap, cost_exp)
    pre, post = tier_masks(c, e, parsed)
    return _sweep(c, e, cost_cheap, cost_exp, pre, post, kind="tiered")
