"""Small, version-sensitive views into a Hugging Face causal LM, in one place.

- ``decoder_and_head``: the transformer body and the vocabulary projection, so callers can run the
  (expensive, 49k-wide) LM head only at the positions they need. ``None`` for models that post-process
  logits (soft-capping), where only the full forward is exact.
- ``block_attention_mask``: a custom "may attend" mask in the form the model takes, with the sliding window
  of models that mix sliding-window and global layers (Gemma 3) applied per layer type.
- ``CACHE_KWARG`` / ``returned_cache``: transformers 5 renamed ``past_key_values`` to ``cache``;
  ``full_cache``: a cache that keeps every layer's keys (sliding-window layers included).
- ``grouped_kv_attention``: SDPA on grouped key/value heads under a custom mask, on CPU.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def block_attention_mask(
    allowed: torch.Tensor, model: torch.nn.Module
) -> torch.Tensor | dict[str, torch.Tensor]:
    """A custom ``[B, 1, Q, K]`` boolean "may attend" mask in the form the model's attention takes:
    booleans for SDPA / flex, an additive float mask (0 / -inf-like) for eager attention.

    Models with sliding-window layers (Gemma 3: 5 of every 6 layers see only the last 512 positions) take a
    custom 4D mask as is, for every layer, so a mask without the window would let those layers see further
    than they were trained to once a prompt and its label pass the window (scores then differ from a plain
    forward). For them the result is ``{"full_attention": mask, "sliding_attention": windowed mask}``, the
    per-layer-type form their decoders accept. The window is cut from ``allowed`` alone: every mask slmforge
    builds lets a query see exactly its own sequence's earlier tokens, in column order (a cached prefix
    first), so the n-th allowed key of a query that sees N keys is N - n positions back.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or ()
    eager = getattr(config, "_attn_implementation", "sdpa") == "eager"
    full = _mask_form(allowed, eager)
    if not window or "sliding_attention" not in layer_types:
        return full
    seen = allowed.cumsum(-1)  # keys allowed so far, this one included
    distance = allowed.sum(-1, keepdim=True) - seen  # 0 for the query itself
    return {"full_attention": full, "sliding_attention": _mask_form(allowed & (distance < window), eager)}


def sliding_window(model: torch.nn.Module) -> int | None:
    """The sliding window of a model that mixes sliding-window and global layers (Gemma 3: 512), else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)  # a scripted test model has none
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or ()
    return int(window) if window and "sliding_attention" in layer_types else None


def _mask_form(allowed: torch.Tensor, eager: bool) -> torch.Tensor:
    if eager:
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(torch.float32).min
        )
    return allowed


def full_cache() -> Any:
    """An empty key/value cache whose every layer keeps all its keys, sliding-window layers included.

    The default cache of a Gemma 3 forward keeps only a sliding layer's last ``window - 1`` keys, so a
    cached prefix longer than the window would come back shorter than the positions it covers; callers that
    reuse a prefix under their own mask (``block_attention_mask`` applies the window) need it whole.
    """
    from transformers import DynamicCache

    return DynamicCache()


def _cache_kwarg() -> str:
    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


CACHE_KWARG = _cache_kwarg()


def returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


# transformers' SDPA attention repeats each key/value head for its query heads (``repeat_kv``: a copy of
# the whole cache per layer per forward) whenever a custom mask is given, because CUDA's fast kernels
# take no grouped heads with a mask. This switch of transformers' makes it pass ``enable_gqa=True``.
_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextmanager
def grouped_kv_attention(device: torch.device) -> Iterator[None]:
    """Within the block, SDPA attends over grouped key/value heads without repeating them, on CPU only.

    Same outputs (torch computes the grouping itself); on CPU its kernels take the groups with a mask: 8x
    faster attention in fp32 for SmolLM2's 9 query / 3 key-value heads over a 400-column cache with a tree
    mask, +8% for the whole label-trie search (``BENCHMARKS.md``). On CUDA a mask plus grouped heads falls back
    to the slow math kernel, so the block leaves it alone there. The switch is process-wide while the block
    runs (an environment variable transformers reads per call): another thread's attention meanwhile
    computes the same values by the same route (on CUDA, more slowly).
    """
    if device.type != "cpu" or os.environ.get(_FORCE_GQA) is not None:
        yield
        return
    os.environ[_FORCE_GQA] = "1"
    try:
        yield
    finally:
        os.environ.pop(_FORCE_GQA, None)
