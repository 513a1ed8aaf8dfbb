"""GenerationTask: gold carries per-example phrases, compliance per example by hand, metrics."""

from __future__ import annotations

import pytest

from slmforge.data.generators import product_descriptions as pd
from slmforge.records import PredictionRow
from slmforge.schema.text_grammar import phrase_regex
from slmforge.tasks.base import TaskError
from slmforge.tasks.generation import GenerationTask

CONSTRAINTS = {"regex": pd.TEMPLATE_REGEX, "max_words": 60, "forbidden_phrases": ["cheap"]}


def _row(pred: str, gold: dict | str) -> PredictionRow:
    return PredictionRow(
        id="x", text="", gold=gold, pred=pred, confidence=None, correct=0.0, latency_ms=0.0, raw_output=pred
    )


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    return pd.generate(4, seed=0)


def test_gold_target_and_prompt(examples: list[dict]) -> None:
    task = GenerationTask(CONSTRAINTS)
    task.setup(examples, {"test": examples})
    ex = examples[0]
    name, price = ex["required_phrases"]
    assert task.target(ex) == ex["output"]
    assert task.gold(ex) == {"output": ex["output"], "required_phrases": [name, price]}
    prompt = task.user_content(ex)
    assert f"Include these exact phrases: {name}; {price}" in prompt
    assert "Use at most 60 words." in prompt and "Never use these phrases: cheap" in prompt
    assert prompt.endswith("Input:\n" + ex["text"])
    quiet = GenerationTask(CONSTRAINTS, constraints_in_prompt=False).user_content(ex)
    assert "Include" not in quiet
    assert task.parse("  text \n") == ("text", {})
    assert task.primary_metric == "rougeL"


def test_compliance_per_example_by_hand(examples: list[dict]) -> None:
    task = GenerationTask(CONSTRAINTS)
    ex = examples[0]
    gold = task.gold(ex)
    name, price = ex["required_phrases"]
    assert task.correct(ex["output"], gold) == 1.0
    assert task.row_details(ex["output"], gold) == {
        "constraints": {"required_phrases": True, "regex": True, "length": True, "forbidden_phrases": True}
    }
    # Right template, wrong product: only the per-example phrase check fails.
    other = f"Meet the Other Thing. Only {price}."
    assert task.constraint_results(other, gold) == {
        "required_phrases": False,
        "regex": True,
        "length": True,
        "forbidden_phrases": True,
    }
    assert task.correct(other, gold) == 0.0
    # Names the product and price but breaks the template and uses a forbidden word.
    loose = f"The {name} is cheap at {price}"
    assert task.constraint_results(loose, gold) == {
        "required_phrases": True,
        "regex": False,
        "length": True,
        "forbidden_phrases": False,
    }
    assert task.correct(loose, gold) == 0.0
    assert task.correct(None, gold) == 0.0


def test_without_constraints_correct_is_exact_match(examples: list[dict]) -> None:
    task = GenerationTask(required_phrases_field=None)
    ex = examples[1]
    gold = task.gold(ex)
    assert gold["required_phrases"] == []
    assert task.correct("  " + ex["output"].replace(" ", "  ") + "\n", gold) == 1.0
    assert task.correct(ex["output"] + " Extra.", gold) == 0.0
    assert task.correct(ex["output"], ex["output"]) == 1.0  # a bare reference string works too


def test_compute_metrics(examples: list[dict]) -> None:
    task = GenerationTask(CONSTRAINTS)
    perfect = [_row(ex["output"], task.gold(ex)) for ex in examples]
    m = task.compute_metrics(perfect)
    assert m["n"] == 4
    assert m["rougeL"] == pytest.approx(1.0)
    assert m["exact_match"] == 1.0 and m["token_accuracy"] == 1.0
    assert m["compliance"] == 1.0
    assert m["per_constraint"] == {
        "required_phrases": 1.0,
        "regex": 1.0,
        "length": 1.0,
        "forbidden_phrases": 1.0,
    }

    swapped = [_row(examples[(i + 1) % 4]["output"], task.gold(ex)) for i, ex in enumerate(examples)]
    m = task.compute_metrics([*perfect[:2], *swapped[2:]])
    assert m["exact_match"] == 0.5
    assert 0.0 < m["rougeL"] < 1.0
    # Swapped outputs keep the template but name another product (unless the draw repeats one).
    expected = sum(task.correct(r.pred, r.gold) for r in [*perfect[:2], *swapped[2:]]) / 4
    assert m["compliance"] == pytest.approx(expected)
    assert m["per_constraint"]["regex"] == 1.0
    assert task.compute_metrics([])["n"] == 0


def test_setup_and_config_errors(examples: list[dict]) -> None:
    task = GenerationTask()
    with pytest.raises(TaskError, match=r"validation split, row 1 \(id=b\): 'output' must be"):
        task.setup(examples, {"validation": [examples[0], {"id": "b", "text": "t"}]})
    with pytest.raises(TaskError, match="must be a list of phrases"):
        task.setup([{"id": "c", "text": "t", "output": "o", "required_phrases": "o"}], {})
    with pytest.raises(TaskError, match="unknown key"):
        GenerationTask({"regexp": "x"})
    with pytest.raises(TaskError, match="not a valid regular expression"):
        GenerationTask({"regex": "("})
    with pytest.raises(TaskError, match="list of phrases"):
        GenerationTask({"required_phrases": "Meet the"})
    assert GenerationTask({"required_phrases": None}).constraints.required_phrases == []


# ---------------------------------------------------------------------------------------------------------
# Constrained decoding: the task's output grammar (slmforge.schema.text_grammar)


def test_protocol_offers_a_per_row_grammar_with_the_examples_phrases(examples: list[dict]) -> None:
    task = GenerationTask(CONSTRAINTS)
    task.setup(examples, {})
    protocol = task.protocol()
    assert protocol.output_grammar == task.output_grammar and protocol.grammar_per_row is True
    assert GenerationTask(CONSTRAINTS, required_phrases_field=None).protocol().grammar_per_row is False
    longest = max(len(w) for ex in examples for w in ex["output"].split())
    assert task.grammar_bounds() == {"max_word_chars": max(16, 2 * longest)}  # max_words is configured
    g = task.output_grammar(examples[0], {})
    assert g.source == "lark" and g.summary["max_words"] == 60
    assert g.summary["expressed"] == ["length", "required_phrases", "regex", "forbidden_phrases"]
    assert all(phrase_regex(p, case_sensitive=False) in g.grammar for p in examples[0]["required_phrases"])
    assert task.output_grammar(examples[0], {}) is g  # built once
    assert task.output_grammar(examples[1], {}).grammar != g.grammar  # another row, other phrases
    # Options override the learned bounds; null means no bound; unknown options are named.
    assert task.output_grammar(examples[0], {"max_word_chars": 20}).summary["max_word_chars"] >= 20
    assert task.output_grammar(examples[0], {"max_word_chars": None}).max_bytes is None
    with pytest.raises(TaskError, match=r"\['max_string_chars'\] are not known"):
        task.output_grammar(examples[0], {"max_string_chars": 8})
    # Without a configured max_words the grammar's word bound comes from the training outputs.
    free = GenerationTask({"forbidden_phrases": ["cheap"]}, required_phrases_field=None)
    free.setup(examples, {})
    most = max(len(ex["output"].split()) for ex in examples)
    assert free.grammar_bounds()["max_words"] == max(16, 2 * most)
    assert free.output_grammar(None, {}).summary["max_words"] == max(16, 2 * most)
    assert "grammar_bounds" in task.describe()


def _compliance(task: GenerationTask, rows: list[dict], preds: list) -> float:
    return sum(task.correct(p.pred, task.gold(ex)) for ex, p in zip(rows, preds, strict=True)) / len(rows)


@pytest.fixture(scope="module")
def built_in_generation():
    """The built-in generation task (conf/task/generation.yaml), its product_descriptions data and a
    random tiny model whose greedy outputs are far from the house style (initializer_range 0.3: peaked)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from slmforge.config import config_dir
    from slmforge.modeling.loading import ModelSpec, load_model

    task = instantiate(OmegaConf.load(f"{config_dir()}/task/generation.yaml"))
    train, test = pd.generate(50, seed=0), pd.generate(50, seed=1)
    task.setup(train, {"test": test})
    lm = load_model(ModelSpec(name="tiny", source="tiny", tiny_config={"initializer_range": 0.3}))
    task.set_length_bound(lm.tokenizer, train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield task, test, lm
    torch.set_num_threads(threads)


def test_random_model_complies_on_every_row_only_when_constrained(built_in_generation) -> None:
    from slmforge.prediction.generation import GenerationPredictor

    task, test, lm = built_in_generation
    free = GenerationPredictor(lm.model, lm.tokenizer, task, batch_size=16).predict(test)
    assert _compliance(task, test, free) < 0.1  # the random model knows nothing of the house style

    predictor = GenerationPredictor(lm.model, lm.tokenizer, task, batch_size=16, constrained=True)
    preds = predictor.predict(test)
    assert len(preds) == len(test) >= 50
    failures = [
        (p.pred, task.constraint_results(p.pred, task.gold(ex)))
        for ex, p in zip(test, preds, strict=True)
        if task.correct(p.pred, task.gold(ex)) < 1
    ]
    assert failures == []
    assert all(p.details["stop_reason"] == "eos" for p in preds)  # every row finished inside the bound
    described = predictor.describe()["constraint"]
    assert described["per_row"] and described["kind"] == "text" and described["llguidance_limits"]
