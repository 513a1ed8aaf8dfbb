"""Best-first trie search: the exact-scoring argmax and its log-probability on every row, whatever the
number of nodes per step or the prefix cache; a bound on the other labels' mass; no node run twice;
batched rows == each row alone."""

from __future__ import annotations

import pytest
import torch

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.label_scoring import LabelScorer, label_token_ids
from slmforge.prediction.label_trie import LabelTrie
from slmforge.prediction.prefix_cache import SharedPrefix
from slmforge.prediction.trie_search import TrieSearch
from slmforge.tasks.classification import ClassificationTask

LABELS = ["card_arrival", "card_arrival_delay", "refund", "top up by bank transfer", "x", "card"]
EXAMPLES = [{"id": str(i), "text": f"message {i} " + "card top up refund "[: i % 19]} for i in range(12)]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scored():
    # An untrained model spreads its mass over the vocabulary: the hardest case for pruning.
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=5, tiny_config={"initializer_range": 0.3}))
    task = ClassificationTask(labels=LABELS, system_prompt="s", instruction="Pick one.")
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=12)
    prompts = [scorer.prompt_ids(ex) for ex in EXAMPLES]
    with torch.no_grad():
        scores = scorer.score_batch(prompts)
    trie = LabelTrie(LABELS, label_token_ids(lm.tokenizer, LABELS))
    return lm, trie, prompts, scores


@pytest.mark.parametrize("nodes_per_step", [1, 3, 64])
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_search_returns_exact_scoring(scored, nodes_per_step: int, prefix_cache: bool) -> None:
    lm, trie, prompts, scores = scored
    search = TrieSearch(
        lm.model,
        trie,
        lm.tokenizer.pad_token_id,
        SharedPrefix(lm.model, enabled=prefix_cache),
        nodes_per_step,
    )
    found = search.search(prompts)
    inner = {path[:d] for path in trie.paths for d in range(1, len(path))}
    for res, row in zip(found, scores, strict=True):
        assert res.label == int(row.argmax())
        assert res.logprob == pytest.approx(float(row.max()), abs=1e-4)
        others = torch.cat([row[: res.label], row[res.label + 1 :]]).logsumexp(0).item()
        assert res.rest_logmass >= others - 1e-4  # a bound on the other labels' mass
        assert 1 <= res.expanded <= len(inner)  # no node runs twice
    if nodes_per_step == 1:  # strict best-first order skips part of the trie on some row
        assert min(r.expanded for r in found) < len(inner)


def test_batched_rows_search_as_if_alone(scored) -> None:
    # Rows of different prompt lengths share one cache and one block per step (padding, tree masks):
    # each must come out as it does alone.
    lm, trie, prompts, _ = scored
    search = TrieSearch(lm.model, trie, lm.tokenizer.pad_token_id, SharedPrefix(lm.model, enabled=False), 4)
    batched = search.search(prompts)
    for prompt, res in zip(prompts, batched, strict=True):
        (alone,) = search.search([prompt])
        assert (alone.label, alone.expanded) == (res.label, res.expanded)
        assert alone.logprob == pytest.approx(res.logprob, abs=1e-4)
        assert alone.rest_logmass == pytest.approx(res.rest_logmass, abs=1e-4)
    with pytest.raises(ValueError, match="nodes_per_step"):
        TrieSearch(lm.model, trie, 0, SharedPrefix(lm.model), 0)


def test_full_forward_path_gives_the_same_answers(scored, monkeypatch) -> None:
    # Models whose logits are post-processed (soft-capping) have no separable LM head: the search and the
    # scorer then run the whole model and normalise its logits themselves; the answers must not change.
    import slmforge.prediction.label_scoring as label_scoring
    import slmforge.prediction.trie_search as trie_search

    lm, trie, prompts, scores = scored
    monkeypatch.setattr(trie_search, "decoder_and_head", lambda model: None)
    monkeypatch.setattr(label_scoring, "decoder_and_head", lambda model: None)
    search = TrieSearch(lm.model, trie, lm.tokenizer.pad_token_id, SharedPrefix(lm.model, enabled=False), 4)
    for res, row in zip(search.search(prompts), scores, strict=True):
        assert res.label == int(row.argmax())
        assert res.logprob == pytest.approx(float(row.max()), abs=1e-4)
    task = ClassificationTask(labels=LABELS, system_prompt="s", instruction="Pick one.")
    scorer = LabelScorer(lm.model, lm.tokenizer, task, batch_size=12, prefix_cache=False)
    with torch.no_grad():
        torch.testing.assert_close(scorer.score_batch(prompts), scores, rtol=0, atol=1e-4)
