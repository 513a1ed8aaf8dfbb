"""Extraction schemas: field specs, canonical targets and the JSON Schema (:mod:`.spec`), the strict pydantic
model generated from a schema (:mod:`.model`), output parsing (:mod:`.parse`), value normalisation
(:mod:`.normalise`) and the one JSON scanner (:mod:`.scanner`). Below both ``tasks`` and ``metrics``:
neither imports the other for schema work."""

from slmforge.schema.model import engine_json_schema, pydantic_model_of
from slmforge.schema.normalise import Normalization, normalize_value, parse_date, parse_number
from slmforge.schema.parse import ParsedOutput, parse_output
from slmforge.schema.scanner import JsonEndScanner
from slmforge.schema.spec import (
    CALENDAR_DATE_PATTERN,
    DATE_PATTERN,
    FIELD_TYPES,
    ITEM_TYPES,
    FieldSpec,
    FieldType,
    Schema,
    canonical_json,
)

__all__ = [
    "CALENDAR_DATE_PATTERN",
    "DATE_PATTERN",
    "FIELD_TYPES",
    "ITEM_TYPES",
    "FieldSpec",
    "FieldType",
    "JsonEndScanner",
    "Normalization",
    "ParsedOutput",
    "Schema",
    "canonical_json",
    "engine_json_schema",
    "normalize_value",
    "parse_date",
    "parse_number",
    "parse_output",
    "pydantic_model_of",
]
