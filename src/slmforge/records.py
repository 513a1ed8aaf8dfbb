"""The results record and predictions file: the contract between evaluation and everything after it.

Evaluation writes, per predictor directory:
- ``results.json``                 one :class:`ResultsRecord` (metrics, latency, tokens, provenance);
- ``predictions.jsonl``            one :class:`PredictionRow` per evaluated example;
- ``predictions_validation.jsonl`` the same on the validation split (routing calibrates there);
- ``confusion_matrix.json``        classification's label x label matrix (kept out of the record so that
                                   ``cat results.json`` stays readable with 77 labels);
- ``coverage_accuracy.json``       classification with an out-of-scope label or abstention: the
                                   coverage-vs-accuracy curve (``{"split", "threshold", "coverage",
                                   "accuracy", "abstain_threshold"}``, thresholds descending, coverage rising
                                   to 1); the record keeps its area (``accuracy_coverage_auc``) and the chosen
                                   point (``coverage``, ``selective_accuracy``, ``abstention``);
- ``coverage_accuracy.png``        that curve drawn (when matplotlib is installed).

Reporting, routing and the notebook read only these files (never model internals), so a number means the
same thing whichever predictor produced it. Every file name of the contract is defined here and nowhere
else. Schema history: 1 (no primary metric, provenance or request accounting), 2 (this module); version-1
records still load, their primary metric inferred from the task.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmforge.errors import RecordError

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
VALIDATION_PREDICTIONS_FILE = "predictions_validation.jsonl"
CONFUSION_MATRIX_FILE = "confusion_matrix.json"
COVERAGE_CURVE_FILE = "coverage_accuracy.json"
COVERAGE_CURVE_PLOT = "coverage_accuracy.png"
# A training run's folder: its summary, saved config (Hydra's), adapter and checkpoints.
RUN_SUMMARY_FILE = "metrics.json"
SAVED_CONFIG = ".hydra/config.yaml"
RESOLVED_CONFIG_FILE = "config_resolved.yaml"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
PREDICTORS_DIR = "predictors"
ROUTING_POLICY_FILE = "routing_policy.json"
ROUTING_FILE = "routing.json"

# The primary metric of records written before schema 2 (which did not say), by task.
_LEGACY_PRIMARY = {"classification": "accuracy", "extraction": "field_micro_f1", "generation": "rougeL"}


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
        # ``gold`` and ``pred`` stay when None (``from_dict`` requires both): an invalid prediction, e.g. an
        # unparseable API reply, is still a row every reader must accept.
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("gold", "pred")}

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

    ``primary_metric`` / ``higher_is_better``: the metric that ranks this record and its direction (the
    task's, so no reader restates it).
    ``predictor`` describes what produced the predictions:
      ``{"kind": "local"|"api", "method": "zero_shot"|"k_shot"|"finetuned"|"api"|..., "model": name,
         "model_id": hub id or file, "weights_sha256": hash of the evaluated base weights,
         "adapter": {"kind", "r", "alpha", "dropout", "target_modules", "path"} or None,
         "k": int, "selection": shot selection when k > 0, "params_m": float-or-None}``.
    ``data``: name, fingerprint (of all three splits), origin and split sizes; ``label_changes`` when the
    data simulated out-of-scope traffic or minority classes (``data.holdout_labels`` / ``minority_labels``).
    ``seed``, ``overrides`` (the command-line overrides of the job: what tells sweep jobs apart),
    ``versions`` (slmforge and the libraries that decide a number), ``git_sha`` (of slmforge's source).
    ``latency_ms`` holds mean/p50/p95/p99 of per-request latency; ``throughput`` examples/s.
    ``requests`` (API predictors): attempted, failed, cached, budget, and ``coverage`` = predicted / n.
    ``warnings``: what a reader must know before trusting the numbers (e.g. predictions collapsed onto one
    label).
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
    primary_metric: str = "accuracy"
    higher_is_better: bool = True
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    requests: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    git_sha: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def primary_value(self) -> float | None:
        v = self.metrics.get(self.primary_metric)
        return float(v) if isinstance(v, int | float) else None

    @property
    def swept(self) -> dict[str, str]:
        """``key=value`` overrides as a dict (``+``/``++`` prefixes dropped): the sweep's columns."""
        out = {}
        for o in self.overrides:
            if "=" in o and not o.startswith("~"):
                k, v = o.split("=", 1)
                out[k.lstrip("+")] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<record>") -> ResultsRecord:
        required = ["run_id", "name", "task", "split", "n", "predictor", "data", "metrics"]
        missing = [k for k in required if k not in d]
        if missing:
            raise RecordError(f"{where}: missing field(s) {missing} in results record")
        version = int(d.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise RecordError(
                f"{where}: results record schema {version} is newer than this slmforge reads "
                f"({SCHEMA_VERSION}); upgrade slmforge"
            )
        known = set(cls.__dataclass_fields__)
        defaults: dict[str, Any] = {
            "latency_ms": {},
            "throughput": {},
            "tokens": {},
            "schema_version": version,
        }
        if "primary_metric" not in d:
            defaults["primary_metric"] = _LEGACY_PRIMARY.get(str(d["task"]), "accuracy")
        return cls(**{**defaults, **{k: v for k, v in d.items() if k in known}})


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """Mean and p50/p95/p99 (linear interpolation, as numpy's default) of per-request latencies."""
    if len(latencies_ms) == 0:
        return {"mean": math.nan, "p50": math.nan, "p95": math.nan, "p99": math.nan}
    arr = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


def write_results(run_dir: str | Path, record: ResultsRecord, filename: str = RESULTS_FILE) -> Path:
    """Write ``results.json`` atomically (a crash never leaves half a file). A confusion matrix goes to
    ``confusion_matrix.json`` beside it (with its labels), a coverage-accuracy curve to
    ``coverage_accuracy.json``, and lists of numbers stay on one line, so the record reads on a screen."""
    path = Path(run_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    d = record.to_dict()
    matrix = d["metrics"].pop("confusion_matrix", None)
    if matrix is not None:
        labels = list((d["metrics"].get("per_class_f1") or {}).keys())
        side = {"labels": labels, "rows": "true label", "columns": "predicted label", "matrix": matrix}
        _atomic_write(path.parent / CONFUSION_MATRIX_FILE, _compact_json(side))
        d["metrics"]["confusion_matrix_file"] = CONFUSION_MATRIX_FILE
    curve = d["metrics"].pop("coverage_curve", None)
    if curve is not None:
        abstention = d["metrics"].get("abstention") or {}
        side = {"split": record.split, **curve, "abstain_threshold": abstention.get("threshold")}
        _atomic_write(path.parent / COVERAGE_CURVE_FILE, _compact_json(side))
        d["metrics"]["coverage_curve_file"] = COVERAGE_CURVE_FILE
    _atomic_write(path, _compact_json(d))
    return path


def _compact_json(obj: Any) -> str:
    """Indented JSON with every list of plain numbers, and every list of short space-free strings (target
    modules, overrides), on one line."""
    text = json.dumps(obj, indent=2, default=_json_default)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    return _WORD_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text)


_NUMBER_LIST = re.compile(
    r"\[\s*((?:-?[\d.eE+-]+|NaN|Infinity|null)(?:,\s*(?:-?[\d.eE+-]+|NaN|Infinity|null))*)\s*\]"
)
# Strings of up to 40 word characters and ``.-/:=+`` (no spaces, quotes, commas or escapes).
_WORD_LIST = re.compile(r'\[\s*("[\w.\-/:=+]{0,40}"(?:,\s*"[\w.\-/:=+]{0,40}")*)\s*\]')


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


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
