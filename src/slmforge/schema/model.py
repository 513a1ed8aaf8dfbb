"""The pydantic model of an extraction schema, and its self-contained JSON Schema.

One contract, three uses: :func:`~slmforge.schema.parse.parse_output` validates model output with the
model (schema adherence), and :meth:`Schema.to_json_schema` is the model's JSON Schema, which drives
constrained decoding and API structured outputs. Generating both from one pydantic model keeps them from
drifting apart (a date the validator rejects must be one the decoder cannot write).

The model is strict, the way a downstream consumer reads JSON: no coercion (a number field holding the
string ``"12.50"`` is an error, ``true`` is not a number), no unknown keys (``extra="forbid"``), enums as
``Literal``, dates as strings matching :data:`~slmforge.schema.spec.CALENDAR_DATE_PATTERN` (and a real-date
check besides), required fields non-null, optional fields ``X | None = None``, number bounds as
``ge``/``le``. Field names are aliases (the Python attribute names are ``f0``, ``f1``...), so any key a
schema uses (``model_config``, ``total amount``, ``_id``) works.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from slmforge.schema.spec import CALENDAR_DATE_PATTERN, FieldSpec, Schema

__all__ = ["engine_json_schema", "pydantic_model_of"]

_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _real_date(value: str) -> str:
    # The pattern already admits only real dates in 1000-2999; this keeps the model right if it ever widens.
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date") from None
    return value


_Date = Annotated[str, StringConstraints(pattern=CALENDAR_DATE_PATTERN), AfterValidator(_real_date)]


def _model_name(path: str) -> str:
    return "Record" + "".join("_" + re.sub(r"\W", "_", part) for part in path.split(".") if part)


def _annotation(f: FieldSpec, path: str) -> Any:
    """The (non-null) type of a value of ``f``."""
    if f.type == "number":
        bounds = {k: v for k, v in (("ge", f.minimum), ("le", f.maximum)) if v is not None}
        return Annotated[float, Field(**bounds)] if bounds else float
    if f.type == "date":
        return _Date
    if f.type == "enum":
        return Literal[tuple(f.values or [])]  # type: ignore[valid-type]
    if f.type == "list":
        return list[_annotation(f.item_spec, path)]  # type: ignore[misc]
    if f.type == "object":
        return _object_model(f.fields or [], path)
    return str


def _object_model(fields: list[FieldSpec], path: str) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for i, f in enumerate(fields):
        ann = _annotation(f, f"{path}.{f.name}")
        if f.required:
            definitions[f"f{i}"] = (ann, Field(alias=f.name, description=f.description))
        else:
            definitions[f"f{i}"] = (ann | None, Field(default=None, alias=f.name, description=f.description))
    return create_model(_model_name(path), __config__=_CONFIG, **definitions)


def pydantic_model_of(schema: Schema) -> type[BaseModel]:
    """A strict pydantic model of ``schema``'s records (recursive for objects and lists of objects).

    Validate a parsed JSON object with ``model.model_validate(obj)`` (or text with
    ``model_validate_json``); keys are the schema's field names. Use :meth:`Schema.pydantic_model`, which
    caches it.
    """
    return _object_model(schema.fields, "")


# --------------------------------------------------------------------------------------------------
# JSON Schema for engines

# Key order of every node: type first, then its constraints, then the object keywords, so a flat schema's
# JSON Schema reads (and serialises) exactly as the hand-written one did before nesting.
_KEY_ORDER = (
    "type",
    "pattern",
    "enum",
    "minimum",
    "maximum",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "anyOf",
    "description",
)
_DROPPED = frozenset({"title", "default", "$defs"})


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node`` with ``$ref`` (and a one-element ``allOf``, the older spelling) merged in; siblings win."""
    while True:
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **rest}
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            node = {**node["allOf"][0], **rest}
        else:
            return node


def _clean(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "const":
            out["enum"] = [value]  # Literal of one value: the same constraint, one spelling for engines
        elif key == "properties":
            out[key] = {name: _clean(prop, defs) for name, prop in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _clean(value, defs)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_clean(option, defs) for option in value]
        else:
            out[key] = value
    if out.get("type") == "object":
        out.setdefault("properties", {})
        out["required"] = list(out.get("required", []))
        out["additionalProperties"] = False
    ordered = {k: out[k] for k in _KEY_ORDER if k in out}
    ordered.update((k, v) for k, v in out.items() if k not in ordered)
    return ordered


def engine_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema, self-contained and engine-friendly (without ``$schema``).

    References are inlined (no ``$defs``/``$ref``: several decoding engines and API providers do not
    follow them), pydantic's ``title`` and ``default: null`` are dropped (noise in a grammar and in a
    prompt), every object gets ``additionalProperties: false`` and a ``required`` list, and single-value
    ``const`` becomes ``enum``. Properties keep the model's (the schema's) order.
    """
    raw = model.model_json_schema()
    return _clean(raw, raw.get("$defs", {}))
