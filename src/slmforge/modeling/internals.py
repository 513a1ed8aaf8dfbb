"""Small, version-sensitive views into a Hugging Face causal LM, in one place.

- ``decoder_and_head``: the transformer body and the vocabulary projection, so callers can run the
  (expensive, 49k-wide) LM head only at the positions they need. ``None`` for models that post-process
  logits (soft-capping), where only the full forward is exact.
- ``CACHE_KWARG`` / ``returned_cache``: transformers 5 renamed ``past_key_values`` to ``cache``.
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


def block_attention_mask(allowed: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """A custom ``[B, 1, Q, K]`` boolean "may attend" mask in the form the model's attention takes:
    booleans for SDPA / flex, an additive float mask (0 / -inf-like) for eager attention."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", "sdpa") == "eager":
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(torch.float32).min
        )
    return allowed


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
