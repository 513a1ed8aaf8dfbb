"""Output grammars: what constrained decoding may produce, as an llguidance grammar plus a length bound.

A task says what its outputs look like once, here, and the decoding engine
(:mod:`slmforge.prediction.constrained`) turns that into allowed-token masks. Three sources:

- an extraction schema: its JSON Schema (:meth:`Schema.to_json_schema`, the same one schema adherence and
  API structured outputs use), with the bounds that make decoding terminate (:func:`bounded_json_schema`);
- a Lark grammar (llguidance's dialect: regular expressions with ``&`` intersection and ``~`` negation
  inside tokens), e.g. text constraints of a generation task or spans copied from the input;
- any JSON Schema.

Why bounds. A constrained model can loop forever *inside* the format: an untrained or confused model
writes an endless string, number or list, greedy decoding never reaches the closing brace within
``max_new_tokens``, and the output is truncated, invalid JSON. :func:`bounded_json_schema` therefore caps
free strings (``maxLength``), lists (``maxItems``) and numbers (at most ``max_integer_digits`` digits before
the point and ``max_fraction_digits`` after it, through ``minimum``/``maximum``/``multipleOf``: llguidance
turns them into a finite number grammar, and no exponents). Every output is then finite, and
:func:`max_output_bytes` is its worst-case length in bytes, which bounds its tokens (every token adds at
least one byte), so ``max_new_tokens`` of that size guarantees a complete output even from an untrained
model. A trained model stops far earlier. The price: a value longer than a bound cannot be produced.
Predictors take the string and list bounds from the training data (``ExtractionTask.value_bounds``).

Whitespace is not flexible (compact JSON: ``{"a":1,"b":[2]}``), the spelling of the canonical training
targets, and keys come in schema order.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from slmforge.schema.spec import Schema

# llguidance options for JSON Schemas: compact JSON, the canonical targets' spelling.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False}


@dataclass(frozen=True)
class OutputGrammar:
    """An llguidance grammar (serialised, as ``LLMatcher`` takes it) and what it is.

    ``max_bytes``: the longest output the grammar allows, in UTF-8 bytes (None: unbounded, e.g. free text
    without a word bound); ``source``: ``json_schema`` | ``lark``; ``summary``: what a record keeps of it;
    ``limits``: ``llguidance.LLParserLimits`` fields a grammar needs beyond the engine's defaults (text
    grammars that intersect word bounds with phrases need more lexer fuel; see
    :mod:`slmforge.schema.text_grammar`).
    """

    grammar: str
    max_bytes: int | None
    source: str
    summary: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)


def json_schema_grammar(
    json_schema: dict[str, Any], max_bytes: int | None = None, **summary: Any
) -> OutputGrammar:
    """An :class:`OutputGrammar` for any JSON Schema (compact JSON, keys in schema order)."""
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(json_schema, defaults=JSON_OPTIONS)
    return OutputGrammar(grammar, max_bytes, "json_schema", dict(summary))


def lark_grammar(
    lark: str, max_bytes: int | None = None, limits: dict[str, int] | None = None, **summary: Any
) -> OutputGrammar:
    """An :class:`OutputGrammar` from a Lark grammar in llguidance's dialect (``start`` is the output)."""
    from llguidance import LLMatcher

    return OutputGrammar(
        LLMatcher.grammar_from_lark(lark), max_bytes, "lark", dict(summary), dict(limits or {})
    )


# --------------------------------------------------------------------------------------------------
# Bounded JSON Schemas for extraction


def bounded_json_schema(
    schema: Schema | dict[str, Any],
    max_string_chars: int = 128,
    max_list_items: int = 16,
    max_integer_digits: int = 15,
    max_fraction_digits: int = 6,
) -> dict[str, Any]:
    """The schema's JSON Schema with the bounds that make constrained decoding terminate (module doc).

    Bounds the schema already has are kept where tighter (a field's own ``maximum`` stays). Strings with a
    ``pattern`` or an ``enum`` are finite already. The input is not modified.
    """
    js = copy.deepcopy(schema.to_json_schema() if isinstance(schema, Schema) else schema)
    limit = float(10**max_integer_digits - 1)

    def bound(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                bound(option)
        kind = node.get("type")
        if kind == "string" and "enum" not in node and "pattern" not in node and "const" not in node:
            node["maxLength"] = min(node.get("maxLength", max_string_chars), max_string_chars)
        elif kind == "array":
            node["maxItems"] = min(node.get("maxItems", max_list_items), max_list_items)
            bound(node.get("items"))
        elif kind == "object":
            for prop in node.get("properties", {}).values():
                bound(prop)
        elif kind in ("number", "integer"):
            node["minimum"] = max(node.get("minimum", -limit), -limit)
            node["maximum"] = min(node.get("maximum", limit), limit)
            if kind == "number" and "multipleOf" not in node:
                node["multipleOf"] = 10.0**-max_fraction_digits

    bound(js)
    js.pop("$schema", None)
    return js


def max_output_bytes(js: dict[str, Any], max_integer_digits: int = 15, max_fraction_digits: int = 6) -> int:
    """Worst-case length in bytes of compact JSON valid under the bounded JSON Schema ``js``.

    A string character takes at most 6 bytes (a ``\\uXXXX`` escape); a number at most a sign, its digits
    and a point. Raises ValueError for a part that is not bounded (see :func:`bounded_json_schema`).
    """

    def size(node: dict[str, Any]) -> int:
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            return max(size(option) for option in options)
        if "const" in node:
            return len(json.dumps(node["const"], ensure_ascii=False).encode())
        if "enum" in node:
            return max(len(json.dumps(v, ensure_ascii=False).encode()) for v in node["enum"])
        kind = node.get("type")
        if kind == "null":
            return 4
        if kind == "boolean":
            return 5
        if kind in ("number", "integer"):
            return 1 + max_integer_digits + (1 + max_fraction_digits if kind == "number" else 0)
        if kind == "string":
            if "pattern" in node and "maxLength" not in node:
                return 2 + 6 * 64  # patterns in our schemas (dates) are far shorter
            if "maxLength" not in node:
                raise ValueError(f"string without maxLength in {node}: unbounded output")
            return 2 + 6 * int(node["maxLength"])
        if kind == "array":
            if "maxItems" not in node:
                raise ValueError(f"array without maxItems in {node}: unbounded output")
            return 2 + int(node["maxItems"]) * (size(node.get("items", {"type": "string"})) + 1)
        if kind == "object":
            props = node.get("properties", {})
            return 2 + sum(
                len(json.dumps(k, ensure_ascii=False).encode()) + 2 + size(v) for k, v in props.items()
            )
        raise ValueError(f"cannot bound the output length of {node}")

    return size(js)


def schema_grammar(schema: Schema, **bounds: int) -> OutputGrammar:
    """The constrained-decoding grammar of an extraction schema: its bounded JSON Schema (module doc).

    ``bounds``: ``max_string_chars``, ``max_list_items``, ``max_integer_digits``, ``max_fraction_digits``.
    """
    digits = {k: bounds[k] for k in ("max_integer_digits", "max_fraction_digits") if k in bounds}
    js = bounded_json_schema(schema, **bounds)
    return json_schema_grammar(js, max_output_bytes(js, **digits), kind="json_schema", **bounds)
