"""Generation metrics: constraint compliance, exact match, token accuracy and ROUGE-L by hand."""

from __future__ import annotations

import math

import pytest

from slmforge.metrics.generation import (
    ConstraintCompliance,
    Constraints,
    GenerationMetrics,
    check_constraints,
    token_accuracy,
)

CONSTRAINTS = Constraints(
    required_phrases=["refund"], regex=r"^Dear ", min_words=3, max_words=8, forbidden_phrases=["guarantee"]
)
TEXTS = [
    "Dear customer, your refund is on its way.",  # 8 words; meets everything (with extra "way")
    "Dear customer, we guarantee a REFUND.",  # forbidden phrase (phrases match case-insensitively)
    "Hello, refund issued.",  # regex fails; its extra phrase "order 123" is missing
    "Dear sir",  # no "refund"; 2 words < 3
]
EXTRA = [["way"], [], ["order 123"], []]


def test_check_constraints_per_example() -> None:
    results = [check_constraints(t, CONSTRAINTS, e) for t, e in zip(TEXTS, EXTRA, strict=True)]
    assert results == [
        {"required_phrases": True, "regex": True, "length": True, "forbidden_phrases": True},
        {"required_phrases": True, "regex": True, "length": True, "forbidden_phrases": False},
        {"required_phrases": False, "regex": False, "length": True, "forbidden_phrases": True},
        {"required_phrases": False, "regex": True, "length": False, "forbidden_phrases": True},
    ]
    # Only configured constraints appear; case-sensitive matching is opt-in.
    assert check_constraints("x", Constraints(max_words=3)) == {"length": True}
    assert check_constraints("REFUND", Constraints(required_phrases=["refund"], case_sensitive=True)) == {
        "required_phrases": False
    }
    assert check_constraints("anything", Constraints()) == {}


def test_constraint_compliance_rates_accumulate() -> None:
    m = ConstraintCompliance(CONSTRAINTS)
    m.update(TEXTS[:1], EXTRA[:1])
    m.update(TEXTS[1:], EXTRA[1:])
    # required: T T F F; regex: T T F T; length: T T T F; forbidden: T F T T; all: only the first.
    assert m.compute() == {
        "compliance": 0.25,
        "per_constraint": {"required_phrases": 0.5, "regex": 0.75, "length": 0.75, "forbidden_phrases": 0.75},
    }


def test_per_example_required_only_counts_where_given() -> None:
    m = ConstraintCompliance()
    m.update(["x y", "c"], [["a"], []])
    # "required_phrases" is checked on the first example only (0/1); the second has no constraint.
    assert m.compute() == {"compliance": 0.5, "per_constraint": {"required_phrases": 0.0}}
    with pytest.raises(ValueError, match="2 predictions but 1"):
        m.update(["a", "b"], [["a"]])


def test_bad_constraints_rejected() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        Constraints(regex="(unclosed")
    with pytest.raises(ValueError, match="min_words"):
        Constraints(min_words=5, max_words=2)


def test_token_accuracy_by_hand() -> None:
    assert token_accuracy("a quick brown fox", "a quick brown dog") == 0.75
    assert token_accuracy("hello world", "world hello there") == 0.0  # position-wise, / longer length 3
    assert token_accuracy("a b", "a b c d") == 0.5
    assert token_accuracy("", "") == 1.0
    assert token_accuracy("", "x") == 0.0


PREDS = ["the cat sat on the mat", "a quick  brown fox", "hello world"]
REFS = ["the cat sat on the mat", "a quick brown dog", "world hello there"]


def test_generation_metrics_by_hand() -> None:
    m = GenerationMetrics(Constraints(max_words=4))
    m.update(PREDS, REFS)
    out = m.compute()
    assert out["n"] == 3
    assert out["exact_match"] == pytest.approx(1 / 3)  # only the first (whitespace is collapsed)
    assert out["token_accuracy"] == pytest.approx((1 + 0.75 + 0) / 3)
    # ROUGE-L F per example: 1; LCS 3 of 4/4 -> 0.75; LCS 1, P=1/2, R=1/3 -> F=0.4.
    assert out["rougeL"] == pytest.approx((1 + 0.75 + 0.4) / 3, abs=1e-5)
    assert 0 < out["chrf"] < 1 and 0 < out["bleu"] < 1
    # max 4 words: 6 words fails, 4 and 2 pass.
    assert out["compliance"] == pytest.approx(2 / 3)
    assert out["per_constraint"] == {"length": pytest.approx(2 / 3)}


def test_identical_strings_score_one() -> None:
    m = GenerationMetrics()
    texts = ["the quick brown fox jumps over the lazy dog", "Refunds take five business days."]
    m.update(texts, texts)
    out = m.compute()
    for k in ("rougeL", "chrf", "bleu", "exact_match", "token_accuracy", "compliance"):
        assert out[k] == pytest.approx(1.0), k
    assert out["per_constraint"] == {}


def test_accumulation_and_reset() -> None:
    once = GenerationMetrics(CONSTRAINTS)
    once.update(PREDS + TEXTS, REFS + TEXTS)
    chunked = GenerationMetrics(CONSTRAINTS)
    chunked.update(PREDS[:2], REFS[:2])
    chunked.update(PREDS[2:] + TEXTS, REFS[2:] + TEXTS)
    a, b = once.compute(), chunked.compute()
    assert a.keys() == b.keys()
    for k in ("rougeL", "chrf", "bleu", "exact_match", "token_accuracy", "compliance"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k
    chunked.reset()
    empty = chunked.compute()
    assert empty["n"] == 0 and math.isnan(empty["rougeL"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        chunked.update(["a", "b"], ["a"])
