"""Adapters via peft: LoRA (and rsLoRA / DoRA variants) or none (full fine-tuning, for tiny models)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    fast_dropout: bool = True


class FastDropout(torch.nn.Dropout):
    """Dropout whose keep-mask comes from 16-bit random integers instead of ``bernoulli_``.

    On CPU, ``F.dropout`` spends ~5 ms drawing a float per element of an [8, 66, 576] activation (~4x a
    16-bit ``randint`` plus a multiply); LoRA applies it to the input of every adapted layer, which made
    it ~10% of a SmolLM2-135M training step (profiled). Same Bernoulli keep-mask and 1/(1-p) scaling; p is
    rounded to a multiple of 1/65536.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        threshold = -32768 + round(self.p * 65536)
        keep = torch.randint(-32768, 32767 + 1, x.shape, dtype=torch.int16, device=x.device) >= threshold
        return x * (keep * (1.0 / (1.0 - self.p))).to(x.dtype)


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
    model = get_peft_model(model, config)
    if spec.fast_dropout and spec.dropout > 0:
        for module in model.modules():
            drops = getattr(module, "lora_dropout", None)
            if isinstance(drops, torch.nn.ModuleDict):
                for key, drop in list(drops.items()):
                    if type(drop) is torch.nn.Dropout:
                        drops[key] = FastDropout(drop.p)
    return model


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


@contextmanager
def merged_adapter(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Fold a peft adapter into the base weights for the duration of the block, then take it out again.

    Inference through an unmerged LoRA model runs two extra small matmuls, a dropout and a scale per
    adapted layer (210 layers for SmolLM2 with all-linear LoRA); merged, the model is a plain one. On this
    project's 2-core CPU that measured +27% in one profile and within noise in the benchmark run
    (BENCHMARKS.md): the overhead is per call, so it matters most for small batches. The trade-off: ``W + BA - BA`` is not bit-exact, so the base weights
    drift by float round-off on the way out (~6e-8 in fp32; in bf16 ~1e-2 relative, so do not merge a
    bf16 model that will train on). A model without an adapter (zero-shot, ``adapter.kind=none``) is left
    as it is.
    """
    if not enabled or not hasattr(model, "merge_adapter") or not getattr(model, "peft_config", None):
        yield
        return
    model.merge_adapter()
    _bump_versions(model)
    try:
        yield
    finally:
        model.unmerge_adapter()
        _bump_versions(model)


def _bump_versions(model: torch.nn.Module) -> None:
    # peft merges through ``weight.data``, which leaves the parameters' version counters alone; caches
    # keyed on them (the shared-prompt-prefix cache) must see that the weights changed.
    for p in model.parameters():
        torch.autograd.graph.increment_version(p)
