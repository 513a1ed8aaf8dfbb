"""Which prefix SharedPrefix caches: the common head of a batch, shrinking (never growing) across
batches, reused by single requests that start with it, never a whole prompt."""

from __future__ import annotations

import pytest

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.prefix_cache import SharedPrefix, common_prefix_len


def test_common_prefix_len() -> None:
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[5], [6]]) == 0
    assert common_prefix_len([[1, 2]]) == 2
    assert common_prefix_len([]) == 0


@pytest.fixture(scope="module")
def model():
    return load_model(ModelSpec(name="tiny", source="tiny")).model


def test_prefix_choice_across_batches(model) -> None:
    head = list(range(100, 120))  # 20 shared tokens
    prefix = SharedPrefix(model, min_tokens=8)
    # The first batch shares 22 tokens (two texts start alike): all 22 are cached.
    assert prefix.for_prompts([[*head, 1, 2, 7], [*head, 1, 2, 8, 9]]) == 22
    # The next batch shares only the head: the prefix shrinks to it and is re-encoded.
    assert prefix.for_prompts([[*head, 3, 4], [*head, 1, 2, 5]]) == 20
    assert prefix.ids == head
    assert prefix.cache(3).layers[0].keys.shape[0] == 3
    assert prefix.cache(3).get_seq_length() == 20
    # A later batch sharing more does not grow it back.
    assert prefix.for_prompts([[*head, 6, 6, 1], [*head, 6, 6, 2]]) == 20
    # Single requests reuse the held prefix when they start with it, else run uncached.
    assert prefix.for_prompts([[*head, 9]]) == 20
    assert prefix.for_prompts([[1, *head]]) == 0
    # A prompt that is the prefix itself keeps a token of its own (never the whole prompt cached).
    assert prefix.for_prompts([head, [*head, 1]]) == 19


def test_too_short_or_disabled_means_no_cache(model) -> None:
    assert SharedPrefix(model, min_tokens=8).for_prompts([[1, 2, 3, 4], [1, 2, 3, 5]]) == 0
    assert SharedPrefix(model, enabled=False).for_prompts([[*list(range(30)), 1], [*list(range(30)), 2]]) == 0
    # One prompt alone never defines a prefix.
    assert SharedPrefix(model).for_prompts([list(range(30))]) == 0


def test_held_prefix_dropped_when_weights_change() -> None:
    import torch

    model = load_model(ModelSpec(name="tiny", source="tiny")).model  # its own copy: the test trains it
    head = list(range(100, 120))
    prefix = SharedPrefix(model)
    assert prefix.for_prompts([[*head, 1], [*head, 2]]) == 20
    assert prefix.for_prompts([[*head, 3]]) == 20  # reused while the weights are unchanged
    before = prefix.cache(1).layers[0].keys.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(input_ids=torch.tensor([head])).logits.sum().backward()
    opt.step()  # an in-place update, as between validation rounds
    assert prefix.for_prompts([[*head, 3]]) == 0  # single request: the stale prefix is not used
    assert prefix.for_prompts([[*head, 1], [*head, 2]]) == 20  # re-encoded with the new weights
    assert not torch.allclose(prefix.cache(1).layers[0].keys, before)
