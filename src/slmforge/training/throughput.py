"""Model FLOPs utilisation (MFU) for the training log: 6·N·tokens/s over the GPU's dense bf16 peak.

6·N per token (forward 2N, backward 4N; N = all parameters, frozen ones included, as the issue and
most reports count it) ignores attention's own FLOPs, so MFU reads slightly low for long rows. LoRA
training skips the frozen weights' gradient GEMMs, so its real utilisation is below this figure's
meaning of "work done"; compare MFU only between runs of the same adapter setup.
"""

from __future__ import annotations

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in FLOP/s, most specific name first.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
}


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (``torch.cuda.get_device_name``); None if unknown."""
    name = device_name.lower()
    for key, flops in PEAK_BF16_FLOPS.items():
        if key.lower() in name:
            return flops
    return None


def mfu(tokens_per_s: float, n_params: int, peak_flops: float) -> float:
    """6·N·tokens/s as a fraction of ``peak_flops``."""
    return 6 * n_params * tokens_per_s / peak_flops
