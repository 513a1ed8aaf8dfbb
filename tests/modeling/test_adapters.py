"""apply_adapter: LoRA modules get the fast dropout; FastDropout keeps 1-p of the entries, scaled.
merged_adapter: same outputs merged, base weights back afterwards, caches keyed on weights see the change."""

from __future__ import annotations

import pytest
import torch

from slmforge.modeling.adapters import AdapterSpec, FastDropout, apply_adapter, merged_adapter
from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.label_trie import LabelTriePredictor
from slmforge.tasks.classification import ClassificationTask


def test_fast_dropout_statistics_and_eval_identity():
    torch.manual_seed(0)
    drop = FastDropout(0.25)
    x = torch.ones(400, 1000)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # 400k draws: binomial sd ~0.0007
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0)(x) is x
    g = torch.ones(3, 4, requires_grad=True)
    drop.train()
    out = drop(g)
    out.sum().backward()
    assert torch.equal(g.grad, (out != 0).float() / 0.75)


def test_lora_dropout_modules_are_replaced_only_when_asked():
    def dropouts(spec: AdapterSpec) -> set[type]:
        model = apply_adapter(load_model(ModelSpec(name="tiny", source="tiny")).model, spec)
        return {
            type(d) for m in model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()
        }

    assert dropouts(AdapterSpec(r=4, alpha=8, dropout=0.1)) == {FastDropout}
    assert dropouts(AdapterSpec(r=4, alpha=8, dropout=0.1, fast_dropout=False)) == {torch.nn.Dropout}
    assert dropouts(AdapterSpec(r=4, alpha=8, dropout=0.0)) == {torch.nn.Identity}


def _adapted_tiny() -> torch.nn.Module:
    model = apply_adapter(
        load_model(ModelSpec(name="tiny", source="tiny", seed=1)).model, AdapterSpec(r=4, alpha=8)
    )
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero (a no-op adapter): give it weight so merging matters
            p.data.normal_(0, 0.5)
    return model.eval()


def test_merged_adapter_same_outputs_weights_restored():
    model = _adapted_tiny()
    ids = torch.tensor([[5, 9, 20, 7, 3, 11]])
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with model.disable_adapter():
            base_out = model(input_ids=ids).logits
        with merged_adapter(model):
            lora_layers = [m for m in model.modules() if hasattr(m, "merged")]
            assert lora_layers and all(m.merged for m in lora_layers)
            merged = model(input_ids=ids).logits
            changed = max(
                (p - base_before[n]).abs().max().item()
                for n, p in model.named_parameters()
                if n in base_before
            )
        after = model(input_ids=ids).logits
    assert changed > 1e-3  # the adapter really is in the weights inside the block
    assert (unmerged - base_out).abs().max().item() >= 1e-3  # ... and it changes the outputs
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not any(m.merged for m in lora_layers)
    assert torch.allclose(after, unmerged, atol=1e-6)
    for n, p in model.named_parameters():
        if n in base_before:
            assert (p - base_before[n]).abs().max().item() < 1e-6


def test_merged_adapter_leaves_plain_models_alone_and_can_be_off():
    plain = load_model(ModelSpec(name="tiny", source="tiny")).model
    weights = [p.detach().clone() for p in plain.parameters()]
    with merged_adapter(plain):
        pass
    assert all(torch.equal(a, b) for a, b in zip(weights, plain.parameters(), strict=True))
    model = _adapted_tiny()
    with merged_adapter(model, enabled=False):
        assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))


def test_merging_invalidates_weight_keyed_caches_and_keeps_predictions():
    # peft merges through weight.data, which leaves version counters alone: merged_adapter bumps them, so
    # the cached prompt prefix is recomputed from the weights actually in use (they differ by round-off).
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=1))
    model = _adapted_tiny()
    task = ClassificationTask(
        labels=["alpha", "beta gamma", "delta"], system_prompt="s", instruction="Pick one."
    )
    examples = [{"id": str(i), "text": f"text number {i} " * (1 + i % 3), "label": "delta"} for i in range(6)]
    predictor = LabelTriePredictor(model, lm.tokenizer, task, batch_size=6)
    before = predictor.predict(examples)
    assert predictor.prefix.ids
    key_unmerged = predictor.prefix._weights_key
    with merged_adapter(model):
        assert predictor.prefix._current_weights_key() != key_unmerged
        during = predictor.predict(examples)
        key_merged = predictor.prefix._weights_key
    assert key_merged != key_unmerged
    assert predictor.prefix._current_weights_key() not in (key_unmerged, key_merged)
    for a, b in zip(before, during, strict=True):
        assert a.pred == b.pred
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4)
