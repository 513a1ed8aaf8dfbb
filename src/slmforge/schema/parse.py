"""Reading a model's output against a schema: find the first JSON object (one scanner), parse it, and say
what is wrong with it. Never raises: a bad output becomes a :class:`ParsedOutput` with its errors.

Schema adherence is validation with the schema's strict pydantic model (:meth:`Schema.pydantic_model`), the
contract a downstream consumer relies on: a number field holding the string ``"12.50"`` is a violation.
pydantic's errors are rewritten as short sentences naming the path of the value
(``field 'line_items[1].quantity': expected a number, got string '2'``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from slmforge.schema.scanner import JsonEndScanner
from slmforge.schema.spec import _DATE_RE, FieldSpec, Schema

Loc = tuple[str | int, ...]


@dataclass
class ParsedOutput:
    """What a model produced for an extraction example, and what is wrong with it.

    ``valid_json``: some JSON value could be read (the whole text, or the first balanced ``{...}`` in it).
    ``is_object``: that value is a JSON object. ``schema_ok``: the object matches the schema exactly
    (no extra keys at any level, required keys present and non-null, every value of the right type).
    ``field_ok[name]``: the top-level field satisfies the schema: present and valid all the way down, or
    optional and absent/null (False for every field when there is no object). ``errors`` says why, in
    words. ``error_locs``: where each schema violation is, as keys and list indices
    (``("line_items", 1, "quantity")``; an unknown key's own location), so metrics can score the sub-fields
    of an object separately.
    """

    raw: str
    parsed: dict[str, Any] | None
    valid_json: bool
    is_object: bool
    schema_ok: bool
    errors: list[str] = field(default_factory=list)
    field_ok: dict[str, bool] = field(default_factory=dict)
    error_locs: list[Loc] = field(default_factory=list)


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


# --------------------------------------------------------------------------------------------------
# pydantic errors -> sentences


def _path(loc: Sequence[str | int]) -> str:
    """``("line_items", 1, "quantity")`` -> ``line_items[1].quantity``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _spec_at(schema: Schema, loc: Sequence[str | int]) -> FieldSpec | None:
    """The spec of the value at ``loc`` (None for a key the schema does not have)."""
    spec: FieldSpec | None = None
    for part in loc:
        if isinstance(part, int):
            if spec is None or spec.type != "list":
                return None
            spec = spec.item_spec
            continue
        if spec is None:
            fields = schema.fields
        elif spec.type == "object":
            fields = spec.fields or []
        else:
            return None
        spec = next((f for f in fields if f.name == part), None)
        if spec is None:
            return None
    return spec


_NOUNS = {"string": "strings", "date": "strings", "enum": "strings", "number": "numbers", "object": "objects"}


def _has_json_type(value: Any, spec: FieldSpec) -> bool:
    """Whether ``value`` is of the JSON type ``spec`` needs (whatever else may be wrong with it)."""
    if spec.type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec.type == "object":
        return isinstance(value, dict)
    if spec.type == "list":
        return isinstance(value, list)
    return isinstance(value, str)


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _message(err: dict[str, Any], spec: FieldSpec | None, loc: Loc) -> str:
    """One pydantic error as a sentence (flat fields keep the wording of the hand-written checks)."""
    kind, value, path = err["type"], err.get("input"), _path(loc)
    where = f"field {path!r}"
    if kind == "missing":
        return f"required field {path!r} is missing"
    if spec is None:
        return f"{where}: {err.get('msg', kind)}"
    if value is None:
        return f"required field {path!r} is null"
    if not _has_json_type(value, spec):
        if spec.type == "number":
            return f"{where}: expected a number, got {_json_type(value)} {value!r}"
        if spec.type == "object":
            return f"{where}: expected an object, got {_json_type(value)} {value!r}"
        if spec.type == "list":
            noun = _NOUNS[spec.item_spec.type]
            return f"{where}: expected a list of {noun}, got {_json_type(value)} {value!r}"
        return f"{where}: expected a string, got {_json_type(value)} {value!r}"
    if spec.type == "date":
        if not _DATE_RE.match(value):
            return f"{where}: expected a date as YYYY-MM-DD, got {value!r}"
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            return f"{where}: {value!r} is not a calendar date"
        return f"{where}: {value!r} is outside the years 1000-2999"
    if spec.type == "enum":
        return f"{where}: {value!r} is not one of {spec.values}"
    if kind == "greater_than_equal" and spec.minimum is not None:
        return f"{where}: {value!r} is less than the minimum {_bound(spec.minimum)}"
    if kind == "less_than_equal" and spec.maximum is not None:
        return f"{where}: {value!r} is greater than the maximum {_bound(spec.maximum)}"
    if spec.type == "number" and isinstance(value, int):
        return f"{where}: {_json_type(value)} too large to read as a number"
    return f"{where}: {err.get('msg', kind)}"


def _schema_errors(value: dict[str, Any], schema: Schema) -> tuple[list[str], list[Loc]]:
    """Sentences and locations of everything wrong with ``value``; ([], []) when it fits ``schema``.

    Unknown keys of one object are reported together (first, for the top level); a list whose items have
    the wrong JSON type gets one sentence listing them (``list items must be strings, got [1]``).
    """
    try:
        schema.pydantic_model().model_validate(value)
        return [], []
    except ValidationError as e:
        errs = e.errors(include_url=False)
    locs: list[Loc] = [tuple(err["loc"]) for err in errs]
    top_extra: list[str] = []
    groups: dict[tuple[str, Loc], tuple[int, list[Any]]] = {}  # (kind, parent loc) -> (slot, members)
    messages: list[str | None] = []
    for err, loc in zip(errs, locs, strict=True):
        parent = loc[:-1]
        if err["type"] == "extra_forbidden":
            if not parent:
                top_extra.append(str(loc[-1]))
                continue
            key = ("extra", parent)
            member: Any = str(loc[-1])
        else:
            spec = _spec_at(schema, loc)
            parent_spec = _spec_at(schema, parent) if parent and isinstance(loc[-1], int) else None
            item = err.get("input")
            if parent_spec is None or spec is None or _has_json_type(item, spec):
                messages.append(_message(err, spec, loc))
                continue
            key, member = ("items", parent), item
        if key not in groups:
            groups[key] = (len(messages), [])
            messages.append(None)
        groups[key][1].append(member)
    for (kind, parent), (slot, members) in groups.items():
        where = f"field {_path(parent)!r}"
        if kind == "extra":
            spec = _spec_at(schema, parent)
            names = [f.name for f in spec.fields or []] if spec is not None and spec.type == "object" else []
            messages[slot] = f"{where}: unexpected key(s) {members}; fields: {names}"
        else:
            spec = _spec_at(schema, parent)
            noun = _NOUNS[spec.item_spec.type] if spec is not None else "values"
            messages[slot] = f"{where}: list items must be {noun}, got {members!r}"
    out = [m for m in messages if m is not None]
    if top_extra:
        out.insert(0, f"unexpected key(s) {top_extra}; schema fields: {schema.names}")
    return out, locs


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

        errors, locs = _schema_errors(value, schema)
        bad = {loc[0] for loc in locs if loc}
        field_ok = {name: name not in bad for name in schema.names}
        return ParsedOutput(text, value, True, True, not errors, errors, field_ok, locs)
    except Exception as e:  # never raise: a crash here would lose a whole evaluation run
        return ParsedOutput(text, None, False, False, False, [f"could not parse output: {e!r}"], no_fields)
