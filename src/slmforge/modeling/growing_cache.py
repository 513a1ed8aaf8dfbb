"""A key/value cache that appends in place, for decode loops that add a few columns per step.

transformers' ``DynamicLayer`` appends with ``torch.cat``: every step copies the whole cache of every
layer, so a loop of ``s`` steps costs ``O(s * length)`` copying. The label-trie search adds up to 16
columns per row per step for ~20 steps over a ~250-column cache; the concatenations were 15% of its time
on an AMX CPU in bf16 (``BENCHMARKS.md``). :class:`GrowingLayer` keeps a buffer with spare room
(doubling when full) and hands attention a view of its filled part: the same keys and values, so
outputs are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of buffers with room to grow."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buf: torch.Tensor | None = None
        self._value_buf: torch.Tensor | None = None

    def _in_buffer(self) -> bool:
        # keys is replaced, not viewed, by DynamicLayer methods this class does not override (crop keeps the
        # view; batch_repeat_interleave does not): then the buffer is stale and is rebuilt from keys.
        buf = self._key_buf
        return (
            buf is not None and self.keys.data_ptr() == buf.data_ptr() and self.keys.shape[0] == buf.shape[0]
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        old = self.get_seq_length()
        new = old + key_states.shape[-2]
        if not self._in_buffer() or new > self._key_buf.shape[-2]:  # type: ignore[union-attr]
            batch, heads, _, dim = key_states.shape
            capacity = max(2 * new, 64)
            key_buf = key_states.new_empty((batch, heads, capacity, dim))
            value_buf = value_states.new_empty(
                (batch, value_states.shape[1], capacity, value_states.shape[-1])
            )
            if old:
                key_buf[:, :, :old] = self.keys
                value_buf[:, :, :old] = self.values
            self._key_buf, self._value_buf = key_buf, value_buf
        assert self._key_buf is not None and self._value_buf is not None
        self._key_buf[:, :, old:new] = key_states
        self._value_buf[:, :, old:new] = value_states
        self.keys, self.values = self._key_buf[:, :, :new], self._value_buf[:, :, :new]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.get_seq_length()
        if length and self._in_buffer():
            # Copy the filled part and a little room, not the whole doubled buffer: rows leave at most steps.
            keep = min(self._key_buf.shape[-2], length + max(64, length // 4))  # type: ignore[union-attr]
            self._key_buf = self._key_buf[indices, :, :keep]  # type: ignore[index]
            self._value_buf = self._value_buf[indices, :, :keep]  # type: ignore[index]
            self.keys, self.values = self._key_buf[:, :, :length], self._value_buf[:, :, :length]
        else:
            super().batch_select_indices(indices)


def growing_cache(cache: DynamicCache | None = None) -> DynamicCache:
    """``cache`` (or an empty cache) with every layer turned into a :class:`GrowingLayer` holding the same
    keys and values (copied once into the new buffers)."""
    if cache is None or not cache.layers:
        grown = DynamicCache()
        grown.layer_class_to_replicate = GrowingLayer
        return grown
    layers = []
    for layer in cache.layers:
        grown_layer = GrowingLayer()
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            grown_layer.update(layer.keys, layer.values)
        layers.append(grown_layer)
    cache.layers = layers
    cache.layer_class_to_replicate = None
    return cache
