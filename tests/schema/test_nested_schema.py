"""Nested extraction schemas: the DSL, the generated pydantic model, its JSON Schema, canonical targets,
parsing and normalisation, all with values (metrics: tests/metrics/test_extraction_metrics.py; the task and
the built-in invoice_items config: tests/tasks/test_extraction_task.py)."""

from __future__ import annotations

import copy
import json
import pickle

import jsonschema
import pytest
from pydantic import ValidationError

from slmforge.schema import (
    CALENDAR_DATE_PATTERN,
    FieldSpec,
    Normalization,
    Schema,
    canonical_json,
    normalize_value,
    parse_output,
)

NESTED = {
    "vendor": {"type": "string"},
    "buyer": {
        "type": "object",
        "description": "who pays",
        "fields": {"name": {"type": "string"}, "vat_id": {"type": "string", "required": False}},
    },
    "line_items": {
        "type": "list",
        "items": {
            "type": "object",
            "fields": {
                "description": {"type": "string"},
                "quantity": {"type": "number", "minimum": 0},
                "unit_price": {"type": "number", "minimum": 0, "required": False},
            },
        },
    },
    "tags": {"type": "list", "items": "enum", "values": ["paid", "overdue"], "required": False},
    "scores": {"type": "list", "items": {"type": "number", "minimum": 0, "maximum": 10}, "required": False},
    "shipping": {
        "type": "object",
        "required": False,
        "fields": {"city": {"type": "string"}, "date": {"type": "date"}},
    },
}


@pytest.fixture
def schema() -> Schema:
    return Schema.from_config(NESTED)


def good_record() -> dict:
    return {
        "vendor": "Acme",
        "buyer": {"name": "Ann", "vat_id": "FR1"},
        "line_items": [
            {"description": "Nut", "quantity": 2, "unit_price": 0.5},
            {"description": "Bolt", "quantity": 1},
        ],
        "tags": ["paid"],
        "scores": [0, 9.5],
        "shipping": {"city": "Lyon", "date": "2024-02-29"},
    }


# --- DSL ------------------------------------------------------------------------------------------


def test_from_config_builds_nested_specs(schema: Schema) -> None:
    assert schema.field("buyer") == FieldSpec(
        "buyer",
        "object",
        description="who pays",
        fields=[FieldSpec("name", "string"), FieldSpec("vat_id", "string", required=False)],
    )
    line_items = schema.field("line_items")
    assert line_items.type == "list" and line_items.item_spec.type == "object"
    assert [(f.name, f.type, f.required, f.minimum) for f in line_items.item_spec.fields] == [
        ("description", "string", True, None),
        ("quantity", "number", True, 0),
        ("unit_price", "number", False, 0),
    ]
    # A type name as `items` takes the list's values/bounds; a plain list stays a list of strings.
    assert schema.field("tags").items == FieldSpec("tags", "enum", values=["paid", "overdue"])
    assert schema.field("tags").values is None
    assert schema.field("scores").items == FieldSpec("scores", "number", minimum=0, maximum=10)
    assert Schema.from_config({"x": {"type": "list", "items": "number", "minimum": 1}}).fields[0].items == (
        FieldSpec("x", "number", minimum=1)
    )
    plain = Schema.from_config({"x": "list"}).fields[0]
    assert plain.items is None and plain.item_spec == FieldSpec("x", "string")


def _object(fields: dict) -> dict:
    return {"type": "object", "fields": fields}


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        # a bad type deep down names the whole path (and sub-fields of list items go through the list)
        ({"buyer": _object({"name": {"type": "text"}})}, ["schema field 'buyer.name'", "unknown type 'text'"]),
        (
            {"line_items": {"type": "list", "items": _object({"quantity": {"type": "float"}})}},
            ["schema field 'line_items.quantity'", "unknown type 'float'", "object"],
        ),
        (
            {"a": _object({"b": _object({"c": {"type": "number", "minimum": "0"}})})},
            ["schema field 'a.b.c'", "'minimum' must be a finite number"],
        ),
        ({"name": {"type": "string", "minimum": 0}}, ["'name'", "'minimum' is only allowed for type 'number'"]),
        ({"d": {"type": "date", "maximum": 1}}, ["'d'", "'maximum' is only allowed for type 'number'", "'date'"]),
        ({"n": {"type": "number", "minimum": 5, "maximum": 1}}, ["'n'", "minimum 5 is greater than maximum 1"]),
        ({"n": {"type": "number", "minimum": True}}, ["'n'", "finite number"]),
        ({"name": {"type": "string", "items": "number"}}, ["'name'", "'items' is only allowed for type 'list'"]),
        ({"buyer": {"type": "string", "fields": {"a": "string"}}}, ["'buyer'", "'fields' is only allowed for type 'object'"]),
        ({"buyer": {"type": "object"}}, ["'buyer'", "needs a non-empty mapping 'fields'"]),
        ({"buyer": {"type": "object", "fields": {}}}, ["'buyer'", "non-empty mapping 'fields'"]),
        ({"xs": {"type": "list", "items": "list"}}, ["'xs'", "list items cannot be of type 'list'"]),
        ({"xs": {"type": "list", "items": "enum"}}, ["'xs[]'", "type 'enum' needs a non-empty list 'values'"]),
        ({"xs": {"type": "list", "items": {"type": "string", "required": False}}}, ["'xs[]'", "never optional"]),
        ({"xs": {"type": "list", "items": "string", "minimum": 0}}, ["'xs[]'", "'minimum' is only allowed"]),
        ({"b": _object({"c": {"type": "string", "colour": 1}})}, ["'b.c'", "unknown key(s) ['colour']"]),
        ({"b": _object({"c": {"required": False}})}, ["'b.c'", "missing 'type'"]),
    ],
)  # fmt: skip
def test_dsl_errors_name_the_field_path(config: dict, needles: list[str]) -> None:
    with pytest.raises(ValueError) as exc:
        Schema.from_config(config)
    for needle in needles:
        assert needle in str(exc.value), str(exc.value)


def test_programmatic_specs_are_checked_too() -> None:
    with pytest.raises(ValueError, match="'items' is only allowed for type 'list'"):
        FieldSpec("x", "string", items=FieldSpec("x", "string"))
    with pytest.raises(ValueError, match="duplicate sub-field"):
        FieldSpec("o", "object", fields=[FieldSpec("a", "string"), FieldSpec("a", "number")])


# --- describe -------------------------------------------------------------------------------------


def test_describe_indents_sub_fields(schema: Schema) -> None:
    assert schema.describe() == (
        "- vendor (string, required)\n"
        "- buyer (object with these fields, required): who pays\n"
        "  - name (string, required)\n"
        "  - vat_id (string, optional)\n"
        "- line_items (list of objects with these fields, required)\n"
        "  - description (string, required)\n"
        "  - quantity (number, >= 0, required)\n"
        "  - unit_price (number, >= 0, optional)\n"
        "- tags (list, each one of: paid | overdue, optional)\n"
        "- scores (list of numbers, each 0 to 10, optional)\n"
        "- shipping (object with these fields, optional)\n"
        "  - city (string, required)\n"
        "  - date (date, YYYY-MM-DD, required)"
    )


# --- pydantic model -------------------------------------------------------------------------------


def test_pydantic_model_round_trip_and_cache(schema: Schema) -> None:
    model = schema.pydantic_model()
    assert schema.pydantic_model() is model  # cached
    rec = good_record()
    obj = model.model_validate(rec)
    dumped = obj.model_dump(by_alias=True, exclude_none=True)
    assert dumped == {**rec, "line_items": [{"description": "Nut", "quantity": 2, "unit_price": 0.5},
                                            {"description": "Bolt", "quantity": 1}]}  # fmt: skip
    assert model.model_validate_json(json.dumps(rec)).model_dump(by_alias=True, exclude_none=True) == dumped
    # Optional fields may be null or absent; the model fills them with None.
    minimal = {"vendor": "A", "buyer": {"name": "B"}, "line_items": [], "shipping": None}
    assert model.model_validate(minimal).model_dump(by_alias=True) == {
        "vendor": "A",
        "buyer": {"name": "B", "vat_id": None},
        "line_items": [],
        "tags": None,
        "scores": None,
        "shipping": None,
    }
    # A schema with a cached model still pickles and copies (the model is rebuilt on demand).
    for clone in (pickle.loads(pickle.dumps(schema)), copy.deepcopy(schema)):
        assert clone == schema
        assert clone.pydantic_model().model_validate(rec)


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        (lambda r: r["line_items"][0].update(quantity="2"), "float_type"),  # strict: no coercion
        (lambda r: r["line_items"][0].update(quantity=True), "float_type"),  # true is not a number
        (lambda r: r["line_items"][0].update(quantity=-1), "greater_than_equal"),
        (lambda r: r["scores"].append(10.5), "less_than_equal"),
        (lambda r: r["buyer"].update(extra=1), "extra_forbidden"),
        (lambda r: r["buyer"].update(name=None), "string_type"),  # required means non-null
        (lambda r: r["shipping"].update(date="2023-02-29"), "string_pattern_mismatch"),
        (lambda r: r["tags"].append("PAID"), "literal_error"),
        (lambda r: r.update(buyer={"vat_id": "x"}), "missing"),
    ],
)
def test_pydantic_model_is_strict(schema: Schema, change, error_type: str) -> None:
    rec = good_record()
    change(rec)
    with pytest.raises(ValidationError) as exc:
        schema.pydantic_model().model_validate(rec)
    assert [e["type"] for e in exc.value.errors()] == [error_type]


def test_field_names_that_clash_with_pydantic_work() -> None:
    s = Schema.from_config({"model_config": "string", "total amount": "number", "_id": {"type": "string"}})
    assert s.pydantic_model().model_validate({"model_config": "a", "total amount": 1, "_id": "x"})
    assert list(s.to_json_schema()["properties"]) == ["model_config", "total amount", "_id"]


# --- JSON Schema ----------------------------------------------------------------------------------


def test_json_schema_of_a_nested_schema(schema: Schema) -> None:
    date = {"type": "string", "pattern": CALENDAR_DATE_PATTERN}
    assert schema.to_json_schema() == {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "vendor": {"type": "string"},
            "buyer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "vat_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["name"],
                "additionalProperties": False,
                "description": "who pays",
            },
            "line_items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "description": {"type": "string"},
                        "quantity": {"type": "number", "minimum": 0},
                        "unit_price": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
                    },
                    "required": ["description", "quantity"],
                    "additionalProperties": False,
                },
            },
            "tags": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string", "enum": ["paid", "overdue"]}},
                    {"type": "null"},
                ]
            },
            "scores": {
                "anyOf": [
                    {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 10}},
                    {"type": "null"},
                ]
            },
            "shipping": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "date": date},
                        "required": ["city", "date"],
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ]
            },
        },
        "required": ["vendor", "buyer", "line_items"],
        "additionalProperties": False,
    }
    # Key order too: properties in schema order, type first (engines and prompts see this serialisation).
    js = schema.to_json_schema()
    assert list(js) == ["$schema", "type", "properties", "required", "additionalProperties"]
    assert list(js["properties"]["line_items"]["items"]["properties"]) == [
        "description",
        "quantity",
        "unit_price",
    ]
    js["properties"].clear()  # a fresh copy every call
    assert schema.to_json_schema()["properties"]


def test_json_schema_has_no_refs_titles_or_defaults(schema: Schema) -> None:
    text = json.dumps(schema.to_json_schema())
    for noise in ('"$ref"', '"$defs"', '"title"', '"default"', '"const"'):
        assert noise not in text
    jsonschema.Draft7Validator.check_schema(schema.to_json_schema())
    # A one-value enum stays an enum (pydantic would write const).
    one = Schema.from_config({"c": {"type": "enum", "values": ["EUR"]}}).to_json_schema()
    assert one["properties"]["c"] == {"type": "string", "enum": ["EUR"]}


def _with(change) -> dict:
    rec = good_record()
    change(rec)
    return rec


AGREEMENT_TABLE = [
    good_record(),
    {"vendor": "A", "buyer": {"name": "B"}, "line_items": []},
    {"vendor": "A", "buyer": {"name": "B", "vat_id": None}, "line_items": [], "tags": None, "shipping": None},
    _with(lambda r: r.update(zz=1)),
    _with(lambda r: r["buyer"].update(zz=1)),
    _with(lambda r: r["line_items"][1].update(zz=1)),
    _with(lambda r: r["buyer"].pop("name")),
    _with(lambda r: r["buyer"].update(name=None)),
    _with(lambda r: r.update(buyer="Ann")),
    _with(lambda r: r.update(buyer=None)),
    _with(lambda r: r.update(line_items=None)),
    _with(lambda r: r.update(line_items={"description": "x", "quantity": 1})),
    _with(lambda r: r["line_items"].append("x")),
    _with(lambda r: r["line_items"].append(None)),
    _with(lambda r: r["line_items"][0].update(quantity="2")),
    _with(lambda r: r["line_items"][0].update(quantity=True)),
    _with(lambda r: r["line_items"][0].update(quantity=-0.01)),
    _with(lambda r: r["line_items"][0].update(quantity=0)),
    _with(lambda r: r["line_items"][0].update(unit_price=None)),
    _with(lambda r: r["line_items"][0].pop("description")),
    _with(lambda r: r["tags"].append("late")),
    _with(lambda r: r["tags"].append(None)),
    _with(lambda r: r["scores"].append(10)),
    _with(lambda r: r["scores"].append(10.01)),
    _with(lambda r: r["scores"].append("1")),
    _with(lambda r: r["shipping"].update(date="2023-02-29")),
    _with(lambda r: r["shipping"].update(date="2024-2-29")),
    _with(lambda r: r["shipping"].update(date="0999-01-01")),
    _with(lambda r: r["shipping"].update(date=20240229)),
    _with(lambda r: r.update(shipping={})),
    _with(lambda r: r.pop("vendor")),
    _with(lambda r: r.update(vendor=["Acme"])),
]


@pytest.mark.parametrize("obj", AGREEMENT_TABLE)
def test_parse_output_agrees_with_jsonschema_nested(schema: Schema, obj: dict) -> None:
    validator = jsonschema.Draft7Validator(schema.to_json_schema())
    assert parse_output(json.dumps(obj), schema).schema_ok == validator.is_valid(obj)


def test_agreement_table_has_both_verdicts(schema: Schema) -> None:
    verdicts = [parse_output(json.dumps(o), schema).schema_ok for o in AGREEMENT_TABLE]
    # valid: the good record, the minimal one, explicit nulls, quantity 0, unit_price null, a score of 10
    assert [i for i, ok in enumerate(verdicts) if ok] == [0, 1, 2, 17, 18, 22]


# --- canonical JSON -------------------------------------------------------------------------------


def test_canonical_json_of_a_nested_record(schema: Schema) -> None:
    record = {
        "shipping": {"date": "14.03.2024", "city": "Lyon", "junk": 1},
        "tags": ["PAID", "", None],
        "scores": ["1,5", 10],
        "line_items": [
            {"quantity": "2", "description": "Nut", "unit_price": "1,234.50"},
            None,
            {"description": "Bolt", "quantity": 1.0, "unit_price": ""},
        ],
        "buyer": {"name": "Ann", "vat_id": " "},
        "vendor": "Acme",
        "extra": 1,
    }
    out = canonical_json(record, schema)
    assert out == (
        '{"vendor":"Acme","buyer":{"name":"Ann"},"line_items":[{"description":"Nut","quantity":2,'
        '"unit_price":1234.5},{"description":"Bolt","quantity":1.0}],"tags":["paid"],"scores":[1.5,10],'
        '"shipping":{"city":"Lyon","date":"2024-03-14"}}'
    )
    assert parse_output(out, schema).schema_ok
    # An optional object that is absent, null or empty is left out; a required list defaults to [].
    base = {"vendor": "A", "buyer": {"name": "B"}}
    for shipping in (None, {}):
        assert canonical_json({**base, "shipping": shipping}, schema) == (
            '{"vendor":"A","buyer":{"name":"B"},"line_items":[]}'
        )


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"vendor": "a", "line_items": [], "buyer": {}}, "required field 'buyer' is missing or empty"),
        ({"vendor": "a", "line_items": [], "buyer": {"vat_id": "x"}}, "required field 'buyer.name' is missing"),
        ({"vendor": "a", "buyer": "Ann", "line_items": []}, "field 'buyer': expected an object, got 'Ann'"),
        ({"vendor": "a", "buyer": {"name": "b"}, "line_items": [{"description": "x", "quantity": -1}]},
         "field 'line_items[0].quantity': -1 is below the minimum 0"),
        ({"vendor": "a", "buyer": {"name": "b"}, "line_items": [{"quantity": 1}]},
         "required field 'line_items[0].description' is missing"),
        ({"vendor": "a", "buyer": {"name": "b"}, "line_items": [], "scores": [11]},
         "field 'scores[0]': 11 is above the maximum 10"),
        ({"vendor": "a", "buyer": {"name": "b"}, "line_items": [], "tags": ["late"]},
         "field 'tags[0]': 'late' is not one of"),
        ({"vendor": "a", "buyer": {"name": "b"}, "line_items": [], "shipping": {"city": "x", "date": "soon"}},
         "field 'shipping.date': cannot read 'soon' as a date"),
    ],
)  # fmt: skip
def test_canonical_json_errors_name_the_path(schema: Schema, record: dict, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        canonical_json(record, schema)
    assert needle in str(exc.value)


# --- parse_output ---------------------------------------------------------------------------------


def test_parse_output_nested_errors(schema: Schema) -> None:
    obj = {
        "vendor": "Acme",
        "buyer": {"vat_id": 5, "x": 1},
        "line_items": [
            {"description": "Nut", "quantity": "2"},
            "oops",
            {"description": "Bolt", "quantity": -1, "unit_price": None},
        ],
        "tags": ["paid", "late", 3],
        "scores": [11, True],
        "shipping": {"city": "Lyon", "date": "2024-02-30"},
        "zz": 1,
    }
    p = parse_output("Sure: " + json.dumps(obj), schema)
    assert (p.valid_json, p.is_object, p.schema_ok) == (True, True, False)
    assert p.parsed == obj
    assert p.errors == [
        "unexpected key(s) ['zz']; schema fields: ['vendor', 'buyer', 'line_items', 'tags', 'scores', 'shipping']",
        "required field 'buyer.name' is missing",
        "field 'buyer.vat_id': expected a string, got number 5",
        "field 'buyer': unexpected key(s) ['x']; fields: ['name', 'vat_id']",
        "field 'line_items[0].quantity': expected a number, got string '2'",
        "field 'line_items': list items must be objects, got ['oops']",
        "field 'line_items[2].quantity': -1 is less than the minimum 0",
        "field 'tags[1]': 'late' is not one of ['paid', 'overdue']",
        "field 'tags': list items must be strings, got [3]",
        "field 'scores[0]': 11 is greater than the maximum 10",
        "field 'scores': list items must be numbers, got [True]",
        "field 'shipping.date': '2024-02-30' is not a calendar date",
    ]
    assert p.field_ok == {
        "vendor": True,
        "buyer": False,
        "line_items": False,
        "tags": False,
        "scores": False,
        "shipping": False,
    }
    assert p.error_locs == [
        ("buyer", "name"),
        ("buyer", "vat_id"),
        ("buyer", "x"),
        ("line_items", 0, "quantity"),
        ("line_items", 1),
        ("line_items", 2, "quantity"),
        ("tags", 1),
        ("tags", 2),
        ("scores", 0),
        ("scores", 1),
        ("shipping", "date"),
        ("zz",),
    ]


def test_parse_output_nested_nulls_and_wrong_containers(schema: Schema) -> None:
    p = parse_output(
        json.dumps({"vendor": "A", "buyer": None, "line_items": [{"quantity": 1}], "shipping": None}), schema
    )
    assert p.errors == [
        "required field 'buyer' is null",
        "required field 'line_items[0].description' is missing",
    ]
    assert p.field_ok == {
        "vendor": True,
        "buyer": False,
        "line_items": False,
        "tags": True,
        "scores": True,
        "shipping": True,
    }
    raw = {"vendor": "A", "buyer": [], "line_items": {"description": "x"}, "shipping": "Lyon", "tags": "paid"}
    assert parse_output(json.dumps(raw), schema).errors == [
        "field 'buyer': expected an object, got array []",
        "field 'line_items': expected a list of objects, got object {'description': 'x'}",
        "field 'tags': expected a list of strings, got string 'paid'",
        "field 'shipping': expected an object, got string 'Lyon'",
    ]
    p = parse_output(json.dumps(good_record()), schema)
    assert (p.schema_ok, p.errors, p.error_locs) == (True, [], [])
    assert all(p.field_ok.values())


# --- normalisation --------------------------------------------------------------------------------


def test_normalize_objects_and_lists_of_objects(schema: Schema) -> None:
    norm = Normalization()
    buyer, items = schema.field("buyer"), schema.field("line_items")
    assert normalize_value({"name": " ANN ", "vat_id": None, "zz": 1}, buyer, norm) == {
        "name": "ann",
        "vat_id": None,
    }
    assert normalize_value({"name": " ", "vat_id": None}, buyer, norm) is None  # nothing in it
    assert normalize_value({}, buyer, norm) is None and normalize_value(None, buyer, norm) is None
    assert normalize_value("Ann", buyer, norm) == "ann"  # not an object: its text (never equal to an object)
    a = normalize_value(
        [{"description": "Nut ", "quantity": "2"}, None, {}, {"description": "bolt", "quantity": 1}],
        items,
        norm,
    )
    assert a == [
        (("description", "bolt"), ("quantity", 1.0), ("unit_price", None)),
        (("description", "nut"), ("quantity", 2.0), ("unit_price", None)),
    ]
    # Order-free and spelling-free: the same items in another order and spelling are equal.
    b = normalize_value(
        [{"description": "BOLT", "quantity": 1.0}, {"description": "nut", "quantity": 2}], items, norm
    )
    assert a == b and hash(tuple(b))
    # Lists of numbers compare by value; unreadable items are kept as text, in a fixed order.
    assert normalize_value(["1,5", 10, "x", None], schema.field("scores"), norm) == [1.5, 10.0, "x"]
    assert normalize_value(["PAID", ""], schema.field("tags"), norm) == ["paid"]
