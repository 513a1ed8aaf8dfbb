"""Adapters via peft: LoRA (and rsLoRA / DoRA variants) or none (full fine-tuning, for tiny models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# Every linear layer of a Llama-style block. Adapting the MLP as well as attention is what lifts
# classification accuracy most for small models (see BENCHMARKS.md).
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class AdapterSpec:
    """Built by Hydra from ``conf/adapter/*.yaml``. kind: ``lora`` | ``dora`` | ``none``."""

    kind: str = "lora"
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: list(ALL_LINEAR))
    use_rslora: bool = False
    bias: str = "none"


def apply_adapter(model: torch.nn.Module, spec: AdapterSpec | dict[str, Any]) -> torch.nn.Module:
    """Wrap ``model`` with the adapter; with ``kind=none`` every weight trains."""
    if not isinstance(spec, AdapterSpec):
        spec = AdapterSpec(**dict(spec))
    if spec.kind == "none":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if spec.kind not in {"lora", "dora"}:
        raise ValueError(f"adapter.kind={spec.kind} is not one of ['lora', 'dora', 'none']")
    from peft import LoraConfig, get_peft_model

    targets = list(spec.target_modules) if not isinstance(spec.target_modules, str) else spec.target_modules
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if isinstance(targets, list):
        missing = [t for t in targets if t not in present]
        if missing:
            raise ValueError(
                f"adapter.target_modules {missing} are not modules of this model; it has e.g. "
                f"{sorted(n for n in present if n.endswith('proj'))[:10]}. Use adapter.target_modules=all-linear"
            )
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        use_rslora=spec.use_rslora,
        use_dora=spec.kind == "dora",
        bias=spec.bias,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
