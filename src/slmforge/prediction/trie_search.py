"""The exact-scoring argmax over a label trie by best-first search (branch and bound).

A label's log-probability is the sum of its tokens' log-probabilities (EOS included), and each term is at
most 0, so a trie node's path log-probability bounds every label below it. Expanding the open node with
the highest bound first (one forward of its last token gives the distribution over its children) and
stopping once no open node's bound reaches the best complete label's score returns exactly the label
exact scoring would (:class:`~slmforge.prediction.label_scoring.LabelScorer`), without running the
labels whose branch is already out of reach.

What it costs: a confident model (fine-tuned) dives straight down its answer's path and stops, a few
cached steps like greedy decoding; an unsure one (a base model zero-shot) expands the branches that
could still win. On banking77 (77 labels, 481 label tokens to score every label, 382 inner trie nodes)
SmolLM2-135M runs ~6 tokens per row fine-tuned and ~135 zero-shot (``scripts/bench_eval_speed.py``).

Mechanics, batched over rows: the prompt tails run once over the shared prefix cache; then each step
runs, per row, a block of open nodes taken in bound order: the last token of each, attending to its
row's prompt and to its own ancestors' columns in the growing key/value cache (a tree attention mask;
positions continue from the row's prompt), so each node is computed exactly as if its path followed
the prompt alone. Finished rows leave the batch. The cache grows in place
(:mod:`slmforge.modeling.growing_cache`), attention takes the grouped key/value heads as they are on CPU
(:func:`~slmforge.modeling.internals.grouped_kv_attention`), and of the 49k-wide vocabulary only the
log-normaliser is computed (:func:`~slmforge.prediction.label_scoring.head_logits`): the three cost 35%
of a bf16 search's time on an AMX CPU before (``BENCHMARKS.md``).

Step schedule (chosen by measurement, ``BENCHMARKS.md``): until a row has a complete label it expands
one node per step, and a node with a single label below it (``LabelTrie.forced``) runs that label's
whole rest in one block: the dive that finds a first answer, which for a confident model is the last
one. After that the block doubles each step up to ``nodes_per_step`` (fewer forwards for an unsure row;
more nodes than strict best-first order would expand) and forced rests go one token at a time, since
most of them fall below the best label a few tokens in (completing them cost an unsure row 1.8x the
tokens).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch

from slmforge.modeling.growing_cache import growing_cache
from slmforge.modeling.internals import (
    CACHE_KWARG,
    block_attention_mask,
    decoder_and_head,
    grouped_kv_attention,
    returned_cache,
)
from slmforge.prediction.label_scoring import head_logits, log_normaliser
from slmforge.prediction.prefix_cache import SharedPrefix

# Nodes whose bound is within this many nats of the best label are still expanded: float noise between
# forwards of different shapes is ~1e-5, and a near-tie must be settled by the exact scores.
SEARCH_MARGIN = 1e-3


@dataclass
class SearchResult:
    """One row's answer: the best label (index into the trie's labels) and its exact log-probability."""

    label: int
    logprob: float
    # log of (the other completed labels' probabilities + the bounds of the branches never expanded):
    # an upper bound on the rest of the label set's mass, exact when nothing was pruned.
    rest_logmass: float
    expanded: int  # trie nodes run through the model for this row


class _Row:
    def __init__(self, prompt_len: int, prompt_cols: torch.Tensor) -> None:
        self.prompt_len = prompt_len
        self.prompt_cols = prompt_cols  # cache columns of the row's prompt (shared prefix + own tail)
        self.heap: list[tuple[float, int, tuple[int, ...]]] = []  # (-bound, tie-break, node path)
        self.cols: dict[tuple[int, ...], int] = {}  # expanded node -> its last token's cache column
        self.complete: list[tuple[float, int]] = []  # (log-probability, label index)
        self.expanded = 0
        self.steps = 0  # steps since the first complete label

    def best(self) -> tuple[float, int] | None:
        return max(self.complete) if self.complete else None

    def threshold(self) -> float:
        best = self.best()
        return best[0] - SEARCH_MARGIN if best else -math.inf


class TrieSearch:
    """Best-first exact label search over ``trie`` (a :class:`~slmforge.prediction.label_trie.LabelTrie`).

    prefix: the predictor's shared-prefix cache (the prompt head every example shares, encoded once).
    nodes_per_step: the most open nodes a row expands per forward once it has a first complete label
        (see the module docstring's step schedule).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        trie: Any,
        pad_id: int,
        prefix: SharedPrefix,
        nodes_per_step: int = 16,
    ) -> None:
        if nodes_per_step < 1:
            raise ValueError(f"nodes_per_step must be >= 1, got {nodes_per_step}")
        self.model, self.trie, self.pad_id, self.prefix = model, trie, pad_id, prefix
        self.nodes_per_step = nodes_per_step
        self.index_of = {path: i for i, path in enumerate(trie.paths)}
        self._tie = itertools.count()

    def _forward(
        self, ids: torch.Tensor, allowed: torch.Tensor, pos: torch.Tensor, cache: Any, at: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Logits ``[P, V]`` and their log-normalisers ``[P]`` at the ``P`` query columns ``at`` selects
        (row-major), and the cache."""
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": block_attention_mask(allowed[:, None], self.model),
            "position_ids": pos,
            "use_cache": True,
            CACHE_KWARG: cache,
        }
        parts = decoder_and_head(self.model)
        with grouped_kv_attention(ids.device):
            if parts is not None:  # the 49k-wide LM head only at the columns that are read
                out = parts[0](**kwargs)
                logits, lse = head_logits(parts[1], out.last_hidden_state[at])
            else:
                out = self.model(**kwargs)
                logits = out.logits[at]
                lse = log_normaliser(logits)
        return logits, lse, returned_cache(out)

    @staticmethod
    def _logprobs(logits: torch.Tensor, lse: torch.Tensor, rows: list[int], tokens: list[int]) -> list[float]:
        """``log p(tokens[j] | query rows[j])`` for each pair, gathered in one indexing call."""
        r = torch.tensor(rows, device=logits.device)
        return (logits[r, torch.tensor(tokens, device=logits.device)].float() - lse[r]).tolist()

    def _push(self, row: _Row, path: tuple[int, ...], logprob: float) -> None:
        if path in self.index_of:
            row.complete.append((logprob, self.index_of[path]))
        else:
            heapq.heappush(row.heap, (-logprob, next(self._tie), path))

    @torch.no_grad()
    def search(self, prompts: list[list[int]]) -> list[SearchResult]:
        """The exact-scoring argmax label for each prompt, with its log-probability."""
        device = next(self.model.parameters()).device
        # The prompt tails, left padded, over the shared prefix (causal among each row's real tokens).
        shared = self.prefix.for_prompts(prompts)
        tails = [p[shared:] for p in prompts]
        n, width = len(tails), max(len(t) for t in tails)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        allowed = torch.zeros((n, width, shared + width), dtype=torch.bool)
        allowed[:, :, :shared] = True
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        for i, tail in enumerate(tails):
            start = width - len(tail)
            ids[i, start:] = torch.tensor(tail)
            pos[i, start:] = shared + torch.arange(len(tail))
            real = torch.zeros(width, dtype=torch.bool)
            real[start:] = True
            allowed[i, :, shared:] = causal & real[None, :]
            allowed[i, torch.arange(start), shared + torch.arange(start)] = True  # padding: itself only
        at = torch.zeros((n, width), dtype=torch.bool)
        at[:, -1] = True
        cache = growing_cache(self.prefix.cache(n) if shared else None)
        logits, lse, cache = self._forward(
            ids.to(device), allowed.to(device), pos.to(device), cache, at.to(device)
        )
        rows = [
            _Row(len(p), torch.cat([torch.arange(shared), shared + torch.arange(width - len(t), width)]))
            for p, t in zip(prompts, tails, strict=True)
        ]
        first = self.trie.children[()]
        values = iter(self._logprobs(logits, lse, [r for r in range(n) for _ in first], first * n))
        for row in rows:
            for tok in first:
                self._push(row, (tok,), next(values))
        columns = shared + width  # the cache's length

        live = list(range(n))
        pruned: dict[int, list[float]] = {}
        while live:
            # Each live row's next block: its best open nodes that can still reach the best label.
            # (node, its bound, the tokens it runs, whether they complete its only label)
            blocks: dict[int, list[tuple[tuple[int, ...], float, list[int], bool]]] = {}
            for r in live:
                row, picked = rows[r], []
                limit = row.threshold()
                diving = not row.complete  # see the module docstring's step schedule
                budget = 1 if diving else min(self.nodes_per_step, 2**row.steps)
                row.steps += not diving
                while row.heap and len(picked) < budget and -row.heap[0][0] >= limit:
                    neg, _, path = heapq.heappop(row.heap)
                    rest = self.trie.forced.get(path, []) if diving else []
                    picked.append((path, -neg, [path[-1], *rest[:-1]], bool(rest)))
                if picked:
                    blocks[r] = picked
                else:
                    pruned[r] = [-neg for neg, _, _ in row.heap]
            going = [b for b, r in enumerate(live) if r in blocks]
            if not going:
                break
            if len(going) < len(live):  # finished rows leave the batch and its cache
                cache.batch_select_indices(torch.tensor(going, device=device))
                live = [live[b] for b in going]
            width = max(sum(len(block[2]) for block in blocks[r]) for r in live)
            ids = torch.full((len(live), width), self.pad_id, dtype=torch.long)
            pos = torch.zeros((len(live), width), dtype=torch.long)
            allowed = torch.zeros((len(live), width, columns + width), dtype=torch.bool)
            at = torch.zeros((len(live), width), dtype=torch.bool)
            for b, r in enumerate(live):
                row, q = rows[r], 0
                for path, _, tokens, _ in blocks[r]:
                    k = len(tokens)
                    ancestors = [row.cols[path[:d]] for d in range(1, len(path))]
                    ids[b, q : q + k] = torch.tensor(tokens)
                    pos[b, q : q + k] = row.prompt_len + len(path) - 1 + torch.arange(k)
                    allowed[b, q : q + k, row.prompt_cols] = True
                    allowed[b, q : q + k, ancestors] = True
                    allowed[b, q : q + k, columns + q : columns + q + k] = torch.ones(
                        (k, k), dtype=torch.bool
                    ).tril()
                    at[b, q : q + k] = True
                    q += k
                allowed[b, torch.arange(q, width), columns + torch.arange(q, width)] = True  # padding
            logits, lse, cache = self._forward(
                ids.to(device), allowed.to(device), pos.to(device), cache, at.to(device)
            )
            # Every log-probability this step reads, gathered at once: a completed label's rest tokens, or
            # an expanded node's children (logits rows are the real query columns, row by row).
            read, query_rows, tokens = 0, [], []
            for r in live:
                for path, _, run, completes in blocks[r]:
                    if completes:
                        label = self.trie.paths[self.trie.under[path][0]]
                        query_rows += range(read, read + len(run))
                        tokens += label[len(path) :]
                    else:
                        kids = self.trie.children[path]
                        query_rows += [read] * len(kids)
                        tokens += kids
                    read += len(run)
            values = iter(self._logprobs(logits, lse, query_rows, tokens))
            for r in live:
                row, q = rows[r], 0
                for path, bound, run, completes in blocks[r]:
                    k = len(run)
                    row.expanded += k
                    if completes:  # the only label below: its whole rest ran in this block
                        label = self.trie.paths[self.trie.under[path][0]]
                        score = bound + sum(next(values) for _ in range(k))  # one per rest token
                        row.complete.append((score, self.index_of[label]))
                    else:
                        row.cols[path] = columns + q
                        for tok in self.trie.children[path]:
                            self._push(row, (*path, tok), bound + next(values))
                    q += k
            columns += width

        results = []
        for r, row in enumerate(rows):
            best = row.best()
            assert best is not None  # the search ends only when some label is complete
            others = [lp for lp, j in row.complete if j != best[1]] + pruned.get(r, [])
            rest = torch.tensor(others).logsumexp(0).item() if others else -math.inf
            results.append(SearchResult(best[1], best[0], rest, row.expanded))
        return results
