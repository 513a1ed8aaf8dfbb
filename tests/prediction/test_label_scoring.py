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
