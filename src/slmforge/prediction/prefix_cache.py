"""The key/value cache of the prompt prefix every example shares, computed once and reused.

Every prompt of a task starts with the same tokens: the chat template's system turn, the instruction,
the label list (77 banking77 labels are ~600 tokens), fixed few-shot examples. Only the tail (the
example's text and the assistant marker) differs. Encoding that shared head once and attaching its
key/value cache to every batch turns a ~650-token prompt into a ~30-token one, which is most of the
cost of zero-shot and k-shot evaluation. Outputs are unchanged: each row attends to exactly the same
keys at the same positions as without the cache (tested against uncached scoring and generation).

The prefix is learned from the prompts themselves: the longest common token prefix of a batch (and of
the prefix held from earlier batches), always leaving every prompt at least one token of its own.
Single-example calls (online latency) reuse the held prefix when their prompt starts with it, as a
serving stack with prefix caching (vLLM, SGLang, llama.cpp's prompt cache) does; a single prompt never
becomes a prefix by itself. The held prefix is dropped whenever the weights change (an optimizer step
between validation rounds, an adapter attached, a move to another device): every parameter's storage
and in-place version counter are part of its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from slmforge.modeling.internals import CACHE_KWARG, decoder_and_head, full_cache, returned_cache

# Below this many shared tokens the bookkeeping costs more than it saves.
MIN_PREFIX_TOKENS = 8


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Number of leading tokens all ``seqs`` share."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        tok = first[i]
        if any(s[i] != tok for s in seqs):
            return i
    return n


class SharedPrefix:
    """Holds one prefix's key/value tensors per layer; ``for_prompts`` says how much of a batch it covers.

    ``enabled=False`` turns caching off (every call returns 0): the uncached reference path.
    """

    def __init__(self, model: torch.nn.Module, enabled: bool = True, min_tokens: int = MIN_PREFIX_TOKENS):
        self.model = model
        self.enabled = enabled and decoder_and_head(model) is not None
        self.min_tokens = min_tokens
        self.ids: list[int] = []
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._weights_key: int | None = None

    def _current_weights_key(self) -> int:
        # data_ptr changes when parameters are replaced or moved, _version on every in-place update.
        return hash(tuple((p.data_ptr(), p._version) for p in self.model.parameters()))

    def for_prompts(self, prompts: Sequence[Sequence[int]]) -> int:
        """Length of the cached prefix to use for ``prompts`` (0 = none), encoding a new one if needed."""
        if not self.enabled or not prompts:
            return 0
        if self.ids and self._weights_key != self._current_weights_key():
            self.ids, self._kv = [], []  # stale: computed with other weights
        shortest = min(len(p) for p in prompts)
        held = len(self.ids)
        held_fits = held and held < shortest and common_prefix_len([self.ids, *prompts]) == held
        if len(prompts) == 1:
            return held if held_fits else 0
        shared = min(common_prefix_len(prompts), shortest - 1)
        if held:
            # Never grow past what earlier batches shared: a longer common prefix within one batch is
            # usually coincidence (two texts starting with the same word), not template.
            shared = min(shared, held) if held_fits else min(shared, common_prefix_len([self.ids, *prompts]))
        if shared < self.min_tokens:
            return 0
        if shared != held or not held_fits:
            self._encode(list(prompts[0][:shared]))
        return shared

    @torch.no_grad()
    def _encode(self, ids: list[int]) -> None:
        decoder, _ = decoder_and_head(self.model)  # type: ignore[misc]
        device = next(self.model.parameters()).device
        out = decoder(
            input_ids=torch.tensor([ids], device=device),
            position_ids=torch.arange(len(ids), device=device)[None],
            use_cache=True,
            **{CACHE_KWARG: full_cache()},  # a sliding-window layer's default cache drops older keys
        )
        cache = returned_cache(out)
        self._kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.ids = ids
        self._weights_key = self._current_weights_key()

    def cache(self, batch: int) -> Any:
        """A fresh cache holding the prefix for ``batch`` rows (the prefix tensors are never modified)."""
        from transformers import DynamicCache

        return DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self._kv]
        )
