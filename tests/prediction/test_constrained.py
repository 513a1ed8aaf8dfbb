"""Schema-constrained decoding: always valid, schema-matching JSON, even from an untrained model."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import torch
from lmformatenforcer import JsonSchemaParser

from slmforge.data.generators import invoices
from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.constrained import (
    CALENDAR_DATE_PATTERN,
    JsonConstraint,
    JsonSchemaLogitsProcessor,
    _StrictJsonParser,
    constrained_json_schema,
    max_output_chars,
)
from slmforge.prediction.generation import GenerationPredictor, json_object_end
from slmforge.schema import Schema, parse_output
from slmforge.tasks.extraction import ExtractionTask

# Every field type, required and optional (optional ones are anyOf [..., null] in the JSON Schema).
ALL_TYPES = {
    "name": {"type": "string", "required": False},
    "when": {"type": "date", "required": False},
    "amount": {"type": "number", "required": False},
    "kind": {"type": "enum", "values": ["a", "bb", "a b"], "required": False},
    "tags": {"type": "list"},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_constrained_json_schema_bounds_everything() -> None:
    js = constrained_json_schema(Schema.from_config(invoices.SCHEMA), max_string_chars=20, max_list_items=3)
    props = js["properties"]
    assert "$schema" not in js and js["additionalProperties"] is False
    assert props["vendor"] == {"type": "string", "maxLength": 20}
    assert props["date"] == {"type": "string", "pattern": CALENDAR_DATE_PATTERN}
    assert props["currency"] == {"type": "string", "enum": ["USD", "EUR", "GBP"]}
    assert props["total"] == {"type": "number"}
    items = props["line_items"]["anyOf"][0]
    assert items == {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3}
    # the schema itself is not modified
    assert "maxLength" not in json.dumps(Schema.from_config(invoices.SCHEMA).to_json_schema())


def test_calendar_pattern_is_exact() -> None:
    pattern = re.compile(CALENDAR_DATE_PATTERN)
    for year in (1000, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 2999):
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    dt.date(year, month, day)
                    valid = True
                except ValueError:
                    valid = False
                assert bool(pattern.match(text)) == valid, text


def _feed(text: str, schema: dict, whitespace: int = 0) -> str:
    """Feed ``text`` character by character; "ok" or why it was rejected."""
    js = constrained_json_schema(Schema.from_config(schema))
    parser = _StrictJsonParser(JsonSchemaParser(js), 24, whitespace)
    for i, ch in enumerate(text):
        if ch not in parser.get_allowed_characters():
            return f"rejected {ch!r} at {i}"
        parser = parser.add_character(ch)
    return "ok" if parser.can_end() else "incomplete"


@pytest.mark.parametrize(
    ("number", "verdict"),
    [
        ("0.5}", "ok"),
        ("-12.50}", "ok"),
        ("1.5E-3}", "ok"),
        ("7}", "ok"),
        ("0.e9}", "rejected 'e'"),  # lm-format-enforcer alone lets these through
        ("-0.}", "rejected '}'"),
        ("01}", "rejected '1'"),
        ("1.}", "rejected '}'"),
        ("9" * 30 + "}", "rejected '9' at 33"),  # numbers are capped at 24 characters
    ],
)
def test_strict_parser_numbers(number: str, verdict: str) -> None:
    assert _feed('{"total":' + number, {"total": "number"}).startswith(verdict)


def test_strict_parser_rejects_trailing_commas_and_bad_dates() -> None:
    assert _feed('{"name":"x","tags":["a"]}', ALL_TYPES) == "ok"
    assert _feed('{"tags":[],"name":null,"when":"2024-02-29","amount":null,"kind":"a b"}', ALL_TYPES) == "ok"
    assert _feed('{"tags":[],}', ALL_TYPES).startswith("rejected '}'")
    assert _feed('{"tags":["a",]', ALL_TYPES).startswith("rejected ']'")
    assert _feed('{"tags":[],"when":"2023-02-29"}', ALL_TYPES).startswith("rejected '9'")
    assert _feed('{"tags":[],"when":"0000-01-01"}', ALL_TYPES).startswith("rejected '0'")
    assert _feed('{"tags":[],"name":"a\\"b\\n x"}', ALL_TYPES) == "ok"
    # \uXXXX escapes would break the length bound; every character can be written as itself instead.
    assert _feed('{"tags":[],"name":"\\u00e9"}', ALL_TYPES).startswith("rejected 'u'")


def test_strict_parser_whitespace() -> None:
    compact = '{"name":"a  b","tags":["x y"]}'
    assert _feed(compact, ALL_TYPES) == "ok"  # spaces inside strings are content
    assert _feed('{"name": "a"}', ALL_TYPES).startswith("rejected ' ' at 8")  # default: compact JSON
    assert _feed(' {"tags":[]}', ALL_TYPES).startswith("rejected ' ' at 0")
    assert _feed('{ "tags" : [ ] }', ALL_TYPES, whitespace=1) == "ok"
    assert _feed('{  "tags":[]}', ALL_TYPES, whitespace=1).startswith("rejected ' ' at 2")


@pytest.mark.parametrize(
    ("schema", "init"),
    [(invoices.SCHEMA, 0.02), (invoices.SCHEMA, 0.3), (ALL_TYPES, 1.0)],
    ids=["invoices-default-init", "invoices-wide-init", "all-types"],
)
def test_untrained_model_always_gives_valid_json(schema: dict, init: float) -> None:
    """Constrained decoding on the tiny untrained model: every output parses and matches the schema,
    and stops within the worst-case length. (Unconstrained, the same model writes no JSON at all.)"""
    lm = load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": init}))
    task = ExtractionTask(schema)
    examples = invoices.generate(6, seed=2)
    options = {"max_string_chars": 16, "max_list_items": 3}
    bound = max_output_chars(task.schema, **options)
    predictor = GenerationPredictor(
        lm.model,
        lm.tokenizer,
        task,
        batch_size=6,
        max_new_tokens=bound,
        constrained=True,
        constraint_options=options,
    )
    preds = predictor.predict(examples)
    for p in preds:
        parsed = parse_output(p.raw_output or "", task.schema)
        assert parsed.schema_ok, (parsed.errors, p.raw_output)
        assert p.details["stop_reason"] == "json_end"
        assert p.completion_tokens <= bound
        assert p.pred == parsed.parsed
        assert p.confidence is not None and 0.0 <= p.confidence <= 1.0
        assert p.details["model_logprob"] <= p.details["logprob"] + 1e-4  # renormalising only raises it
    assert predictor.describe()["decoding"] == "constrained_greedy"

    free = GenerationPredictor(lm.model, lm.tokenizer, task, batch_size=6, max_new_tokens=32)
    assert not any(p.details["schema_ok"] for p in free.predict(examples))


def test_bounds_default_to_training_data() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    task = ExtractionTask(invoices.SCHEMA)
    task.setup(invoices.generate(10, seed=0), {})
    predictor = GenerationPredictor(lm.model, lm.tokenizer, task, constrained=True)
    props = predictor.constraint.json_schema["properties"]  # type: ignore[union-attr]
    assert props["vendor"]["maxLength"] == task.value_bounds()["max_string_chars"]
    override = GenerationPredictor(
        lm.model, lm.tokenizer, task, constrained=True, constraint_options={"max_string_chars": 7}
    )
    assert override.constraint.json_schema["properties"]["vendor"]["maxLength"] == 7  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="extraction schema"):
        from slmforge.tasks.generation import GenerationTask

        GenerationPredictor(lm.model, lm.tokenizer, GenerationTask(), constrained=True)


def test_logits_processor_with_hf_generate() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": 0.3}))
    tok, task = lm.tokenizer, ExtractionTask(invoices.SCHEMA)
    options = {"max_string_chars": 12, "max_list_items": 2}
    constraint = JsonConstraint.for_schema(tok, task.schema, **options)
    prompts = [
        tok("Extract: " + t, add_special_tokens=False)["input_ids"] for t in ("a b c", "longer text x")
    ]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    out = lm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_output_chars(task.schema, **options) + 4,
        do_sample=False,
        logits_processor=[JsonSchemaLogitsProcessor(constraint)],
        pad_token_id=tok.pad_token_id,
    )
    for row in out[:, width:]:
        text = tok.decode(row, skip_special_tokens=True)
        end = json_object_end(text)
        assert end is not None, text
        assert parse_output(text[:end], task.schema).schema_ok, text
        assert text[end:].strip() == ""  # after the object only whitespace, then EOS
