"""Extraction schema: config parsing, JSON Schema export, canonical targets, output parsing, normalisation."""

from __future__ import annotations

import json

import jsonschema
import pytest

from slmforge.schema import (
    CALENDAR_DATE_PATTERN,
    FieldSpec,
    Normalization,
    ParsedOutput,
    Schema,
    canonical_json,
    normalize_value,
    parse_date,
    parse_number,
    parse_output,
)

CONFIG = {
    "vendor": {"type": "string", "required": True},
    "date": {"type": "date"},
    "total": {"type": "number"},
    "currency": {"type": "enum", "values": ["USD", "EUR", "GBP"]},
    "items": {"type": "list", "required": False},
}


@pytest.fixture
def schema() -> Schema:
    return Schema.from_config(CONFIG)


def good_record() -> dict:
    return {"vendor": "Acme", "date": "2024-03-14", "total": 12.5, "currency": "USD", "items": ["a", "b"]}


# --- config ------------------------------------------------------------------------------------


def test_from_config_builds_ordered_fields(schema: Schema) -> None:
    assert schema.names == ["vendor", "date", "total", "currency", "items"]
    assert schema.field("currency").values == ["USD", "EUR", "GBP"]
    assert schema.field("items").required is False
    assert schema.field("date").required is True  # required defaults to True
    # A bare type string is shorthand for a required field of that type.
    assert Schema.from_config({"x": "number"}).fields == [FieldSpec("x", "number")]


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"amount": {"type": "float"}}, ["'amount'", "float", "string, number, date, enum, list"]),
        ({"amount": {"required": True}}, ["'amount'", "missing 'type'", "string, number"]),
        ({"cur": {"type": "enum"}}, ["'cur'", "values"]),
        ({"cur": {"type": "enum", "values": []}}, ["'cur'", "values"]),
        ({"name": {"type": "string", "values": ["a"]}}, ["'name'", "only allowed for type 'enum'"]),
        ({"name": {"type": "string", "reqired": True}}, ["'name'", "reqired"]),
        ({"name": 3}, ["'name'", "mapping"]),
        ({"name": {"type": "string", "required": "yes"}}, ["'name'", "required"]),
        ({}, ["non-empty"]),
    ],
)
def test_from_config_errors_name_the_field(config: dict, needles: list[str]) -> None:
    with pytest.raises(ValueError) as exc:
        Schema.from_config(config)
    for needle in needles:
        assert needle in str(exc.value)


def test_duplicate_field_names_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Schema([FieldSpec("a", "string"), FieldSpec("a", "number")])


# --- JSON Schema / describe ----------------------------------------------------------------------


def test_to_json_schema_shape(schema: Schema) -> None:
    js = schema.to_json_schema()
    assert js["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert js["type"] == "object"
    assert js["additionalProperties"] is False
    assert js["required"] == ["vendor", "date", "total", "currency"]
    props = js["properties"]
    assert list(props) == schema.names
    assert props["vendor"] == {"type": "string"}
    assert props["total"] == {"type": "number"}
    # Calendar-exact, so a JSON Schema validator (and constrained decoding) rejects 2024-02-30 too.
    assert props["date"] == {"type": "string", "pattern": CALENDAR_DATE_PATTERN}
    assert props["currency"] == {"type": "string", "enum": ["USD", "EUR", "GBP"]}
    # Optional fields may also be null.
    assert props["items"] == {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
    jsonschema.Draft7Validator.check_schema(js)


@pytest.mark.parametrize(
    "obj",
    [
        good_record(),
        {k: v for k, v in good_record().items() if k != "items"},
        {**good_record(), "items": None},
        {**good_record(), "extra": 1},
        {**good_record(), "total": "12.5"},
        {**good_record(), "total": True},
        {**good_record(), "date": "14/03/2024"},
        {**good_record(), "currency": "usd"},
        {**good_record(), "items": [1]},
        {**good_record(), "items": "a"},
        {**good_record(), "vendor": None},
        {k: v for k, v in good_record().items() if k != "vendor"},
    ],
)
def test_parse_output_agrees_with_jsonschema(schema: Schema, obj: dict) -> None:
    valid = jsonschema.Draft7Validator(schema.to_json_schema()).is_valid(obj)
    assert parse_output(json.dumps(obj), schema).schema_ok == valid


def test_describe_one_line_per_field(schema: Schema) -> None:
    assert schema.describe().splitlines() == [
        "- vendor (string, required)",
        "- date (date, YYYY-MM-DD, required)",
        "- total (number, required)",
        "- currency (one of: USD | EUR | GBP, required)",
        "- items (list of strings, optional)",
    ]
    described = Schema.from_config({"t": {"type": "number", "description": "grand total"}}).describe()
    assert described == "- t (number, required): grand total"


# --- canonical_json ------------------------------------------------------------------------------


def test_canonical_json_order_compact_and_coerced(schema: Schema) -> None:
    record = {
        "items": ["x"],
        "extra": "dropped",
        "currency": "eur",
        "total": "1,234.50",
        "date": "March 14, 2024",
        "vendor": "Café Ünïcode",
    }
    out = canonical_json(record, schema)
    assert out == (
        '{"vendor":"Café Ünïcode","date":"2024-03-14","total":1234.5,"currency":"EUR","items":["x"]}'
    )
    assert parse_output(out, schema).schema_ok


def test_canonical_json_numbers_and_optional(schema: Schema) -> None:
    base = {"vendor": "A", "date": "2024-01-02", "currency": "USD"}
    assert '"total":12,' in canonical_json({**base, "total": 12}, schema)
    assert '"total":12,' in canonical_json({**base, "total": "12"}, schema)
    assert '"total":12.5,' in canonical_json({**base, "total": 12.5}, schema)
    # Absent optional field: omitted.
    assert canonical_json({**base, "total": 1}, schema).endswith('"currency":"USD"}')
    assert canonical_json({**base, "total": 1, "items": None}, schema).endswith('"currency":"USD"}')
    # An explicit empty list is an answer ("no items") and is kept; a required list defaults to [].
    assert canonical_json({**base, "total": 1, "items": []}, schema).endswith('"items":[]}')
    assert canonical_json({}, Schema.from_config({"tags": "list"})) == '{"tags":[]}'
    with pytest.raises(ValueError, match="'total'"):
        canonical_json(base, schema)  # required field missing
    with pytest.raises(ValueError, match="'total'"):
        canonical_json({**base, "total": "lots"}, schema)
    with pytest.raises(ValueError, match="'currency'"):
        canonical_json({**base, "total": 1, "currency": "JPY"}, schema)


# --- parse_output --------------------------------------------------------------------------------


def test_parse_output_valid(schema: Schema) -> None:
    p = parse_output(json.dumps(good_record()), schema)
    assert (p.valid_json, p.is_object, p.schema_ok, p.errors) == (True, True, True, [])
    assert p.parsed == good_record()
    assert all(p.field_ok.values())


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(good_record()) + " and then the model kept talking } {",
        json.dumps(good_record()) + "\n\nNote: the total includes tax.",
        "Here is the JSON:\n```json\n" + json.dumps(good_record(), indent=2) + "\n```",
        "Output format {field: value}. " + json.dumps(good_record()),  # a balanced non-JSON candidate first
    ],
)
def test_parse_output_extracts_first_object_from_junk(schema: Schema, raw: str) -> None:
    p = parse_output(raw, schema)
    assert p.valid_json and p.is_object and p.schema_ok
    assert p.parsed == good_record()
    assert p.raw == raw


def test_parse_output_braces_inside_strings(schema: Schema) -> None:
    rec = {**good_record(), "vendor": 'A {weird} "quoted} name'}
    p = parse_output("prefix " + json.dumps(rec) + " suffix", schema)
    assert p.schema_ok and p.parsed == rec


@pytest.mark.parametrize(
    ("raw", "valid_json", "is_object", "needle"),
    [
        ('{"vendor": "Acme", "date": "2024-03-14", "tot', False, False, "truncated"),
        ("The invoice is from Acme.", False, False, "no JSON object"),
        ("", False, False, "no JSON object"),
        ("[1, 2]", True, False, "expected a JSON object, got array"),
        ('"just a string"', True, False, "got string"),
        ('{"vendor": NaN}', False, False, "not valid JSON"),
        ("{'vendor': 'single quotes'}", False, False, "not valid JSON"),
    ],
)
def test_parse_output_malformed(
    schema: Schema, raw: str, valid_json: bool, is_object: bool, needle: str
) -> None:
    p = parse_output(raw, schema)
    assert (p.valid_json, p.is_object, p.schema_ok) == (valid_json, is_object, False)
    assert p.parsed is None
    assert p.field_ok == dict.fromkeys(schema.names, False)
    assert any(needle in e for e in p.errors), p.errors


def test_parse_output_reports_each_problem(schema: Schema) -> None:
    obj = {"vendor": 1, "date": "2024-02-30", "total": "12", "currency": "usd", "items": [1], "zz": 0}
    p = parse_output(json.dumps(obj), schema)
    assert p.valid_json and p.is_object and not p.schema_ok
    assert p.parsed == obj
    assert p.field_ok == dict.fromkeys(schema.names, False)
    text = "\n".join(p.errors)
    for needle in [
        "'zz'",
        "'vendor': expected a string",
        "not a calendar date",
        "'total': expected a number",
    ]:
        assert needle in text
    assert "not one of" in text and "list items must be strings" in text


def test_parse_output_missing_and_null(schema: Schema) -> None:
    rec = good_record()
    del rec["total"]
    rec["items"] = None  # optional: null is fine
    p = parse_output(json.dumps(rec), schema)
    assert not p.schema_ok
    assert p.errors == ["required field 'total' is missing"]
    assert p.field_ok["total"] is False and p.field_ok["items"] is True
    p = parse_output(json.dumps({**good_record(), "vendor": None}), schema)
    assert p.errors == ["required field 'vendor' is null"]
    # An optional field may be left out entirely.
    p = parse_output(json.dumps({k: v for k, v in good_record().items() if k != "items"}), schema)
    assert p.schema_ok and p.field_ok["items"] is True


def test_parse_output_never_raises(schema: Schema) -> None:
    for raw in [None, 42, b"{}", "{" * 5000, "}" * 10, '{"a": "\\', "{}"]:
        p = parse_output(raw, schema)  # type: ignore[arg-type]
        assert isinstance(p, ParsedOutput)
        assert not p.schema_ok


# --- normalisation -------------------------------------------------------------------------------

NUM = FieldSpec("total", "number")
DATE = FieldSpec("date", "date")
TEXT = FieldSpec("vendor", "string")
LIST = FieldSpec("items", "list")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,234.50", 1234.5),
        (1234.5, 1234.5),
        ("$12.0", 12.0),
        ("12", 12.0),
        (12, 12.0),
        ("USD 1 234,50", 1234.5),
        ("€1.234,50", 1234.5),
        ("12,5", 12.5),
        ("(5.00)", -5.0),
        ("-$3", -3.0),
        (3.14159, 3.14),
    ],
)
def test_normalize_numbers(value: object, expected: float) -> None:
    assert normalize_value(value, NUM, Normalization()) == expected


def test_normalize_numbers_unreadable_or_off() -> None:
    assert normalize_value("about twelve", NUM, Normalization()) == "about twelve"
    assert normalize_value(True, NUM, Normalization()) == "true"  # booleans are not numbers
    off = Normalization(numbers=False)
    assert normalize_value("1,234.50", NUM, off) == "1,234.50"
    assert normalize_value(12, NUM, off) == 12.0  # plain JSON numbers still compare by value
    assert parse_number("abc") is None and parse_number("") is None and parse_number(None) is None


@pytest.mark.parametrize(
    "value",
    ["March 14, 2024", "2024-03-14", "14 Mar 2024", "14.03.2024", "03/14/2024", "Thu, 14th of March 2024",
     "mar. 14 2024", "2024/3/14", "20240314", "2024-03-14T09:30:00Z"],
)  # fmt: skip
def test_normalize_dates_to_iso(value: str) -> None:
    assert normalize_value(value, DATE, Normalization()) == "2024-03-14"


def test_dates_dayfirst() -> None:
    assert parse_date("25/12/2018").isoformat() == "2018-12-25"  # only one order is a real date
    assert parse_date("03/04/2024", dayfirst=True).isoformat() == "2024-04-03"
    assert parse_date("03/04/2024", dayfirst=False).isoformat() == "2024-03-04"
    assert parse_date("03/04/24").isoformat() == "2024-04-03"
    assert normalize_value("03/04/2024", DATE, Normalization(dayfirst=False)) == "2024-03-04"
    # Partial or impossible dates are not guessed: they stay (normalised) strings.
    assert parse_date("March 2024") is None
    assert parse_date("31/02/2024") is None
    assert normalize_value("March 2024", DATE, Normalization()) == "march 2024"
    assert normalize_value("March 14, 2024", DATE, Normalization(dates=False)) == "march 14, 2024"


def test_normalize_case_whitespace_and_empty() -> None:
    assert normalize_value("  ACME \n Corp\t", TEXT, Normalization()) == "acme corp"
    assert normalize_value("  ACME  Corp ", TEXT, Normalization(case=False)) == "ACME Corp"
    assert normalize_value("  ACME  Corp ", TEXT, Normalization(whitespace=False)) == "  acme  corp "
    assert normalize_value("Straße", TEXT, Normalization()) == normalize_value(
        "STRASSE", TEXT, Normalization()
    )
    assert normalize_value("   ", TEXT, Normalization()) is None
    assert normalize_value(None, NUM, Normalization()) is None


def test_normalize_lists_sorted_multiset() -> None:
    norm = Normalization()
    assert normalize_value(["Nut", " bolt", "nut", "", None], LIST, norm) == ["bolt", "nut", "nut"]
    assert normalize_value("single", LIST, norm) == ["single"]
    assert normalize_value(None, LIST, norm) == []
