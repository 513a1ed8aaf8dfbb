"""Label-trie decoding: always a label; greedy confidence = path probability renormalised over trie
children (checked against full forwards); the exact mode (best-first search) returns exact scoring's
argmax on every row, running few tokens for a confident model; batched == one-by-one; the shared-prefix
cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.label_scoring import LabelScorer, label_token_ids
from slmforge.prediction.label_trie import LabelTrie, LabelTriePredictor
from slmforge.tasks.classification import ClassificationTask

LABELS = ["card_arrival", "card_arrival_delay", "refund", "top up by bank transfer", "x"]
EXAMPLES = [
    {"id": str(i), "text": t, "label": "x"}
    for i, t in enumerate(["short", "a much longer text " * 4, "mid size text", "another one", "z"])
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    # A larger init scale spreads the random model's choices over several labels.
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=3, tiny_config={"initializer_range": 0.3}))
    task = ClassificationTask(labels=LABELS, system_prompt="s", instruction="Pick one.")
    return lm, task


def test_trie_structure_on_hand_made_ids() -> None:
    trie = LabelTrie(["ab", "abc", "d"], [[1, 2, 0], [1, 2, 3, 0], [4, 0]])
    assert trie.children[()] == [1, 4]
    assert trie.children[(1,)] == [2]
    assert trie.children[(1, 2)] == [0, 3]  # "ab" may end here (EOS) or continue to "abc"
    assert trie.label_at[(1, 2, 3, 0)] == "abc"
    assert trie.max_tokens == 4
    assert trie.n_nodes == 7
    mask = trie.session(6).mask([[1, 2], None, []])
    assert mask[0].nonzero().flatten().tolist() == [0, 3]
    assert bool(mask[1].all())
    assert mask[2].nonzero().flatten().tolist() == [1, 4]
    with pytest.raises(ValueError, match="tokenise identically"):
        LabelTrie(["a", "b"], [[1, 0], [1, 0]])
    # Where only one label lies below a node, the rest of it is forced (scored in one pass, not stepped).
    assert trie.forced == {(4,): [0], (1, 2, 3): [0]}
    assert trie.session(6).forced([1]) == []  # "ab" and "abc" are both still possible
    assert trie.session(6).forced([4]) == [0]


class _Stepwise:
    """The label trie without its ``forced`` shortcut: every token decoded step by step."""

    def __init__(self, trie: LabelTrie) -> None:
        self.trie = trie

    def session(self, vocab_size, device="cpu", contexts=None):
        inner = self.trie.session(vocab_size, device)
        return type("Session", (), {"mask": staticmethod(inner.mask)})()


def test_forced_tails_in_one_pass_equal_stepping(setup) -> None:
    lm, task = setup
    labels = ["top up by bank transfer", "top up limits", "refund not showing up", "x"]
    task = ClassificationTask(labels=labels, system_prompt="s", instruction="Pick one.")
    predictor = LabelTriePredictor(lm.model, lm.tokenizer, task, batch_size=5, exact=False)
    prompts = [predictor.prompt_ids(ex) for ex in EXAMPLES]
    calls = []
    forward = predictor._forward
    predictor._forward = lambda *a, **k: calls.append(a[0].shape) or forward(*a, **k)
    fast = predictor.generate_batch(prompts)
    fast_calls, calls[:] = list(calls), []
    predictor.constraint = _Stepwise(predictor.trie)
    slow = predictor.generate_batch(prompts)
    assert len({tuple(r.token_ids) for r in fast}) > 1  # the random model picks several labels
    for a, b in zip(fast, slow, strict=True):
        assert a.token_ids == b.token_ids
        assert a.stop_reason == b.stop_reason == "eos"
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
        assert a.model_logprobs == pytest.approx(b.model_logprobs, abs=1e-4)
    # The forced pass replaced the stepping: fewer forwards, the last one several tokens wide.
    assert len(fast_calls) < len(calls)
    assert fast_calls[-1][1] > 1


@torch.no_grad()
def _renormalised_path_logprob(model, prompt: list[int], path: list[int], trie: LabelTrie) -> float:
    """Full forward on prompt + path; sum over steps of log softmax restricted to the trie children."""
    logits = model(input_ids=torch.tensor([prompt + path])).logits[0].float()
    total = 0.0
    for step, tok in enumerate(path):
        allowed = trie.children[tuple(path[:step])]
        row = logits[len(prompt) - 1 + step, allowed].log_softmax(-1)
        total += float(row[allowed.index(tok)])
    return total


def test_predictions_are_labels_with_path_probability(setup) -> None:
    lm, task = setup
    predictor = LabelTriePredictor(lm.model, lm.tokenizer, task, batch_size=5, exact=False)
    preds = predictor.predict(EXAMPLES)
    ids = dict(zip(LABELS, label_token_ids(lm.tokenizer, LABELS), strict=True))
    assert all(p.pred in LABELS for p in preds)
    assert len({p.pred for p in preds}) > 1  # the random model does not always pick the same label
    for ex, p in zip(EXAMPLES, preds, strict=True):
        ref = _renormalised_path_logprob(lm.model, predictor.prompt_ids(ex), ids[p.pred], predictor.trie)
        assert p.details["logprob"] == pytest.approx(ref, abs=1e-4)
        assert p.confidence == pytest.approx(float(torch.tensor(ref).exp()), rel=1e-4)
        assert p.completion_tokens == len(ids[p.pred])
        # Greedy: at every step the chosen child is the most likely allowed one.
        prompt, path = predictor.prompt_ids(ex), ids[p.pred]
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([prompt + path])).logits[0]
        for step, tok in enumerate(path):
            allowed = predictor.trie.children[tuple(path[:step])]
            best = max(allowed, key=lambda t: float(logits[len(prompt) - 1 + step, t]))
            assert tok == best


def test_batched_prefix_cached_equals_one_by_one_uncached(setup) -> None:
    lm, task = setup
    batched = LabelTriePredictor(lm.model, lm.tokenizer, task, batch_size=5)
    alone = LabelTriePredictor(lm.model, lm.tokenizer, task, batch_size=1, prefix_cache=False)
    together = batched.predict(EXAMPLES)
    assert batched.prefix.ids  # the shared head of the prompts really was cached
    for a, b in zip(together, [alone.predict([ex])[0] for ex in EXAMPLES], strict=True):
        assert a.pred == b.pred
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4)


MANY = [
    {"id": str(i), "text": f"message {i} about " + "card top up refund "[: i % 19], "label": LABELS[i % 5]}
    for i in range(24)
]


def _fit(lm, task, examples, steps: int = 30) -> None:
    """A few full-parameter Adam steps on prompt -> label + EOS: a tiny model that is confident."""
    scorer = LabelScorer(lm.model, lm.tokenizer, task)
    ids = dict(zip(LABELS, label_token_ids(lm.tokenizer, LABELS), strict=True))
    opt = torch.optim.Adam(lm.model.parameters(), lr=3e-3)
    lm.model.train()
    for _ in range(steps):
        opt.zero_grad()
        for ex in examples:
            prompt, target = scorer.prompt_ids(ex), ids[ex["label"]]
            logits = lm.model(input_ids=torch.tensor([prompt + target[:-1]])).logits[0, len(prompt) - 1 :]
            torch.nn.functional.cross_entropy(logits, torch.tensor(target)).backward()
        opt.step()
    lm.model.eval()


def test_exact_mode_returns_exact_scorings_argmax() -> None:
    # An untrained tiny model spreads its mass over the whole vocabulary (the search runs much of the
    # trie); briefly trained, it is more confident: some rows dive down their answer's path and stop.
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=3, tiny_config={"initializer_range": 0.3}))
    task = ClassificationTask(labels=LABELS, system_prompt="s", instruction="Pick one.")
    paths = LabelTrie(LABELS, label_token_ids(lm.tokenizer, LABELS)).paths
    n_inner = len({path[:d] for path in paths for d in range(1, len(path))})
    searched = {}
    for trained in (False, True):
        if trained:
            _fit(lm, task, MANY[::2])  # odd rows are unseen: some of them stay unsure
        exact = LabelScorer(lm.model, lm.tokenizer, task, batch_size=8).predict(MANY)
        trie = LabelTriePredictor(lm.model, lm.tokenizer, task, batch_size=8).predict(MANY)
        assert [p.pred for p in trie] == [p.pred for p in exact]
        for t, e in zip(trie, exact, strict=True):
            assert t.details["model_logprob"] == pytest.approx(e.details["logp"], abs=1e-4)
            assert 1 <= t.details["searched_nodes"] <= n_inner  # no node runs twice
            # p / (p + a bound on the rest): at most the exact value
            assert 0 < t.confidence <= e.confidence + 1e-5
        searched[trained] = [p.details["searched_nodes"] for p in trie]
    # The confident model's rows that ran only their own answer's path (EOS is never an input).
    dives = sum(n == len(paths[LABELS.index(p.pred)]) - 1 for n, p in zip(searched[True], trie, strict=True))
    assert dives >= 3  # (this tiny model is only so confident: 4 of 24 rows)
    assert sum(searched[True]) < sum(searched[False])
    assert sum(p.pred == ex["label"] for p, ex in zip(trie[::2], MANY[::2], strict=True)) >= 8
