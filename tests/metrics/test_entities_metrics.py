"""Entity span metrics: span P/R/F1 per type, micro and macro, and groundedness, with hand-computed values."""

from __future__ import annotations

import math

import pytest

from slmforge.metrics.entities import EntitySpanMetrics, span_groundedness
from slmforge.records import PredictionRow
from slmforge.schema import Normalization, Schema, parse_output
from slmforge.tasks.entities import EntityExtractionTask

SCHEMA = Schema.from_config(
    {"person": {"type": "list"}, "location": {"type": "list"}, "product": {"type": "list"}}
)
NORM = Normalization(case=False, whitespace=True, numbers=False, dates=False)

TEXTS = [
    "Ann Lee flew from Rome to Oslo",
    "my Zephyra Pulse X2 broke",
    "nothing to see here",
]
GOLD = [
    {"person": ["Ann Lee"], "location": ["Rome", "Oslo"], "product": []},
    {"person": [], "location": [], "product": ["Zephyra Pulse X2"]},
    {"person": [], "location": [], "product": []},
]
OUTPUTS = [
    # person: tp 1; location: tp 1 (Rome), fp 1 (Paris, invented), fn 1 (Oslo)
    '{"person":["Ann Lee"],"location":["Rome","Paris"],"product":[]}',
    # product: fp 1 ("Zephyra Pulse", grounded but not the gold span), fn 1; person: fp 1 ("ann lee", not in
    # this text as written: ungrounded)
    '{"person":["ann lee"],"location":[],"product":["Zephyra Pulse"]}',
    # not JSON: every gold span missed (none here), no predicted span
    "sorry, I cannot help",
]


def _metrics() -> dict:
    m = EntitySpanMetrics(SCHEMA, NORM)
    m.update([parse_output(o, SCHEMA) for o in OUTPUTS], GOLD, TEXTS)
    return m.compute()


def test_span_scores_per_type_micro_and_macro() -> None:
    out = _metrics()
    # Pooled: tp = 2, fp = 3 (Paris, ann lee, Zephyra Pulse), fn = 2 (Oslo, Zephyra Pulse X2).
    assert out["span_micro_precision"] == pytest.approx(2 / 5)
    assert out["span_micro_recall"] == pytest.approx(2 / 4)
    assert out["span_micro_f1"] == pytest.approx(4 / 9)
    per = out["per_type"]
    assert per["person"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "gold": 1, "predicted": 2}
    )
    assert per["location"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "gold": 2, "predicted": 2}
    )
    assert per["product"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 1, "predicted": 1}
    )
    assert out["span_macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert out["span_macro_precision"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert out["span_macro_recall"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    # The span names are the extraction metrics' list scoring, kept alongside under their own names.
    assert out["span_micro_f1"] == out["field_micro_f1"] and out["span_macro_f1"] == out["field_macro_f1"]
    assert out["gold_spans"] == 4 and out["json_validity"] == pytest.approx(2 / 3)


def test_groundedness_counts_spans_not_in_the_input() -> None:
    out = _metrics()
    # 5 predicted spans; "Paris" and "ann lee" do not occur verbatim in their own input.
    assert out["predicted_spans"] == 5 and out["ungrounded_spans"] == 2
    assert out["groundedness"] == pytest.approx(3 / 5)


def test_groundedness_of_one_output() -> None:
    text = 'He said "hi" at Café Nord'
    parsed = parse_output(
        '{"person":["He","",null],"location":["Café Nord","Cafe Nord",3],"product":["\\"hi\\""]}', SCHEMA
    )
    # blank and null items are not spans; 3 is not a copied string; "Cafe Nord" is not as written.
    assert span_groundedness(parsed, text, SCHEMA) == (5, 3)
    assert span_groundedness(parse_output("not json", SCHEMA), text, SCHEMA) == (0, 0)


def test_no_predictions_is_fully_grounded_and_empty_input_is_nan() -> None:
    m = EntitySpanMetrics(SCHEMA, NORM)
    m.update(['{"person":[],"location":[],"product":[]}'], [GOLD[0]], [TEXTS[0]])
    out = m.compute()
    assert out["groundedness"] == 1.0 and out["predicted_spans"] == 0
    assert out["span_micro_recall"] == 0.0 and out["span_micro_precision"] == 0.0
    empty = EntitySpanMetrics(SCHEMA, NORM).compute()
    assert math.isnan(empty["span_micro_f1"]) and empty["groundedness"] == 1.0 and empty["n"] == 0
    with pytest.raises(ValueError, match="input texts"):
        EntitySpanMetrics(SCHEMA, NORM).update(OUTPUTS, GOLD, TEXTS[:2])


def test_metrics_accumulate_across_batches() -> None:
    m = EntitySpanMetrics(SCHEMA, NORM)
    for o, g, t in zip(OUTPUTS, GOLD, TEXTS, strict=True):
        m.update([o], [g], [t])
    assert m.compute() == _metrics()


def test_task_compute_metrics_reads_each_rows_input_text() -> None:
    task = EntityExtractionTask(schema=SCHEMA, normalization=NORM)
    rows = [
        PredictionRow(
            id=str(i), text=t, gold=g, pred=None, confidence=None, correct=0.0, latency_ms=1.0, raw_output=o
        )
        for i, (o, g, t) in enumerate(zip(OUTPUTS, GOLD, TEXTS, strict=True))
    ]
    out = task.compute_metrics(rows)
    assert out == _metrics()
    assert out["span_micro_f1"] == pytest.approx(4 / 9) and out["groundedness"] == pytest.approx(3 / 5)
    assert task.groundedness(OUTPUTS[1], TEXTS[1]) == (2, 1)
