"""apply_adapter: LoRA modules get the fast dropout; FastDropout keeps 1-p of the entries, scaled."""

from __future__ import annotations

import torch

from slmforge.modeling.adapters import AdapterSpec, FastDropout, apply_adapter
from slmforge.modeling.loading import ModelSpec, load_model


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
