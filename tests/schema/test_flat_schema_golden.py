"""Flat schemas must render exactly as before nested schemas existed: canonical targets, prompt text and the
JSON Schema are training targets and prompts of already fine-tuned models. The strings below were produced
by the flat-only implementation; the one intended change is the date pattern, now calendar-exact."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from slmforge.data.generators import invoices
from slmforge.schema import CALENDAR_DATE_PATTERN, Schema, canonical_json

RECEIPTS_YAML = Path(__file__).resolve().parents[2] / "conf" / "task" / "receipts.yaml"


@pytest.fixture
def invoice_schema() -> Schema:
    return Schema.from_config(invoices.SCHEMA)


@pytest.fixture
def receipt_schema() -> Schema:
    return Schema.from_config(yaml.safe_load(RECEIPTS_YAML.read_text())["schema"])


def test_invoices_golden_canonical_targets(invoice_schema: Schema) -> None:
    rows = invoices.generate(3, seed=7)
    assert [canonical_json(r["fields"], invoice_schema) for r in rows] == [
        '{"vendor":"Atelier Lumière SARL","date":"2024-03-19","invoice_number":"R190122","currency":"EUR",'
        '"total":110.56,"line_items":["Additional revision round"]}',
        '{"vendor":"Ashdown Print Works","date":"2025-04-08","invoice_number":"112163","currency":"GBP",'
        '"total":863.99,"line_items":["Business cards (500)","A2 poster print","Booklet binding",'
        '"Flyers A5 (1000)"]}',
        '{"vendor":"Van Dijk Logistiek B.V.","date":"2023-09-06","invoice_number":"#80817","currency":"EUR",'
        '"total":1387.91,"line_items":["Express courier delivery","Pallet freight"]}',
    ]


@pytest.mark.parametrize(
    ("total", "expected"),
    [(12.0, "12.0"), ("12.00", "12.0"), ("1.234,50", "1234.5"), (7, "7"), ("7", "7"), (1e20, "1e+20"),
     ("(5)", "-5")],
)  # fmt: skip
def test_invoices_golden_coercions(invoice_schema: Schema, total: object, expected: str) -> None:
    rec = {"vendor": " Acme ", "date": "03/04/2024", "invoice_number": 12, "currency": " gbp", "total": total,
           "line_items": ["a", "", None, 3]}  # fmt: skip
    assert canonical_json(rec, invoice_schema) == (
        '{"vendor":" Acme ","date":"2024-04-03","invoice_number":"12","currency":"GBP","total":'
        + expected
        + ',"line_items":["a","3"]}'
    )


def test_invoices_golden_lists_and_dates(invoice_schema: Schema) -> None:
    rec = {"vendor": " Acme ", "date": "03/04/2024", "invoice_number": 12, "currency": " gbp", "total": 12.0}
    head = '{"vendor":" Acme ","date":"2024-04-03","invoice_number":"12","currency":"GBP","total":12.0'
    assert (
        canonical_json({**rec, "line_items": "single"}, invoice_schema) == head + ',"line_items":["single"]}'
    )
    assert canonical_json({**rec, "line_items": []}, invoice_schema) == head + ',"line_items":[]}'
    assert canonical_json({**rec, "line_items": None}, invoice_schema) == head + "}"
    assert (
        canonical_json({**rec, "date": dt.date(2024, 1, 2)}, invoice_schema)
        == head.replace("2024-04-03", "2024-01-02") + "}"
    )
    assert (
        canonical_json(rec, invoice_schema, dayfirst=False) == head.replace("2024-04-03", "2024-03-04") + "}"
    )


def test_invoices_golden_describe_and_json_schema(invoice_schema: Schema) -> None:
    assert invoice_schema.describe() == (
        "- vendor (string, required)\n"
        "- date (date, YYYY-MM-DD, required)\n"
        "- invoice_number (string, required)\n"
        "- currency (one of: USD | EUR | GBP, required)\n"
        "- total (number, required)\n"
        "- line_items (list of strings, optional)"
    )
    old_date_pattern = json.dumps({"pattern": r"^\d{4}-\d{2}-\d{2}$"})[13:-1]
    golden = (
        '{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"vendor": '
        '{"type": "string"}, "date": {"type": "string", "pattern": '
        + old_date_pattern
        + '}, "invoice_number": '
        '{"type": "string"}, "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]}, "total": {"type": '
        '"number"}, "line_items": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}}, '
        '"required": ["vendor", "date", "invoice_number", "currency", "total"], "additionalProperties": false}'
    )
    # The one intended change: dates use the calendar-exact pattern.
    golden = golden.replace(old_date_pattern, json.dumps(CALENDAR_DATE_PATTERN))
    assert json.dumps(invoice_schema.to_json_schema()) == golden


def test_receipts_golden(receipt_schema: Schema) -> None:
    assert receipt_schema.describe() == (
        "- company (string, required)\n"
        "- date (string, required)\n"
        "- address (string, optional)\n"
        "- total (string, optional)"
    )
    assert json.dumps(receipt_schema.to_json_schema()) == (
        '{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"company": '
        '{"type": "string"}, "date": {"type": "string"}, "address": {"anyOf": [{"type": "string"}, {"type": '
        '"null"}]}, "total": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, "required": ["company", '
        '"date"], "additionalProperties": false}'
    )
    record = {
        "company": "BOOK TA .K (TAMAN DAYA) SDN BHD",
        "date": "25/12/2018",
        "address": "NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.",
        "total": "9.00",
    }
    assert canonical_json(record, receipt_schema) == (
        '{"company":"BOOK TA .K (TAMAN DAYA) SDN BHD","date":"25/12/2018","address":"NO.53 55,57 & 59, JALAN '
        'SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.","total":"9.00"}'
    )
    sparse = {"company": "Café X", "date": "2018-12-25", "total": None, "address": ""}
    assert canonical_json(sparse, receipt_schema) == '{"company":"Café X","date":"2018-12-25"}'
