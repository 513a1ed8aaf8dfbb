"""Packed label scoring equals a brute-force forward per label, and is batch-size invariant."""

from __future__ import annotations

import pytest
import torch

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.label_scoring import LabelScorer, score_labels_bruteforce
from slmforge.tasks.classification import ClassificationTask

EXAMPLES = [
    {"id": str(i), "text": t, "label": "a"}
    for i, t in enumerate(
        ["short", "a much longer text that makes the prompts differ in length " * 3, "mid size text"]
    )
]
# Labels of 1..several tokens, sharing prefixes, so the cache and padding paths are all exercised.
LABELS = ["card_arrival", "card_arrival_delay", "refund", "top up by bank transfer", "x"]


@pytest.fixture(scope="module")
def setup():
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=1))
    task = ClassificationTask(labels=LABELS, system_prompt="s", instruction="Pick one.")
    return lm, task


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_scores_equal_bruteforce(setup, attn):
    lm, task = setup
    lm.model.config._attn_implementation = attn
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=3)
    scores = scorer.score_batch([scorer.prompt_ids(ex) for ex in EXAMPLES])
    for i, ex in enumerate(EXAMPLES):
        ref = score_labels_bruteforce(lm.model, lm.tokenizer, scorer.prompt_ids(ex), LABELS)
        torch.testing.assert_close(scores[i], ref, rtol=1e-4, atol=1e-4)
    lm.model.config._attn_implementation = "sdpa"


def test_predictions_do_not_depend_on_batch_size(setup):
    lm, task = setup
    one = LabelScorer(lm.model, lm.tokenizer, task, batch_size=1).predict(EXAMPLES)
    many = LabelScorer(lm.model, lm.tokenizer, task, batch_size=3).predict(EXAMPLES)
    for a, b in zip(one, many, strict=True):
        assert a.pred == b.pred
        assert a.pred in LABELS
        assert abs(a.confidence - b.confidence) < 1e-4
        assert abs(sum(a.label_probs.values()) - 1.0) < 1e-4
        assert a.confidence == max(a.label_probs.values())


# ---- scorings: length-normalised and contextually calibrated, held to a brute-force reference ---------


def _reference_probs(lm, scorer, example, scoring):
    """The obvious computation: one full forward per (prompt, label), then the scoring's formula."""
    bf = score_labels_bruteforce(lm.model, lm.tokenizer, scorer.prompt_ids(example), LABELS).double()
    if scoring == "length_norm":
        return (bf / torch.tensor([len(lab.encode("utf-8")) for lab in LABELS], dtype=torch.double)).softmax(
            -1
        )
    p = bf.softmax(-1)
    cf = [
        score_labels_bruteforce(lm.model, lm.tokenizer, scorer.prompt_ids({"text": t}), LABELS)
        .double()
        .softmax(-1)
        for t in ("N/A", "", "[MASK]")
    ]
    ratio = p / torch.stack(cf).mean(0)
    return ratio / ratio.sum()


@pytest.mark.parametrize("scoring", ["length_norm", "calibrated"])
@pytest.mark.parametrize("shots", [0, 2])
def test_scoring_probabilities_equal_the_bruteforce_reference(setup, one_thread, scoring, shots):
    lm, task = setup
    shot_rows = [{"id": "s1", "text": "my card has not come", "label": "card_arrival"},
                 {"id": "s2", "text": "money back please", "label": "refund"}][:shots]  # fmt: skip
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=2, shots=shot_rows, scoring=scoring)
    preds = scorer.predict(EXAMPLES)
    for ex, pred in zip(EXAMPLES, preds, strict=True):
        ref = _reference_probs(lm, scorer, ex, scoring)
        got = torch.tensor([pred.label_probs[lab] for lab in LABELS], dtype=torch.double)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        assert pred.pred == LABELS[int(ref.argmax())]
        assert pred.confidence == pytest.approx(float(ref.max()), abs=1e-5)
        assert pred.details["raw_argmax"] in LABELS
    described = scorer.describe()
    assert described["scoring"] == scoring
    if scoring == "calibrated":
        assert sum(described["content_free_probs"].values()) == pytest.approx(1.0, abs=1e-4)


def test_raw_scoring_is_the_unchanged_softmax_of_the_log_likelihoods(setup, one_thread):
    lm, task = setup
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=3)
    assert scorer.describe()["scoring"] == "raw"
    for ex, pred in zip(EXAMPLES, scorer.predict(EXAMPLES), strict=True):
        bf = score_labels_bruteforce(lm.model, lm.tokenizer, scorer.prompt_ids(ex), LABELS)
        got = torch.tensor([pred.label_probs[lab] for lab in LABELS])
        torch.testing.assert_close(got, bf.softmax(-1), rtol=1e-4, atol=1e-5)
        assert "raw_argmax" not in pred.details


def test_content_free_prior_is_computed_once(setup, one_thread):
    lm, task = setup
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=3, scoring="calibrated")
    first = scorer.content_free_log_probs()
    assert torch.isfinite(first).all() and float(first.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    scorer.predict(EXAMPLES)
    assert scorer.content_free_log_probs() is first


def test_unknown_scoring_names_the_key(setup):
    lm, task = setup
    from slmforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"eval\.scoring='acc_norm'.*length_norm"):
        LabelScorer(lm.model, lm.tokenizer, task, scoring="acc_norm")
