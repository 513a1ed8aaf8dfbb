"""MFU: peak lookup by GPU name and the 6·N·tokens/s arithmetic."""

from __future__ import annotations

import pytest

from slmforge.training.throughput import mfu, peak_bf16_flops


def test_peak_lookup_by_device_name() -> None:
    assert peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12  # the specific name wins over "H100"
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("Some Future GPU") is None


def test_mfu_is_six_n_tokens_over_peak() -> None:
    # 1.7B parameters at 43,717 tokens/s on an H200 (the strongest plain-Trainer figure): 45%.
    assert mfu(43_717, 1_711_376_384, 989e12) == pytest.approx(6 * 1_711_376_384 * 43_717 / 989e12)
    assert mfu(43_717, 1_711_376_384, 989e12) == pytest.approx(0.454, abs=0.001)
