"""Reading a model's output against a schema: find the first JSON object (one scanner), parse it, and say
what is wrong with it. Never raises: a bad output becomes a :class:`ParsedOutput` with its errors.

Type checks are strict (a number field holding the string ``"12.50"`` is a schema violation): the schema is
the contract a downstream consumer relies on.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from slmforge.schema.scanner import JsonEndScanner
from slmforge.schema.spec import _DATE_RE, FieldSpec, Schema


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

    Braces inside strings are skipped (:class:`JsonEndScanner`, the rule generation stops on). A balanced
    candidate that is not JSON (prose like "{name}") is passed over in favour of a later one; an unbalanced
    one means the output was cut off.
    """
    start = text.find("{")
    reason = "no JSON object found in the output"
    while start != -1:
        scanner = JsonEndScanner()
        if not scanner.feed(text[start:]) or scanner.end is None:
            return None, "unterminated JSON object (output truncated?)"
        end = start + scanner.end
        candidate = text[start:end]
        try:
            _loads(candidate)
            return candidate, None
        except ValueError as e:
            reason = f"not valid JSON: {e}"
        start = text.find("{", end)
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
