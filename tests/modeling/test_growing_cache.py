"""The in-place growing key/value cache holds exactly what transformers' concatenating cache holds, through
appends that outgrow its buffer, rows leaving the batch and crops; a model decoding with it gives the same
logits; the grouped-heads attention switch is set only inside its block and only on CPU."""

from __future__ import annotations

import os

import torch
from transformers import DynamicCache

from slmforge.modeling.growing_cache import GrowingLayer, growing_cache
from slmforge.modeling.internals import CACHE_KWARG, grouped_kv_attention, returned_cache
from slmforge.modeling.loading import ModelSpec, load_model


def _kv(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, length, 4, generator=g), torch.randn(batch, 2, length, 4, generator=g)


def test_layer_matches_concatenation_through_growth_and_row_removal() -> None:
    grown, reference = GrowingLayer(), []
    keys, values = _kv(3, 5, 0)
    grown.update(keys, values)
    reference = [keys, values]
    for step in range(1, 40):  # 5 + 39 * 3 columns: past the first buffer (64) and its doubling
        k, v = _kv(reference[0].shape[0], 3, step)
        out_k, out_v = grown.update(k, v)
        reference = [torch.cat([reference[0], k], -2), torch.cat([reference[1], v], -2)]
        assert torch.equal(out_k, reference[0]) and torch.equal(out_v, reference[1])
        if step in (10, 30):  # a row leaves
            keep = torch.tensor([0, 2]) if step == 10 else torch.tensor([1])
            grown.batch_select_indices(keep)
            reference = [reference[0][keep], reference[1][keep]]
            assert torch.equal(grown.keys, reference[0]) and torch.equal(grown.values, reference[1])
    assert grown.get_seq_length() == 5 + 39 * 3
    grown.crop(-7)
    k, v = _kv(1, 2, 99)
    out_k, _ = grown.update(k, v)  # writes after the cropped length, not after the old one
    assert torch.equal(out_k, torch.cat([reference[0][:, :, :-7], k], -2))


def test_replaced_keys_rebuild_the_buffer() -> None:
    grown = GrowingLayer()
    grown.update(*_kv(2, 4, 0))
    grown.batch_repeat_interleave(2)  # DynamicLayer's own method: keys replaced, not a view of the buffer
    k, v = _kv(4, 1, 1)
    out_k, _ = grown.update(k, v)
    assert out_k.shape == (4, 2, 5, 4) and torch.equal(out_k[:, :, -1:], k)


def test_decoding_with_a_growing_cache_gives_the_same_logits() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=1))
    model = lm.model.eval()
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = {}
    for name, cache in (("dynamic", DynamicCache()), ("growing", growing_cache())):
        steps = []
        with torch.no_grad():
            for start, end in ((0, 6), (6, 7), (7, 9), (9, 12)):
                out = model(input_ids=ids[:, start:end], use_cache=True, **{CACHE_KWARG: cache})
                cache = returned_cache(out)
                steps.append(out.logits)
        logits[name] = torch.cat(steps, 1)
        if name == "growing":
            assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)
    torch.testing.assert_close(logits["growing"], logits["dynamic"], rtol=0, atol=1e-5)


def test_growing_cache_keeps_a_prefilled_cache() -> None:
    keys, values = _kv(2, 6, 3)
    cache = growing_cache(DynamicCache(ddp_cache_data=[(keys, values), (values, keys)]))
    assert [type(layer) for layer in cache.layers] == [GrowingLayer, GrowingLayer]
    assert torch.equal(cache.layers[0].keys, keys) and torch.equal(cache.layers[1].keys, values)
    assert cache.get_seq_length() == 6


def test_grouped_kv_attention_is_scoped_to_cpu_blocks(monkeypatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    with grouped_kv_attention(torch.device("cpu")):
        assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "1"
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    with grouped_kv_attention(torch.device("cuda")):
        assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")  # a user's own setting is left as it is
    with grouped_kv_attention(torch.device("cpu")):
        assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "0"
    assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "0"


def test_grouped_kv_attention_gives_the_same_masked_forward() -> None:
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=2))
    model = lm.model.eval()
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped heads
    ids = torch.randint(5, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(9, 9, dtype=torch.bool).tril()
    allowed[6:, 3:6] = False  # a tree mask: the last three tokens skip a sibling branch
    mask = allowed.expand(2, 1, 9, 9)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with grouped_kv_attention(torch.device("cpu")):
            grouped = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(grouped, plain, rtol=0, atol=1e-5)
