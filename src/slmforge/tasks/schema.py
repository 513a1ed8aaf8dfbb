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
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

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


@dataclass
class ParsedOutput:
    """What a model produced for an extraction example, and what is wrong with it.

    ``valid_json``: some JSON value could be read (the whole text, or the first balanced ``{...}`` in it).
    ``is_object``: that value is a JSON object. ``schema_ok``: the object matches the schema exactly
    (no extra keys, required keys present and non-null, every value of the right type).
    ``field_ok[name]``: the field satisfies the schema: present with the right type, or optional and
    absent/null (False for every field when there is no object). ``errors`` says why, in words.
    """

    raw: str
    parsed: dict[str, Any] | None
    valid_json: bool
    is_object: bool
    schema_ok: bool
    errors: list[str] = field(default_factory=list)
    field_ok: dict[str, bool] = field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; they are not JSON and no consumer can read them.
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _first_json_object(text: str) -> tuple[str | None, str | None]:
    """The first balanced ``{...}`` that parses as JSON, or (None, reason).

    Braces inside strings are skipped. A balanced candidate that is not JSON (prose like "{name}")
    is passed over in favour of a later one; an unbalanced one means the output was cut off.
    """
    start = text.find("{")
    if start == -1:
        return None, "no JSON object found in the output"
    reason = "no JSON object found in the output"
    while start != -1:
        depth, in_str, esc, end = 0, False, False, -1
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end == -1:
            return None, "unterminated JSON object (output truncated?)"
        candidate = text[start : end + 1]
        try:
            _loads(candidate)
            return candidate, None
        except ValueError as e:
            reason = f"not valid JSON: {e}"
        start = text.find("{", end + 1)
    return None, reason


def _type_error(value: Any, f: FieldSpec) -> str | None:
    """Why ``value`` (non-null) does not fit ``f``, or None when it does. Strict: no coercion."""
    if f.type == "number":
        # bool is an int subclass in Python, but true/false are not numbers in JSON.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"field {f.name!r}: expected a number, got {_json_type(value)} {value!r}"
        return None
    if not isinstance(value, str) and f.type != "list":
        return f"field {f.name!r}: expected a string, got {_json_type(value)} {value!r}"
    if f.type == "date":
        if not _DATE_RE.match(value):
            return f"field {f.name!r}: expected a date as YYYY-MM-DD, got {value!r}"
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            return f"field {f.name!r}: {value!r} is not a calendar date"
        return None
    if f.type == "enum":
        if value not in (f.values or []):
            return f"field {f.name!r}: {value!r} is not one of {f.values}"
        return None
    if f.type == "list":
        if not isinstance(value, list):
            return f"field {f.name!r}: expected a list of strings, got {_json_type(value)} {value!r}"
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            return f"field {f.name!r}: list items must be strings, got {bad!r}"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_output(raw: str, schema: Schema) -> ParsedOutput:
    """Read a model's output against ``schema``. Never raises.

    The whole (stripped) text is tried as JSON first; failing that, the first balanced ``{...}`` in it,
    so prose before the object, code fences, or junk after the closing brace (common with small models
    that keep generating) do not make an otherwise correct answer invalid.
    """
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    no_fields = dict.fromkeys(schema.names, False)
    try:
        stripped = text.strip()
        try:
            value = _loads(stripped)
        except ValueError:
            candidate, reason = _first_json_object(stripped)
            if candidate is None:
                return ParsedOutput(text, None, False, False, False, [reason or "not valid JSON"], no_fields)
            value = _loads(candidate)
        if not isinstance(value, dict):
            err = f"expected a JSON object, got {_json_type(value)}"
            return ParsedOutput(text, None, True, False, False, [err], no_fields)

        errors: list[str] = []
        field_ok: dict[str, bool] = {}
        known = set(schema.names)
        extra = [k for k in value if k not in known]
        if extra:
            errors.append(f"unexpected key(s) {extra}; schema fields: {schema.names}")
        for f in schema.fields:
            if f.name not in value or value[f.name] is None:
                if f.required:
                    what = "missing" if f.name not in value else "null"
                    errors.append(f"required field {f.name!r} is {what}")
                field_ok[f.name] = not f.required
                continue
            err = _type_error(value[f.name], f)
            if err:
                errors.append(err)
            field_ok[f.name] = err is None
        return ParsedOutput(text, value, True, True, not errors, errors, field_ok)
    except Exception as e:  # never raise: a crash here would lose a whole evaluation run
        return ParsedOutput(text, None, False, False, False, [f"could not parse output: {e!r}"], no_fields)


# --------------------------------------------------------------------------------------------------
# Normalisation


@dataclass
class Normalization:
    """How values are made comparable before scoring.

    ``case``: casefold strings. ``whitespace``: collapse whitespace runs and strip. ``numbers``: read
    number fields ("1,234.50", "$12.0", "12", 12) as floats rounded to 2 decimals. ``dates``: read date
    fields in common formats as ISO dates; ``dayfirst`` decides ambiguous numeric dates (03/04/2024 is
    3 April when True), falling back to the other order when the first is impossible (03/14/2024).
    """

    case: bool = True
    whitespace: bool = True
    numbers: bool = True
    dates: bool = True
    dayfirst: bool = True


_WS_RE = re.compile(r"\s+")


def _normalize_text(s: str, norm: Normalization) -> str:
    if norm.whitespace:
        s = _WS_RE.sub(" ", s).strip()
    if norm.case:
        s = s.casefold()
    return s


def _is_empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list) and not value)
    )


def normalize_value(value: Any, spec: FieldSpec, norm: Normalization) -> Any:
    """Map ``value`` of field ``spec`` to a comparable form; accepts any type (gold data is messy).

    Empty values (None, blank strings) become None; list fields become a sorted list of normalised,
    non-empty strings (possibly empty), to be compared as multisets. A number or date that cannot be
    read is kept as a normalised string, so it still equals an identical spelling.
    """
    if spec.type == "list":
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else [value]
        out = [_normalize_text(str(v), norm) for v in items if not _is_empty(v)]
        return sorted(v for v in out if v)
    if _is_empty(value):
        return None
    if spec.type == "number" and norm.numbers:
        num = parse_number(value)
        if num is not None:
            return round(num, 2)
    if spec.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value  # numbers off: compare the JSON numbers as they are (12 == 12.0)
    if spec.type == "date" and norm.dates:
        if isinstance(value, _dt.datetime):
            return value.date().isoformat()
        if isinstance(value, _dt.date):
            return value.isoformat()
        d = parse_date(str(value), dayfirst=norm.dayfirst)
        if d is not None:
            return d.isoformat()
    s = _normalize_text(value if isinstance(value, str) else str(value), norm)
    return s or None


# Numbers ------------------------------------------------------------------------------------------

_CURRENCY_SYMBOLS = "$€£¥₹₩₽¢"
_NUM_WRAPPER_RE = re.compile(r"^([A-Za-z]{1,3}\.?)?(.*?)([A-Za-z]{1,3}\.?)?$")
_US_THOUSANDS_RE = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_EU_THOUSANDS_RE = re.compile(r"^\d{1,3}(\.\d{3})+,\d+$|^\d{1,3}(\.\d{3}){2,}$")
_DECIMAL_COMMA_RE = re.compile(r"^\d+,\d{1,2}$")
_PLAIN_RE = re.compile(r"^(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_number(value: Any) -> float | None:
    """Read a number written by a person: ``12``, ``"1,234.50"``, ``"$12.0"``, ``"USD 1 234,50"``, ``"(5)"``.

    Thousands separators: ``1,234.5`` (comma) and ``1.234,5`` / ``1.234.567`` (dot) are recognised;
    ``12,50`` (one comma, 1-2 decimals) is a decimal comma; a single dot group (``1.234``) is a decimal
    point. Parentheses mean negative (accounting). Returns None for booleans and anything unreadable.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if f == f and abs(f) != float("inf") else None
    s = str(value).strip()
    if not s:
        return None
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1].strip()
    for ch in _CURRENCY_SYMBOLS + "'\u00a0\u202f ":
        s = s.replace(ch, "")
    m = _NUM_WRAPPER_RE.match(s)  # currency codes / units of up to 3 letters around the number
    s = m.group(2) if m else s
    # A sign may sit before or after the (already removed) currency symbol: "-$12", "$-12".
    if s and s[0] in "+-":
        negative ^= s[0] == "-"
        s = s[1:]
    if _US_THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    elif _EU_THOUSANDS_RE.match(s):
        s = s.replace(".", "").replace(",", ".")
    elif _DECIMAL_COMMA_RE.match(s):
        s = s.replace(",", ".")
    if not _PLAIN_RE.match(s):
        return None
    num = float(s)
    return -num if negative else num


# Dates --------------------------------------------------------------------------------------------

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_IGNORED_WORDS = {
    "monday", "mon", "tuesday", "tue", "tues", "wednesday", "wed", "thursday", "thu", "thur", "thurs",
    "friday", "fri", "saturday", "sat", "sunday", "sun", "of", "the",
}  # fmt: skip
_ISO_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$")
_COMPACT_ISO_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_NUMERIC_RE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})$")
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)\b")


def _year(y: str) -> int:
    # Same pivot as strptime's %y: 00-68 -> 2000s, 69-99 -> 1900s.
    n = int(y)
    if len(y) <= 2:
        return 2000 + n if n < 69 else 1900 + n
    return n


def _mkdate(y: int, m: int, d: int) -> _dt.date | None:
    try:
        return _dt.date(y, m, d)
    except ValueError:
        return None


def parse_date(text: str, dayfirst: bool = True) -> _dt.date | None:
    """Read a date in a common format; None when it is not one.

    Accepts ISO (``2024-03-14``, ``2024/03/14``, ``20240314``, ISO datetimes), numeric day/month orders
    (``14.03.2024``, ``03/14/2024``, ``25/12/18``) and month names (``March 14, 2024``, ``14 Mar 2024``,
    ``Thu, 14th of March 2024``). Partial dates ("March 2024") are rejected rather than guessed.
    """
    s = text.strip()
    m = _ISO_RE.match(s) or _COMPACT_ISO_RE.match(s)
    if m:
        return _mkdate(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _NUMERIC_RE.match(s)
    if m:
        a, b, y = int(m.group(1)), int(m.group(2)), _year(m.group(3))
        orders = [(b, a), (a, b)] if dayfirst else [(a, b), (b, a)]  # (month, day)
        for month, day in orders:
            d = _mkdate(y, month, day)
            if d is not None:
                return d
        return None
    tokens = [t for t in re.split(r"[\s,./-]+", _ORDINAL_RE.sub(r"\1", s.casefold())) if t]
    tokens = [t for t in tokens if t not in _IGNORED_WORDS]
    months = [t for t in tokens if t in _MONTHS]
    numbers = [t for t in tokens if t.isdigit()]
    if len(tokens) != 3 or len(months) != 1 or len(numbers) != 2:
        return None
    month = _MONTHS[months[0]]
    long_years = [t for t in numbers if len(t) == 4]
    if len(long_years) == 1:
        year_tok = long_years[0]
        day_tok = numbers[0] if numbers[1] == year_tok else numbers[1]
    else:
        day_tok, year_tok = numbers  # "14 Mar 24" / "Mar 14 24": the day comes first
    if len(day_tok) > 2:
        return None
    return _mkdate(_year(year_tok), month, int(day_tok))
