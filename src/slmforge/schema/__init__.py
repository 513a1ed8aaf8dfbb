"""Extraction schemas: field specs and JSON Schema (:mod:`.spec`), output parsing (:mod:`.parse`), value
normalisation (:mod:`.normalise`) and the one JSON scanner (:mod:`.scanner`). Below both ``tasks`` and
``metrics``: neither imports the other for schema work."""

from slmforge.schema.normalise import Normalization, normalize_value, parse_date, parse_number
from slmforge.schema.parse import ParsedOutput, parse_output
from slmforge.schema.scanner import JsonEndScanner
from slmforge.schema.spec import DATE_PATTERN, FIELD_TYPES, FieldSpec, FieldType, Schema, canonical_json

__all__ = [
    "DATE_PATTERN",
    "FIELD_TYPES",
    "FieldSpec",
    "FieldType",
    "JsonEndScanner",
    "Normalization",
    "ParsedOutput",
    "Schema",
    "canonical_json",
    "normalize_value",
    "parse_date",
    "parse_number",
    "parse_output",
]
