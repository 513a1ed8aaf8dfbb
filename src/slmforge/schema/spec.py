"""Extraction schemas: field specs, JSON Schema export, canonical targets, parsing and normalisation.

An extraction task asks a model to turn a document into a flat JSON object whose fields are declared
in the config, e.g.::

    schema:
      vendor:   {type: string}
      date:     {type: date}
      total:    {type: number}
      currency: {type: enum, values: [USD, EUR, GBP]}
      items:    {type: list, required: false}

This module is the single place that knows what such an object looks like:

- :meth:`Schema.to_json_schema` feeds constrained decoding (lm-format-enforcer) and API "JSON mode";
- :func:`canonical_json` renders gold records as the exact training target string (one spelling per
  record, so the fine-tuned model never sees two serialisations of the same answer);
- :func:`parse_output` reads whatever a model produced, never raising, and says what is wrong with it;
- :func:`normalize_value` maps semantically equal values ("1,234.50" and 1234.5, "March 14, 2024" and
  "2024-03-14") to one representation so metrics compare meaning rather than spelling.

Type checks in :func:`parse_output` are strict (a number field holding the string ``"12.50"`` is a schema
violation): the schema is the contract a downstream consumer relies on. Normalisation is lenient because
it is applied to gold data too, which comes from datasets in whatever format they were written.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from slmforge.schema.normalise import _is_empty, parse_date, parse_number

FieldType = Literal["string", "number", "date", "enum", "list"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
_CONFIG_KEYS = ("type", "required", "values", "description")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATE_RE = re.compile(DATE_PATTERN)


@dataclass
class FieldSpec:
    """One field of an extraction schema.

    ``values`` lists the allowed values of an ``enum`` field (and must be absent for other types);
    ``description`` is optional prose shown to the model by :meth:`Schema.describe`.
    """

    name: str
    type: FieldType
    required: bool = True
    values: list[str] | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"schema field name must be a non-empty string, got {self.name!r}")
        if self.type not in FIELD_TYPES:
            raise ValueError(
                f"schema field {self.name!r}: unknown type {self.type!r}; allowed types: {', '.join(FIELD_TYPES)}"
            )
        if not isinstance(self.required, bool):
            raise ValueError(
                f"schema field {self.name!r}: 'required' must be true or false, got {self.required!r}"
            )
        if self.type == "enum":
            if self.values is None or isinstance(self.values, str) or len(list(self.values)) == 0:
                raise ValueError(
                    f"schema field {self.name!r}: type 'enum' needs a non-empty list 'values', got {self.values!r}"
                )
            # Config loaders hand over ListConfig/tuples; store a plain list of strings.
            self.values = [str(v) for v in self.values]
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"schema field {self.name!r}: duplicate enum values in {self.values}")
        elif self.values is not None:
            raise ValueError(
                f"schema field {self.name!r}: 'values' is only allowed for type 'enum' (this field is {self.type!r})"
            )


@dataclass
class Schema:
    """An ordered list of fields; the order is the key order of canonical targets and prompts."""

    fields: list[FieldSpec]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("an extraction schema needs at least one field")
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schema has duplicate field name(s): {dupes}")

    @classmethod
    def from_config(cls, d: Mapping[str, Mapping[str, Any] | str]) -> Schema:
        """Build a schema from ``{name: {"type": ..., "required": ..., "values": [...]}}``.

        A bare type string (``{"vendor": "string"}``) is accepted as shorthand for a required field.
        Raises ValueError naming the offending field (and the allowed types) on bad input.
        """
        if not isinstance(d, Mapping) or len(d) == 0:
            raise ValueError(
                f"extraction schema must be a non-empty mapping of field name -> spec, got {type(d).__name__}"
            )
        fields: list[FieldSpec] = []
        for name, spec in d.items():
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"schema field {name!r}: spec must be a mapping like {{type: string, required: true}}, "
                    f"got {spec!r}; allowed types: {', '.join(FIELD_TYPES)}"
                )
            unknown = sorted(str(k) for k in spec if k not in _CONFIG_KEYS)
            if unknown:
                raise ValueError(
                    f"schema field {name!r}: unknown key(s) {unknown}; allowed keys: {', '.join(_CONFIG_KEYS)}"
                )
            if "type" not in spec:
                raise ValueError(
                    f"schema field {name!r}: missing 'type'; allowed types: {', '.join(FIELD_TYPES)}"
                )
            values = spec.get("values")
            fields.append(
                FieldSpec(
                    name=str(name),
                    type=spec["type"],
                    required=spec.get("required", True),
                    values=list(values) if values is not None and not isinstance(values, str) else values,
                    description=spec.get("description"),
                )
            )
        return cls(fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r} in schema; fields: {self.names}")

    def to_json_schema(self) -> dict[str, Any]:
        """A JSON Schema (draft 7) object for constrained decoding and API structured output.

        Optional fields may be omitted or ``null``; required fields must be present and non-null.
        The date pattern only checks the shape ``YYYY-MM-DD``; :func:`parse_output` also checks that
        the date exists in the calendar.
        """
        properties: dict[str, Any] = {}
        for f in self.fields:
            prop = _json_schema_for(f)
            if not f.required:
                # anyOf (rather than a type list) keeps enum/pattern constraints on the non-null branch.
                prop = {"anyOf": [prop, {"type": "null"}]}
            if f.description:
                prop["description"] = f.description
            properties[f.name] = prop
        return {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": properties,
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }

    def describe(self) -> str:
        """One line per field for prompts, e.g. ``- date (date, YYYY-MM-DD, required)``."""
        lines = []
        for f in self.fields:
            if f.type == "date":
                kind = "date, YYYY-MM-DD"
            elif f.type == "enum":
                kind = "one of: " + " | ".join(f.values or [])
            elif f.type == "list":
                kind = "list of strings"
            else:
                kind = f.type
            line = f"- {f.name} ({kind}, {'required' if f.required else 'optional'})"
            if f.description:
                line += f": {f.description}"
            lines.append(line)
        return "\n".join(lines)


def _json_schema_for(f: FieldSpec) -> dict[str, Any]:
    if f.type == "number":
        return {"type": "number"}
    if f.type == "date":
        return {"type": "string", "pattern": DATE_PATTERN}
    if f.type == "list":
        return {"type": "array", "items": {"type": "string"}}
    if f.type == "enum":
        return {"type": "string", "enum": list(f.values or [])}
    return {"type": "string"}


# --------------------------------------------------------------------------------------------------
# Canonical targets


def canonical_json(record: Mapping[str, Any], schema: Schema, *, dayfirst: bool = True) -> str:
    """The one spelling of ``record`` used as a training target and for display.

    Keys follow schema order, only schema keys are kept, separators are compact and non-ASCII text is
    kept as is. Values are coerced to the schema's types so the target always passes
    :func:`parse_output`: number strings ("1,234.50") become JSON numbers, dates become ISO strings,
    enum values take the schema's spelling (matched case-insensitively). Optional fields that are
    absent, null or blank are omitted; a required list field that is absent becomes ``[]``. Raises ValueError (naming the field) for a missing required field or a
    value that cannot be coerced, because a broken gold record would silently teach the wrong format.
    """
    out: dict[str, Any] = {}
    for f in schema.fields:
        value = record.get(f.name)
        if f.type == "list" and isinstance(value, list | tuple):
            pass  # an explicit empty list is a real answer ("no items") and is kept
        elif f.type == "list" and value is None and f.required:
            value = []
        elif _is_empty(value):
            if f.required:
                raise ValueError(
                    f"canonical_json: required field {f.name!r} is missing or empty in {dict(record)!r}"
                )
            continue
        out[f.name] = _coerce(value, f, dayfirst)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _coerce(value: Any, f: FieldSpec, dayfirst: bool) -> Any:
    if f.type == "number":
        num = parse_number(value)
        if num is None:
            raise ValueError(f"canonical_json: field {f.name!r}: {value!r} is not a number")
        # Keep integers integral ("12" not "12.0") so targets stay short and natural.
        return (
            int(num)
            if isinstance(value, int) or (num.is_integer() and not _has_decimal_point(value))
            else num
        )
    if f.type == "date":
        if isinstance(value, _dt.datetime):
            return value.date().isoformat()
        if isinstance(value, _dt.date):
            return value.isoformat()
        d = parse_date(str(value), dayfirst=dayfirst)
        if d is None:
            raise ValueError(f"canonical_json: field {f.name!r}: cannot read {value!r} as a date")
        return d.isoformat()
    if f.type == "enum":
        s = str(value)
        if s in (f.values or []):
            return s
        folded = {v.casefold(): v for v in f.values or []}
        if s.strip().casefold() in folded:
            return folded[s.strip().casefold()]
        raise ValueError(f"canonical_json: field {f.name!r}: {value!r} is not one of {f.values}")
    if f.type == "list":
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else [value]
        return [str(v) for v in items if not _is_empty(v)]
    return value if isinstance(value, str) else str(value)


def _has_decimal_point(value: Any) -> bool:
    return isinstance(value, float) or (isinstance(value, str) and ("." in value or "," in value[-3:]))


# --------------------------------------------------------------------------------------------------
# Parsing model output
