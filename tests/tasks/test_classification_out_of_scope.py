"""Classification with an out-of-scope label and abstention: config checks, the rule, and the metrics."""

from __future__ import annotations

import math

import pytest

from slmforge.errors import TaskError
from slmforge.records import PredictionRow
from slmforge.tasks.classification import ABSTAIN, ClassificationTask

LABELS = ["billing", "shipping", "out_of_scope"]
TRAIN = [{"id": str(i), "text": f"t{i}", "label": lab} for i, lab in enumerate(LABELS * 2)]


def _task(**kw) -> ClassificationTask:
    task = ClassificationTask(**kw)
    task.setup(TRAIN, {})
    return task


def _row(i: int, gold: str, pred: str, conf: float) -> PredictionRow:
    rest = (1 - conf) / 2
    probs = {lab: (conf if lab == pred else rest) for lab in LABELS}
    return PredictionRow(id=str(i), text="", gold=gold, pred=pred, confidence=conf, correct=float(pred == gold),
                         latency_ms=0.0, label_probs=probs)  # fmt: skip


ROWS = [
    _row(0, "billing", "billing", 0.9),
    _row(1, "shipping", "billing", 0.5),
    _row(2, "out_of_scope", "billing", 0.4),
    _row(3, "out_of_scope", "out_of_scope", 0.8),
    _row(4, "shipping", "shipping", 0.7),
]


def test_out_of_scope_label_must_be_a_label() -> None:
    with pytest.raises(TaskError, match=r"task\.out_of_scope_label='none'.*billing.*out_of_scope_label=null"):
        _task(out_of_scope_label="none")


def test_abstain_options_are_checked() -> None:
    with pytest.raises(TaskError, match=r"task\.abstain has unknown key\(s\) \['target'\]"):
        ClassificationTask(abstain={"enabled": True, "target": 0.9})
    with pytest.raises(TaskError, match=r"task\.abstain\.threshold='high'"):
        ClassificationTask(abstain={"enabled": True, "threshold": "high"})
    with pytest.raises(TaskError, match=r"target_accuracy=1.5"):
        ClassificationTask(abstain={"enabled": True, "target_accuracy": 1.5})


def test_plain_task_has_no_selective_metrics() -> None:
    metrics = _task().compute_metrics(ROWS)
    assert "oos_recall" not in metrics and "coverage_curve" not in metrics
    assert metrics["accuracy"] == pytest.approx(3 / 5)


def test_out_of_scope_metrics_without_abstention() -> None:
    m = _task(out_of_scope_label="out_of_scope").compute_metrics(ROWS)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 3)  # rows 0, 1, 4: 0 and 4 right
    assert m["oos_precision"] == 1.0 and m["oos_recall"] == 0.5 and m["oos_f1"] == pytest.approx(2 / 3)
    # in-scope score = top in-scope probability: rows 0,1,4 -> .9,.5,.7; out of scope rows 2,3 -> .4,.1
    assert m["oos_auroc"] == 1.0
    assert m["n_out_of_scope"] == 2
    assert "coverage" not in m
    assert m["coverage_curve"]["coverage"][-1] == 1.0


def test_threshold_chosen_on_validation_turns_low_confidence_into_out_of_scope() -> None:
    task = _task(out_of_scope_label="out_of_scope", abstain={"enabled": True, "target_accuracy": 0.75})
    assert task.abstention_needs_validation
    choice = task.choose_abstention(ROWS, "validation")
    # descending: .9 ok, .8 ok, .7 ok, .5 wrong (acc .75 at coverage .8), .4 wrong (.6)
    assert choice["threshold"] == 0.5 and choice["chosen_on"] == "validation" and choice["met_target"]
    assert choice["there"] == {
        "n": 5, "coverage": pytest.approx(0.8), "accuracy": 0.75, "answered_accuracy": pytest.approx(0.6)
    }  # fmt: skip
    out = task.apply_abstention(ROWS, choice)
    assert [r.pred for r in out] == ["billing", "billing", "out_of_scope", "out_of_scope", "shipping"]
    assert out[2].details == {"raw_pred": "billing", "abstained": True} and out[2].correct == 1.0
    assert ROWS[2].pred == "billing"  # the input rows are left alone
    m = task.compute_metrics(out)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["oos_recall"] == 1.0 and m["oos_precision"] == 1.0
    assert m["coverage"] == pytest.approx(4 / 5) and m["selective_accuracy"] == pytest.approx(3 / 4)
    assert task.labels == ["billing", "out_of_scope", "shipping"]  # sorted from training
    assert m["confusion_matrix"][1] == [0, 2, 0]  # both out_of_scope rows predicted out_of_scope


def test_abstention_without_out_of_scope_label_uses_the_marker() -> None:
    task = _task(abstain={"enabled": True, "threshold": 0.6})
    choice = task.choose_abstention(None, "config")
    assert choice == {"threshold": 0.6, "chosen_on": "config"} and not task.abstention_needs_validation
    out = task.apply_abstention(ROWS, choice)
    assert [r.pred for r in out].count(ABSTAIN) == 2
    m = task.compute_metrics(out)
    assert m["coverage"] == pytest.approx(3 / 5) and m["selective_accuracy"] == pytest.approx(1.0)
    # rows 0, 3, 4 answered (all right), 1 and 2 abstained (wrong, and not a label: invalid)
    assert m["accuracy"] == pytest.approx(3 / 5) and m["invalid_rate"] == pytest.approx(2 / 5)
    assert "oos_recall" not in m
    assert m["in_scope_accuracy"] == pytest.approx(3 / 5)  # no out-of-scope label: every row is in scope


def test_auto_threshold_without_validation_rows_is_a_clear_error() -> None:
    task = _task(abstain={"enabled": True})
    with pytest.raises(TaskError, match=r"task\.abstain\.threshold=auto.*task\.abstain\.threshold=0\.5"):
        task.choose_abstention([], "test")


def test_abstain_marker_cannot_shadow_a_label() -> None:
    task = ClassificationTask(abstain={"enabled": True, "threshold": 0.5})
    with pytest.raises(TaskError, match="out_of_scope_label=abstain"):
        task.setup([{"text": "a", "label": "abstain"}, {"text": "b", "label": "other"}], {})


def test_empty_in_scope_is_nan() -> None:
    m = _task(out_of_scope_label="out_of_scope").compute_metrics([ROWS[3]])
    assert math.isnan(m["in_scope_accuracy"]) and math.isnan(m["oos_auroc"])


IN_SCOPE_TRAIN = [r for r in TRAIN if r["label"] != "out_of_scope"]


def test_untrained_out_of_scope_label_is_reached_only_by_abstaining() -> None:
    task = ClassificationTask(out_of_scope_label="out_of_scope", abstain={"enabled": True, "threshold": 0.6})
    task.setup(IN_SCOPE_TRAIN, {"test": [{"id": "x", "text": "?", "label": "out_of_scope"}]})
    assert task.labels == ["billing", "shipping", "out_of_scope"]
    assert task.scored_labels == ["billing", "shipping"] == list(task.protocol().labels)
    assert "out_of_scope" not in task.user_content(
        {"text": "hi"}
    )  # the prompt lists what the model can answer
    assert task.describe()["unscored_labels"] == ["out_of_scope"]
    rows = task.apply_abstention([_row(0, "out_of_scope", "billing", 0.5), _row(1, "billing", "billing", 0.9)],
                                 task.choose_abstention(None, "config"))  # fmt: skip
    m = task.compute_metrics(rows)
    assert m["oos_recall"] == 1.0 and m["in_scope_accuracy"] == 1.0 and m["accuracy"] == 1.0


def test_untrained_out_of_scope_label_without_abstention_is_a_clear_error() -> None:
    task = ClassificationTask(out_of_scope_label="out_of_scope")
    with pytest.raises(
        TaskError,
        match=r"not one of the 2 training labels \(billing, shipping\).*task\.abstain\.enabled=true",
    ):
        task.setup(IN_SCOPE_TRAIN, {})


def test_answered_accuracy_rule_abstains_as_much_as_keeps_in_scope_accuracy() -> None:
    from slmforge.metrics.classification import choose_threshold

    conf = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    right = [1, 1, 1, 1, 1, 1, 1, 0, 1, 0]  # 8 of 10 right
    # answered-and-right share at threshold 0.6: 5/10; at 0.4: 7/10; at 0.2: 8/10
    chosen = choose_threshold(conf, right, 0.7, rule="answered_accuracy")
    assert (
        chosen["threshold"] == 0.4
        and chosen["met_target"]
        and chosen["answered_accuracy"] == pytest.approx(0.7)
    )
    assert chosen["coverage"] == pytest.approx(0.7) and chosen["accuracy"] == 1.0
    # the selective rule goes the other way: the lowest threshold whose answered rows are >= 70% right
    assert choose_threshold(conf, right, 0.7)["threshold"] == 0.1
    unreachable = choose_threshold(conf, right, 0.9, rule="answered_accuracy")
    assert unreachable["threshold"] == 0.1 and not unreachable["met_target"]  # answer everything
    with pytest.raises(TaskError, match=r"task\.abstain\.rule=coverage is not one of"):
        ClassificationTask(abstain={"enabled": True, "rule": "coverage"})
