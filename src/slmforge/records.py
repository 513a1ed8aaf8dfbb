"""The results record and predictions file: the contract between evaluation and everything after it.

Evaluation writes, per run directory:
- ``results.json``     one :class:`ResultsRecord` (metrics, latency, tokens, cost, provenance);
- ``predictions.jsonl`` one :class:`PredictionRow` per evaluated example.

Reporting and routing read only these files (never model internals), so a number means the same thing
whichever predictor produced it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"


class RecordError(ValueError):
    """A results record or predictions file that cannot be read; the message names the file and field."""


@dataclass
class PredictionRow:
    """One evaluated example.

    ``id`` is stable across predictors evaluated on the same split (routing aligns rows on it).
    ``gold``/``pred`` are label strings (classification), dicts (extraction) or texts (generation).
    ``confidence`` is the predictor's probability for ``pred`` in [0, 1] (None when it has none).
    ``label_probs`` optionally holds the full distribution over labels (classification), used by
    calibration; ``correct`` is the task's per-example verdict (1.0/0.0, or a fraction for extraction).
    """

    id: str
    text: str
    gold: Any
    pred: Any
    confidence: float | None
    correct: float
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw_output: str | None = None
    label_probs: dict[str, float] | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str = "<row>") -> PredictionRow:
        missing = [k for k in ("id", "gold", "pred", "correct", "latency_ms") if k not in row]
        if missing:
            raise RecordError(f"{where}: missing field(s) {missing}; is this a slmforge predictions.jsonl?")
        known = set(cls.__dataclass_fields__)
        return cls(**{"text": "", "confidence": None, **{k: v for k, v in row.items() if k in known}})


@dataclass
class ResultsRecord:
    """Everything a report needs about one predictor evaluated on one split.

    ``predictor`` describes what produced the predictions:
      ``{"kind": "local"|"api", "method": "zero_shot"|"k_shot"|"finetuned"|..., "model": name,
         "adapter": path-or-None, "k": int-or-None, "params_m": float-or-None}``.
    ``latency_ms`` holds mean/p50/p95/p99 of per-request latency; ``throughput`` examples/s.
    ``cost`` holds ``per_1k_requests_usd`` and ``monthly_usd`` (see :mod:`slmforge.economics`).
    ``training`` holds training time/tokens when the predictor was fine-tuned in this run.
    """

    run_id: str
    name: str
    task: str
    split: str
    n: int
    predictor: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    latency_ms: dict[str, float]
    throughput: dict[str, float]
    tokens: dict[str, float]
    cost: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    git_sha: str | None = None
    created_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<record>") -> ResultsRecord:
        required = ["run_id", "name", "task", "split", "n", "predictor", "data", "metrics"]
        missing = [k for k in required if k not in d]
        if missing:
            raise RecordError(f"{where}: missing field(s) {missing} in results record")
        known = set(cls.__dataclass_fields__)
        defaults = {"latency_ms": {}, "throughput": {}, "tokens": {}}
        return cls(**{**defaults, **{k: v for k, v in d.items() if k in known}})


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """Mean and p50/p95/p99 (linear interpolation, as numpy's default) of per-request latencies."""
    if len(latencies_ms) == 0:
        return {"mean": math.nan, "p50": math.nan, "p95": math.nan, "p99": math.nan}
    arr = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


def write_results(run_dir: str | Path, record: ResultsRecord, filename: str = RESULTS_FILE) -> Path:
    path = Path(run_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, default=_json_default))
    tmp.replace(path)  # atomic: a crash never leaves half a results file
    return path


def read_results(path: str | Path) -> ResultsRecord:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        raise RecordError(f"{path}: no results record here; run slmforge-evaluate or slmforge-train first")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e}); delete it and re-run the evaluation") from e
    return ResultsRecord.from_dict(d, where=str(path))


def write_predictions(path: str | Path, rows: Iterable[PredictionRow]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row.to_dict(), default=_json_default) + "\n")
    return path


def read_predictions(path: str | Path) -> list[PredictionRow]:
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    if not path.exists():
        raise RecordError(f"{path}: no predictions file here; evaluate the run first")
    rows = []
    with path.open() as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(PredictionRow.from_dict(json.loads(line), where=f"{path}:{i}"))
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{i}: not valid JSON ({e})") from e
    return rows


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
