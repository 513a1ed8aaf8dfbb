"""Small, version-sensitive views into a Hugging Face causal LM, in one place.

- ``decoder_and_head``: the transformer body and the vocabulary projection, so callers can run the
  (expensive, 49k-wide) LM head only at the positions they need. ``None`` for models that post-process
  logits (soft-capping), where only the full forward is exact.
- ``CACHE_KWARG`` / ``returned_cache``: transformers 5 renamed ``past_key_values`` to ``cache``.
"""

from __future__ import annotations

import inspect
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
