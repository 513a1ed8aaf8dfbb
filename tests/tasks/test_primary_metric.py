"""task.primary_metric=auto: macro-F1 leads when the training labels are imbalanced, accuracy otherwise."""

from __future__ import annotations

from collections import Counter

import pytest

from slmforge.errors import TaskError
from slmforge.tasks.classification import ClassificationTask, imbalanced


def _rows(counts: dict[str, int]) -> list[dict]:
    return [{"id": f"{lab}{i}", "text": "t", "label": lab} for lab, n in counts.items() for i in range(n)]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"ham": 3611, "spam": 525}, True),  # sms_spam: 13% spam, normalised entropy 0.55
        ({"ok": 60, "review": 34, "block": 6}, True),  # a 6% moderation class: entropy 0.77
        (
            {**{f"i{k}": 130 for k in range(76)}, "rare": 35},
            False,
        ),  # banking77-like: smallest 0.27 of the median
        ({**{f"i{k}": 130 for k in range(70)}, **{f"m{k}": 6 for k in range(7)}}, True),  # intents cut to 5%
        ({"a": 50, "b": 50, "c": 45}, False),
        ({"a": 10}, False),
    ],
)
def test_imbalance_rule(counts: dict[str, int], expected: bool) -> None:
    assert imbalanced(Counter(counts)) is expected


def test_auto_picks_macro_f1_on_imbalanced_training_labels_and_accuracy_otherwise() -> None:
    skewed = ClassificationTask()
    skewed.setup(_rows({"ham": 87, "spam": 13}), {})
    assert skewed.primary_metric == "macro_f1" and skewed.describe()["primary_metric"] == "macro_f1"
    even = ClassificationTask()
    even.setup(_rows({"ham": 50, "spam": 50}), {})
    assert even.primary_metric == "accuracy"
    fixed = ClassificationTask(primary_metric="accuracy")
    fixed.setup(_rows({"ham": 87, "spam": 13}), {})
    assert fixed.primary_metric == "accuracy"


def test_unknown_primary_metric_is_named() -> None:
    with pytest.raises(
        TaskError, match=r"task\.primary_metric=f2 is not one of \['auto', 'accuracy', 'macro_f1'\]"
    ):
        ClassificationTask(primary_metric="f2")
