"""GenerationTask: gold carries per-example phrases, compliance per example by hand, metrics."""

from __future__ import annotations

import pytest

from slmforge.data.generators import product_descriptions as pd
from slmforge.records import PredictionRow
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
