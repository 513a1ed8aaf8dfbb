"""A hand-built multirun directory of five results records, shared by the reporting and notebook tests.

Costs at the default prices (machine cpu-2core at $0.10/h, 10M requests/month), derived by hand:

- gpt-4o-mini-0shot: 500 in + 20 out at $0.00015/$0.0006 per 1k -> $0.000087/request, $0.087 per 1k
- gpt-4o-5shot:     1500 in + 20 out at $0.0025/$0.01 per 1k    -> $0.00395/request,  $3.95 per 1k
- smol-0shot:  0.10 / 3600 / 50 ex/s -> $5.556e-7/request, $0.0005556 per 1k
- lora-r16:    0.10 / 3600 / 40 ex/s -> $6.944e-7/request, $0.0006944 per 1k
- lora-r4:     same cost as lora-r16 but lower accuracy (a cost tie: dominated, not on the front)

Quality-vs-cost Pareto front: {smol-0shot (cheapest), lora-r16 (most accurate)}.
Decision order with weights quality .5 / cost .3 / latency(p95) .2:
lora-r16 (.9986) > lora-r4 (.9723) > gpt-4o-mini-0shot (.5858) > smol-0shot (.5) > gpt-4o-5shot (.4018).
"""

from __future__ import annotations

import json
from pathlib import Path

EXPECTED_ORDER = ["lora-r16", "lora-r4", "gpt-4o-mini-0shot", "smol-0shot", "gpt-4o-5shot"]
EXPECTED_PARETO = {"smol-0shot", "lora-r16"}
EXPECTED_WINNER = "lora-r16"


def _record(name: str, run_id: str, predictor: dict, acc: float, f1: float, p95: float, eps: float,
            prompt: float, completion: float, training: dict | None = None) -> dict:  # fmt: skip
    return {
        "run_id": run_id,
        "name": name,
        "task": "sentiment",
        "split": "test",
        "n": 200,
        "predictor": predictor,
        "data": {"dataset": "fixture", "n_train": 1000},
        "metrics": {"accuracy": acc, "macro_f1": f1, "per_label": {"pos": {"f1": f1}}},
        "latency_ms": {"mean": p95 * 0.6, "p50": p95 * 0.5, "p95": p95, "p99": p95 * 1.3},
        "throughput": {"examples_per_s": eps},
        "tokens": {"prompt_mean": prompt, "completion_mean": completion},
        "cost": {},
        "training": training or {},
    }


def records() -> dict[str, dict]:
    """name -> record dict."""
    smol = "HuggingFaceTB/SmolLM2-135M"
    local = {"kind": "local", "model": smol, "params_m": 135.0, "adapter": None, "k": None}
    return {
        "gpt-4o-mini-0shot": _record(
            "gpt-4o-mini-0shot", "r0", {"kind": "api", "method": "zero_shot", "model": "gpt-4o-mini", "k": 0},
            0.62, 0.55, 900.0, 2.5, 500, 20,
        ),
        "gpt-4o-5shot": _record(
            "gpt-4o-5shot", "r1", {"kind": "api", "method": "k_shot", "model": "gpt-4o", "k": 5},
            0.80, 0.78, 1200.0, 2.0, 1500, 20,
        ),
        "smol-0shot": _record(
            "smol-0shot", "r2", {**local, "method": "zero_shot"}, 0.35, 0.30, 30.0, 50.0, 120, 3,
        ),
        "lora-r16": _record(
            "lora-r16", "r2", {**local, "method": "finetuned", "adapter": "adapter/"}, 0.91, 0.90, 38.0,
            40.0, 60, 3, training={"time_s": 600.0, "tokens": 120000},
        ),
        "lora-r4": _record(
            "lora-r4", "r3", {**local, "method": "finetuned", "adapter": "adapter/"}, 0.88, 0.86, 35.0,
            40.0, 60, 3, training={"time_s": 300.0},
        ),
    }  # fmt: skip


def write_multirun(root: Path) -> Path:
    """Lay the records out like a Hydra multirun: numbered run dirs, one holding two records."""
    recs = records()
    layout = {
        "0/results.json": "gpt-4o-mini-0shot",
        "1/results.json": "gpt-4o-5shot",
        "2/results_zero_shot.json": "smol-0shot",
        "2/results_finetuned.json": "lora-r16",
        "3/results.json": "lora-r4",
    }
    for rel, name in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recs[name], indent=2))
        (path.parent / ".hydra").mkdir(exist_ok=True)
        (path.parent / ".hydra" / "config.yaml").write_text("task: sentiment\n")
    # A W&B copy of a record must not be counted twice (W&B keeps saved files under wandb/run-*/files).
    decoy = root / "2" / "wandb" / "run-x" / "files" / "results.json"
    decoy.parent.mkdir(parents=True, exist_ok=True)
    decoy.write_text(json.dumps(recs["lora-r16"]))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root
