"""Extraction metrics against hand-computed counts, including malformed outputs."""

from __future__ import annotations

import json
import math

import pytest

from slmforge.metrics.extraction import (
    FieldExtractionMetrics,
    JSONValidityRate,
    SchemaAdherenceRate,
    field_counts,
    score_example,
)
from slmforge.schema import FieldSpec, Normalization, Schema, parse_output

SCHEMA = Schema.from_config(
    {
        "vendor": {"type": "string"},
        "date": {"type": "date"},
        "total": {"type": "number"},
        "items": {"type": "list", "required": False},
    }
)

GOLD = [
    {"vendor": "Acme Corp", "date": "March 14, 2024", "total": "1,234.50", "items": ["bolt", "nut", "nut"]},
    {"vendor": "Globex", "date": "2024-01-02", "total": 99.0, "items": ["pen"]},
    {"vendor": "Initech", "date": "2024-05-06", "total": 10, "items": []},
    {"vendor": "Umbrella", "date": "06/07/2024", "total": 5, "items": ["a", "b"]},
]
RAW = [
    # 1. valid and correct after normalisation (case/whitespace, ISO date vs prose date, 1234.5 vs
    #    "1,234.50", list order): every field tp; items tp=3.
    '{"vendor": "ACME  corp", "date": "2024-03-14", "total": 1234.5, "items": ["nut", "bolt", "nut"]}',
    # 2. valid JSON, wrong total and an extra key (schema violation): vendor tp, date tp,
    #    total fp+fn, items tp=1 ("pen") fp=1 ("ink").
    '{"vendor": "Globex", "date": "2024-01-02", "total": 98.0, "items": ["pen", "ink"], "note": "x"}',
    # 3. truncated JSON: no predictions -> vendor/date/total fn; items gold empty -> nothing.
    '{"vendor": "Initech", "date": "2024-05-06", "tot',
    # 4. plain prose: vendor/date/total fn, items fn=2.
    "I could not find the invoice details.",
]

# Per-field totals over the 4 examples:
#   vendor: tp=2 fp=0 fn=2 -> P=1, R=2/4, F1=4/6;  exact: 1,2 -> 2/4
#   date:   tp=2 fp=0 fn=2 -> P=1, R=2/4, F1=4/6;  exact: 1,2 -> 2/4
#   total:  tp=1 fp=1 fn=3 -> P=1/2, R=1/4, F1=2/(2+1+3)=1/3;  exact: 1 -> 1/4
#   items:  tp=4 fp=1 fn=2 -> P=4/5, R=4/6, F1=8/(8+1+2)=8/11;  exact: 1 only (3 is invalid) -> 1/4
# Micro: tp=9 fp=2 fn=9 -> P=9/11, R=9/18, F1=18/29.
# Macro: P=(1+1+1/2+4/5)/4, R=(1/2+1/2+1/4+2/3)/4, F1=(2/3+2/3+1/3+8/11)/4.
# Record exact match: example 1 only -> 1/4. JSON validity: 1,2 -> 2/4. Schema adherence: 1 -> 1/4.
EXPECTED = {
    "n": 4,
    "json_validity": 0.5,
    "schema_adherence": 0.25,
    "field_micro_precision": 9 / 11,
    "field_micro_recall": 0.5,
    "field_micro_f1": 18 / 29,
    "field_macro_precision": (1 + 1 + 0.5 + 0.8) / 4,
    "field_macro_recall": (0.5 + 0.5 + 0.25 + 2 / 3) / 4,
    "field_macro_f1": (2 / 3 + 2 / 3 + 1 / 3 + 8 / 11) / 4,
    "record_exact_match": 0.25,
    "per_field": {
        "vendor": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "exact_match": 0.5},
        "date": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "exact_match": 0.5},
        "total": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "exact_match": 0.25},
        "items": {"precision": 0.8, "recall": 2 / 3, "f1": 8 / 11, "exact_match": 0.25},
    },
}


def assert_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for k, v in expected.items():
        if isinstance(v, dict):
            assert_close(actual[k], v)
        else:
            assert actual[k] == pytest.approx(v, abs=1e-12), k


def parsed_outputs() -> list:
    return [parse_output(r, SCHEMA) for r in RAW]


def test_hand_computed_fixture() -> None:
    m = FieldExtractionMetrics(SCHEMA, Normalization())
    m.update(parsed_outputs(), GOLD)
    assert_close(m.compute(), EXPECTED)


def test_accumulating_two_updates_equals_one() -> None:
    m = FieldExtractionMetrics(SCHEMA)
    p = parsed_outputs()
    m.update(p[:2], GOLD[:2])
    m.update(p[2:], GOLD[2:])
    assert_close(m.compute(), EXPECTED)
    m.reset()
    m.update(RAW, GOLD)  # raw strings are parsed with the metric's schema
    assert_close(m.compute(), EXPECTED)


def test_score_example_per_field() -> None:
    p = parsed_outputs()
    assert score_example(p[0], GOLD[0], SCHEMA) == dict.fromkeys(SCHEMA.names, True)
    assert score_example(p[1], GOLD[1], SCHEMA) == {
        "vendor": True,
        "date": True,
        "total": False,
        "items": False,
    }
    # An invalid output is wrong on every field, even where the gold is empty (items of example 3).
    assert score_example(RAW[2], GOLD[2], SCHEMA) == dict.fromkeys(SCHEMA.names, False)
    assert score_example(p[3], GOLD[3], SCHEMA) == dict.fromkeys(SCHEMA.names, False)


def test_rate_metrics() -> None:
    validity, adherence = JSONValidityRate(), SchemaAdherenceRate()
    p = parsed_outputs()
    for chunk in (p[:1], p[1:]):
        validity.update(chunk)
        adherence.update(chunk)
    assert validity.compute() == 0.5
    assert adherence.compute() == 0.25
    assert math.isnan(JSONValidityRate().compute())


def test_list_fields_compare_as_multisets() -> None:
    spec = FieldSpec("items", "list")
    gold = {"items": ["a", "a", "b"]}
    # pred {a, b, b, c} vs gold {a, a, b}: intersection {a, b} -> tp=2; extra {b, c} -> fp=2; missing {a} -> fn=1.
    pred = parse_output('{"items": ["A", "b", "b", "c"]}', Schema([spec]))
    assert field_counts(pred, gold, spec, Normalization()) == (2, 2, 1, False)
    same = parse_output('{"items": ["b", "a", "a"]}', Schema([spec]))
    assert field_counts(same, gold, spec, Normalization()) == (3, 0, 0, True)


def test_scalar_cases_and_strict_types() -> None:
    schema = Schema.from_config({"total": "number", "note": {"type": "string", "required": False}})
    norm = Normalization()
    total, note = schema.fields

    # A number written as a string breaks the schema: wrong under strict typing (fp + fn) ...
    p = parse_output('{"total": "1,234.50"}', schema)
    assert field_counts(p, {"total": 1234.5}, total, norm) == (0, 1, 1, False)
    # ... and right when only content is scored.
    assert field_counts(p, {"total": 1234.5}, total, norm, strict_types=False) == (1, 0, 0, True)

    # A predicted value where the gold is empty is a false positive.
    p = parse_output('{"total": 3, "note": "paid"}', schema)
    assert field_counts(p, {"total": 3, "note": None}, note, norm) == (0, 1, 0, False)
    # Optional field left out (or null) with an empty gold: correct, counts nothing.
    for raw in ('{"total": 3}', '{"total": 3, "note": null}'):
        assert field_counts(parse_output(raw, schema), {"total": 3}, note, norm) == (0, 0, 0, True)
    # A missing required field is wrong even when the gold is empty.
    assert field_counts(parse_output("{}", schema), {}, total, norm) == (0, 0, 0, False)


def test_field_with_nothing_to_extract_scores_one_and_empty_metric_is_nan() -> None:
    schema = Schema.from_config({"a": "string", "b": {"type": "string", "required": False}})
    m = FieldExtractionMetrics(schema)
    m.update([json.dumps({"a": "x"})], [{"a": "x"}])
    out = m.compute()
    assert out["per_field"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact_match": 1.0}
    assert out["record_exact_match"] == 1.0
    empty = FieldExtractionMetrics(schema).compute()
    assert empty["n"] == 0 and math.isnan(empty["field_micro_f1"])


def test_update_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="2 outputs but 1 gold"):
        FieldExtractionMetrics(SCHEMA).update(RAW[:2], GOLD[:1])
