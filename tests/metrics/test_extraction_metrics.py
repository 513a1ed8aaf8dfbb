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
    scored_fields,
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


def _object(fields: dict) -> dict:
    return {"type": "object", "fields": fields}


# --- nested schemas -------------------------------------------------------------------------------

METRIC_SCHEMA = Schema.from_config(
    {
        "vendor": "string",
        "buyer": _object({"name": "string", "vat_id": {"type": "string", "required": False}}),
        "line_items": {"type": "list", "items": _object({"description": "string", "quantity": "number"})},
    }
)
M_GOLD = [
    {"vendor": "Acme", "buyer": {"name": "Ann", "vat_id": "FR1"},
     "line_items": [{"description": "Nut", "quantity": 2}, {"description": "Bolt", "quantity": 1}]},
    {"vendor": "Globex", "buyer": {"name": "Bob"}, "line_items": [{"description": "Pen", "quantity": 3}]},
    {"vendor": "Initech", "buyer": {"name": "Cy"}, "line_items": [{"description": "Ink", "quantity": 1}]},
    {"vendor": "Umbrella", "buyer": {"name": "Dee"}, "line_items": [{"description": "Box", "quantity": 5}]},
]  # fmt: skip
M_RAW = [
    # 1. all right after normalisation (case, 1.0 == 1, item order): vendor, buyer.name, buyer.vat_id tp,
    #    line_items tp=2.
    '{"vendor":"ACME","buyer":{"name":"ann","vat_id":"FR1"},'
    '"line_items":[{"description":"bolt","quantity":1.0},{"description":"Nut","quantity":2}]}',
    # 2. an unknown key inside buyer breaks adherence but not the sub-field scores: buyer.name tp,
    #    buyer.vat_id fp (gold empty); line_items {Pen 4, Cap 1} vs {Pen 3}: items are compared whole,
    #    so tp=0 fp=2 fn=1.
    '{"vendor":"Globex","buyer":{"name":"Bob","vat_id":"X9","junk":1},'
    '"line_items":[{"description":"Pen","quantity":4},{"description":"Cap","quantity":1}]}',
    # 3. a quantity written as a string breaks the list: wrong whole (fp=1, fn=1); vat_id empty on both sides.
    '{"vendor":"Initech","buyer":{"name":"Cy"},"line_items":[{"description":"Ink","quantity":"1"}]}',
    # 4. buyer is not an object: buyer.name fn and wrong, buyer.vat_id wrong (its object is broken) with
    #    nothing to count; line_items [] is valid but misses the gold item (fn=1).
    '{"vendor":"Umbrella","buyer":"Dee","line_items":[]}',
]
# vendor tp=4 -> 1/1/1, exact 4/4; buyer.name tp=3 fn=1 -> P=1 R=3/4 F1=6/7, exact 3/4;
# buyer.vat_id tp=1 fp=1 -> P=1/2 R=1 F1=2/3, exact 2/4 (1, 3); line_items tp=2 fp=3 fn=3 -> 2/5 each, exact 1/4.
# Micro: tp=10 fp=4 fn=4 -> 10/14 each. Record exact 1/4, validity 4/4, adherence 1/4 (only 1 is valid).


def test_metrics_score_sub_fields_and_whole_items() -> None:
    assert [f.name for f in scored_fields(METRIC_SCHEMA)] == [
        "vendor",
        "buyer.name",
        "buyer.vat_id",
        "line_items",
    ]
    m = FieldExtractionMetrics(METRIC_SCHEMA)
    m.update(M_RAW, M_GOLD)
    out = m.compute()
    expected_fields = {
        "vendor": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact_match": 1.0},
        "buyer.name": {"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "exact_match": 0.75},
        "buyer.vat_id": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "exact_match": 0.5},
        "line_items": {"precision": 0.4, "recall": 0.4, "f1": 0.4, "exact_match": 0.25},
    }
    assert out["per_field"].keys() == expected_fields.keys()
    for name, values in expected_fields.items():
        assert out["per_field"][name] == pytest.approx(values), name
    assert out["field_micro_precision"] == pytest.approx(10 / 14)
    assert out["field_micro_recall"] == pytest.approx(10 / 14)
    assert out["field_micro_f1"] == pytest.approx(10 / 14)
    assert out["field_macro_f1"] == pytest.approx((1 + 6 / 7 + 2 / 3 + 0.4) / 4)
    assert (out["json_validity"], out["schema_adherence"], out["record_exact_match"]) == (1.0, 0.25, 0.25)


def test_field_counts_on_objects_and_lenient_types() -> None:
    norm = Normalization()
    buyer, items = METRIC_SCHEMA.field("buyer"), METRIC_SCHEMA.field("line_items")
    p = [parse_output(r, METRIC_SCHEMA) for r in M_RAW]
    # An object field given whole sums its sub-fields.
    assert field_counts(p[1], M_GOLD[1], buyer, norm) == (1, 1, 0, False)
    assert field_counts(p[0], M_GOLD[0], buyer, norm) == (2, 0, 0, True)
    assert field_counts(p[1], M_GOLD[1], buyer.fields[0], norm, path=("buyer", "name")) == (1, 0, 0, True)
    # Without strict types the quantity "1" reads as 1 and the item matches.
    assert field_counts(p[2], M_GOLD[2], items, norm) == (0, 1, 1, False)
    assert field_counts(p[2], M_GOLD[2], items, norm, strict_types=False) == (1, 0, 0, True)
    assert score_example(p[3], M_GOLD[3], METRIC_SCHEMA) == {
        "vendor": True,
        "buyer.name": False,
        "buyer.vat_id": False,
        "line_items": False,
    }
