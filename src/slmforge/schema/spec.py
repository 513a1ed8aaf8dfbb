"""Extraction schemas: field specs, JSON Schema export, canonical targets, parsing and normalisation.

An extraction task asks a model to turn a document into a JSON object whose fields are declared in the
config, e.g.::

    schema:
      vendor:   {type: string}
      date:     {type: date}
      total:    {type: number, minimum: 0}
      currency: {type: enum, values: [USD, EUR, GBP]}
      tags:     {type: list, required: false}                 # a list of strings
      buyer:                                                  # a nested object
        type: object
        fields: {name: {type: string}, vat_id: {type: string, required: false}}
      items:                                                  # a list of objects
        type: list
        items:
          type: object
          fields: {description: {type: string}, quantity: {type: number, minimum: 0}}

Field keys: ``type`` (string | number | date | enum | list | object), ``required`` (default true),
``values`` (enum), ``description`` (shown in the prompt), ``fields`` (object: sub-field specs, recursive),
``items`` (list: a type name such as ``number``, or a full spec such as ``{type: object, fields: ...}``;
default ``string``) and ``minimum`` / ``maximum`` (number). With a type name as ``items``, the list's own
``values`` / ``minimum`` / ``maximum`` apply to its items (``{type: list, items: enum, values: [a, b]}``).

This module is the single place that knows what such an object looks like:

- :meth:`Schema.pydantic_model` is the contract, a strict pydantic model generated from the schema
  (:mod:`slmforge.schema.model`); :meth:`Schema.to_json_schema` is that model's JSON Schema made
  self-contained (constrained decoding, schema adherence, API structured outputs all use this one);
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

import copy
import datetime as _dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from slmforge.schema.normalise import _is_empty, parse_date, parse_number

if TYPE_CHECKING:
    from pydantic import BaseModel

FieldType = Literal["string", "number", "date", "enum", "list", "object"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
# What a list may hold (no lists of lists: a list item is compared whole, and a multiset of lists helps no one).
ITEM_TYPES: tuple[str, ...] = ("string", "number", "date", "enum", "object")
_CONFIG_KEYS = ("type", "required", "values", "description", "fields", "items", "minimum", "maximum")
# The shape of a date; used to tell "not written YYYY-MM-DD" from "no such day" in error messages.
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATE_RE = re.compile(DATE_PATTERN)
# A real calendar date in the years 1000-2999: month 01-12, day valid for the month, 29 February only in
# leap years (divisible by 4, centuries only when divisible by 400). The JSON Schema uses it (not the plain
# shape) so that constrained decoding cannot produce 2023-02-30 and a JSON Schema validator agrees with
# parse_output.
CALENDAR_DATE_PATTERN = (
    r"^([12]\d{3}-(0[13578]|1[02])-(0[1-9]|[12]\d|3[01])"
    r"|[12]\d{3}-(0[469]|11)-(0[1-9]|[12]\d|30)"
    r"|[12]\d{3}-02-(0[1-9]|1\d|2[0-8])"
    r"|([12]\d(0[48]|[2468][048]|[13579][26])|(1[26]|2[048])00)-02-29)$"
)
_DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@dataclass
class FieldSpec:
    """One field of an extraction schema (a top-level field, a sub-field of an object, or a list's items).

    ``values`` lists the allowed values of an ``enum`` field (and must be absent for other types);
    ``description`` is optional prose shown to the model by :meth:`Schema.describe`; ``fields`` are the
    sub-fields of an ``object``; ``items`` says what a ``list`` holds (None: strings; its ``name`` and
    ``required`` are not used: list items are never null); ``minimum`` / ``maximum`` bound a ``number``
    (inclusive). ``path`` is where the field sits (``line_items.quantity``), for error messages only.
    """

    name: str
    type: FieldType
    required: bool = True
    values: list[str] | None = None
    description: str | None = None
    fields: list[FieldSpec] | None = None
    items: FieldSpec | None = None
    minimum: float | None = None
    maximum: float | None = None
    path: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"schema field name must be a non-empty string, got {self.name!r}")
        where = f"schema field {(self.path or self.name)!r}"
        if self.type not in FIELD_TYPES:
            raise ValueError(f"{where}: unknown type {self.type!r}; allowed types: {', '.join(FIELD_TYPES)}")
        if not isinstance(self.required, bool):
            raise ValueError(f"{where}: 'required' must be true or false, got {self.required!r}")
        if self.description is not None and not isinstance(self.description, str):
            raise ValueError(f"{where}: 'description' must be a string, got {self.description!r}")
        if self.type == "enum":
            if self.values is None or isinstance(self.values, str) or len(list(self.values)) == 0:
                raise ValueError(f"{where}: type 'enum' needs a non-empty list 'values', got {self.values!r}")
            # Config loaders hand over ListConfig/tuples; store a plain list of strings.
            self.values = [str(v) for v in self.values]
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"{where}: duplicate enum values in {self.values}")
        elif self.values is not None:
            raise ValueError(
                f"{where}: 'values' is only allowed for type 'enum' (this field is {self.type!r})"
            )
        self._check_object(where)
        self._check_list(where)
        self._check_bounds(where)

    def _check_object(self, where: str) -> None:
        if self.type != "object":
            if self.fields is not None:
                raise ValueError(
                    f"{where}: 'fields' is only allowed for type 'object' (this field is {self.type!r})"
                )
            return
        if not self.fields or not all(isinstance(f, FieldSpec) for f in self.fields):
            raise ValueError(
                f"{where}: type 'object' needs a non-empty mapping 'fields' of sub-field specs, "
                f"e.g. {{fields: {{name: {{type: string}}}}}}"
            )
        self.fields = list(self.fields)
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{where}: duplicate sub-field name(s): {dupes}")

    def _check_list(self, where: str) -> None:
        if self.items is None:
            return
        if self.type != "list":
            raise ValueError(
                f"{where}: 'items' is only allowed for type 'list' (this field is {self.type!r})"
            )
        if not isinstance(self.items, FieldSpec):
            raise ValueError(f"{where}: 'items' must be a FieldSpec, got {self.items!r}")
        if self.items.type not in ITEM_TYPES:
            raise ValueError(
                f"{where}: list items cannot be of type {self.items.type!r}; allowed item types: "
                f"{', '.join(ITEM_TYPES)}"
            )

    def _check_bounds(self, where: str) -> None:
        for key in ("minimum", "maximum"):
            bound = getattr(self, key)
            if bound is None:
                continue
            if self.type != "number":
                raise ValueError(
                    f"{where}: {key!r} is only allowed for type 'number' (this field is {self.type!r})"
                )
            if not _is_number(bound) or bound != bound or abs(bound) == float("inf"):
                raise ValueError(f"{where}: {key!r} must be a finite number, got {bound!r}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{where}: minimum {self.minimum} is greater than maximum {self.maximum}")

    @property
    def item_spec(self) -> FieldSpec:
        """What a list field holds: ``items``, or a string spec for a plain ``type: list``."""
        return self.items if self.items is not None else FieldSpec(self.name, "string")


def _child_path(parent: str, name: str) -> str:
    # Sub-fields of list items are named through the list: line_items.quantity, not line_items[].quantity.
    return f"{parent.removesuffix('[]')}.{name}"


def _spec_from_config(name: Any, spec: Any, path: str, *, item: bool = False) -> FieldSpec:
    """One :class:`FieldSpec` from its config (recursive); errors name ``path``."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"schema field {path!r}: spec must be a mapping like {{type: string, required: true}}, "
            f"got {spec!r}; allowed types: {', '.join(FIELD_TYPES)}"
        )
    unknown = sorted(str(k) for k in spec if k not in _CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"schema field {path!r}: unknown key(s) {unknown}; allowed keys: {', '.join(_CONFIG_KEYS)}"
        )
    if "type" not in spec:
        raise ValueError(f"schema field {path!r}: missing 'type'; allowed types: {', '.join(FIELD_TYPES)}")
    if item and "required" in spec:
        raise ValueError(f"schema field {path!r}: list items are never optional; drop 'required'")
    spec = dict(spec)
    kind = spec["type"]
    fields = None
    if spec.get("fields") is not None:
        if kind != "object":
            raise ValueError(
                f"schema field {path!r}: 'fields' is only allowed for type 'object' (this field is {kind!r})"
            )
        sub = spec["fields"]
        if not isinstance(sub, Mapping) or len(sub) == 0:
            raise ValueError(
                f"schema field {path!r}: type 'object' needs a non-empty mapping 'fields' of sub-field specs, "
                f"got {sub!r}"
            )
        fields = [_spec_from_config(k, v, _child_path(path, str(k))) for k, v in sub.items()]
    items = None
    if spec.get("items") is not None:
        if kind != "list":
            raise ValueError(
                f"schema field {path!r}: 'items' is only allowed for type 'list' (this field is {kind!r})"
            )
        item_cfg = spec.pop("items")
        if isinstance(item_cfg, str):
            # Shorthand: {type: list, items: enum, values: [...]}: the list's values/bounds are its items'.
            item_cfg = {
                "type": item_cfg,
                **{k: spec.pop(k) for k in ("values", "minimum", "maximum") if k in spec},
            }
        items = _spec_from_config(name, item_cfg, f"{path}[]", item=True)
    values = spec.get("values")
    return FieldSpec(
        name=str(name),
        type=kind,
        required=spec.get("required", True),
        values=list(values) if values is not None and not isinstance(values, str) else values,
        description=spec.get("description"),
        fields=fields,
        items=items,
        minimum=spec.get("minimum"),
        maximum=spec.get("maximum"),
        path=path,
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

    def __getstate__(self) -> dict[str, Any]:
        # The cached pydantic model is a class made at run time: it cannot be pickled, and is rebuilt on demand.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cached")}

    @classmethod
    def from_config(cls, d: Mapping[str, Mapping[str, Any] | str]) -> Schema:
        """Build a schema from ``{name: {"type": ..., "required": ..., "values": [...]}}`` (see the module doc
        for nested ``object`` / ``list`` specs and number bounds).

        A bare type string (``{"vendor": "string"}``) is accepted as shorthand for a required field.
        Raises ValueError naming the offending field by its path (``line_items.quantity``) on bad input.
        """
        if not isinstance(d, Mapping) or len(d) == 0:
            raise ValueError(
                f"extraction schema must be a non-empty mapping of field name -> spec, got {type(d).__name__}"
            )
        return cls([_spec_from_config(name, spec, str(name)) for name, spec in d.items()])

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r} in schema; fields: {self.names}")

    def pydantic_model(self) -> type[BaseModel]:
        """The strict pydantic model of a record (cached): the one contract that :func:`parse_output`,
        :meth:`to_json_schema` and API structured outputs share (see :mod:`slmforge.schema.model`)."""
        model = self.__dict__.get("_cached_model")
        if model is None:
            from slmforge.schema.model import pydantic_model_of

            model = self.__dict__["_cached_model"] = pydantic_model_of(self)
        return model

    def to_json_schema(self) -> dict[str, Any]:
        """A JSON Schema (draft 7) object for constrained decoding, adherence and API structured output.

        It is the JSON Schema of :meth:`pydantic_model`, self-contained (no ``$ref``) and without
        pydantic's titles and defaults: ``additionalProperties: false`` and a ``required`` list on every
        object, properties in schema order, optional fields as ``anyOf: [<type>, {"type": "null"}]`` (they
        may be omitted or null), dates as strings matching :data:`CALENDAR_DATE_PATTERN`. A fresh copy
        each call: callers add their own bounds to it.
        """
        js = self.__dict__.get("_cached_json_schema")
        if js is None:
            from slmforge.schema.model import engine_json_schema

            js = self.__dict__["_cached_json_schema"] = {
                "$schema": _DRAFT_07,
                **engine_json_schema(self.pydantic_model()),
            }
        return copy.deepcopy(js)

    def describe(self) -> str:
        """One line per field for prompts, e.g. ``- date (date, YYYY-MM-DD, required)``; the sub-fields of
        an object (or of the objects in a list) follow their field, indented by two spaces."""
        return "\n".join(_describe_lines(self.fields, ""))


def _number_kind(f: FieldSpec) -> str:
    if f.minimum is not None and f.maximum is not None:
        return f"{_fmt_bound(f.minimum)} to {_fmt_bound(f.maximum)}"
    if f.minimum is not None:
        return f">= {_fmt_bound(f.minimum)}"
    if f.maximum is not None:
        return f"<= {_fmt_bound(f.maximum)}"
    return ""


def _fmt_bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _kind(f: FieldSpec) -> str:
    """What a field holds, in words (flat types word for word as before nesting: prompts of trained models)."""
    if f.type == "date":
        return "date, YYYY-MM-DD"
    if f.type == "enum":
        return "one of: " + " | ".join(f.values or [])
    if f.type == "number":
        bounds = _number_kind(f)
        return f"number, {bounds}" if bounds else "number"
    if f.type == "object":
        return "object with these fields"
    if f.type == "list":
        item = f.item_spec
        if item.type == "string":
            return "list of strings"
        if item.type == "object":
            return "list of objects with these fields"
        if item.type == "date":
            return "list of dates, YYYY-MM-DD"
        if item.type == "enum":
            return "list, each one of: " + " | ".join(item.values or [])
        bounds = _number_kind(item)
        return f"list of numbers, each {bounds}" if bounds else "list of numbers"
    return f.type


def _describe_lines(fields: list[FieldSpec], indent: str) -> list[str]:
    lines = []
    for f in fields:
        line = f"{indent}- {f.name} ({_kind(f)}, {'required' if f.required else 'optional'})"
        if f.description:
            line += f": {f.description}"
        lines.append(line)
        sub = f.fields if f.type == "object" else f.item_spec.fields if f.type == "list" else None
        if sub:
            lines += _describe_lines(sub, indent + "  ")
    return lines


# --------------------------------------------------------------------------------------------------
# Canonical targets


def canonical_json(record: Mapping[str, Any], schema: Schema, *, dayfirst: bool = True) -> str:
    """The one spelling of ``record`` used as a training target and for display.

    Keys follow schema order (at every level), only schema keys are kept, separators are compact and
    non-ASCII text is kept as is. Values are coerced to the schema's types so the target always passes
    :func:`parse_output`: number strings ("1,234.50") become JSON numbers, dates become ISO strings,
    enum values take the schema's spelling (matched case-insensitively), in nested objects and list items
    too. Optional fields (and sub-fields) that are absent, null or blank are omitted, as is an optional
    object left with no sub-field; a required list field that is absent becomes ``[]``. Raises ValueError
    (naming the field's path, e.g. ``items[1].quantity``) for a missing required field, a value that cannot
    be coerced or a number outside its bounds, because a broken gold record would silently teach the wrong
    format.
    """
    out = _canonical_object(record, schema.fields, "", dayfirst)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _is_blank(value: Any) -> bool:
    return _is_empty(value) or (isinstance(value, Mapping) and not value)


def _canonical_object(
    record: Mapping[str, Any], fields: list[FieldSpec], prefix: str, dayfirst: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        path = f"{prefix}.{f.name}" if prefix else f.name
        value = record.get(f.name)
        if f.type == "list" and isinstance(value, list | tuple):
            pass  # an explicit empty list is a real answer ("no items") and is kept
        elif f.type == "list" and value is None and f.required:
            value = []
        elif _is_empty(value) or (f.type == "object" and _is_blank(value)):
            if f.required:
                raise ValueError(
                    f"canonical_json: required field {path!r} is missing or empty in {dict(record)!r}"
                )
            continue
        coerced = _coerce(value, f, dayfirst, path)
        if f.type == "object" and not coerced and not f.required:
            continue  # an optional object with nothing in it says nothing
        out[f.name] = coerced
    return out


def _coerce(value: Any, f: FieldSpec, dayfirst: bool, path: str) -> Any:
    if f.type == "number":
        num = parse_number(value)
        if num is None:
            raise ValueError(f"canonical_json: field {path!r}: {value!r} is not a number")
        if f.minimum is not None and num < f.minimum:
            raise ValueError(f"canonical_json: field {path!r}: {value!r} is below the minimum {f.minimum}")
        if f.maximum is not None and num > f.maximum:
            raise ValueError(f"canonical_json: field {path!r}: {value!r} is above the maximum {f.maximum}")
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
            raise ValueError(f"canonical_json: field {path!r}: cannot read {value!r} as a date")
        return d.isoformat()
    if f.type == "enum":
        s = str(value)
        if s in (f.values or []):
            return s
        folded = {v.casefold(): v for v in f.values or []}
        if s.strip().casefold() in folded:
            return folded[s.strip().casefold()]
        raise ValueError(f"canonical_json: field {path!r}: {value!r} is not one of {f.values}")
    if f.type == "object":
        if not isinstance(value, Mapping):
            raise ValueError(f"canonical_json: field {path!r}: expected an object, got {value!r}")
        return _canonical_object(value, f.fields or [], path, dayfirst)
    if f.type == "list":
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else [value]
        item = f.item_spec
        if item.type == "string":
            return [str(v) for v in items if not _is_empty(v)]
        return [_coerce(v, item, dayfirst, f"{path}[{i}]") for i, v in enumerate(items) if not _is_blank(v)]
    return value if isinstance(value, str) else str(value)


def _has_decimal_point(value: Any) -> bool:
    return isinstance(value, float) or (isinstance(value, str) and ("." in value or "," in value[-3:]))
