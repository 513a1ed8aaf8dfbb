"""One evaluation path: run a predictor over a split -> predictions + metrics + latency -> results record.

Used by validation inside training, by ``slmforge-train``'s final test, by ``slmforge-evaluate`` and by the
comparison sweeps, so a metric means the same thing everywhere.

Latency is measured two ways: ``throughput`` is batched examples/s over the whole split (what a batch job
sees); ``latency_ms`` is the distribution of *single-request* latency (batch size 1) over a probe of
``latency_probe_n`` examples (what an online request sees). API predictors already time each request,
so their per-row latencies are used directly.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from slmforge.prediction.base import Prediction, Predictor
from slmforge.records import (
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    PredictionRow,
    ResultsRecord,
    latency_summary,
    write_predictions,
    write_results,
)
from slmforge.tasks.base import Task


def predict_rows(
    predictor: Predictor,
    task: Task,
    examples: Sequence[dict[str, Any]],
    chunk: int | None = None,
    progress: str | None = None,
) -> list[PredictionRow]:
    """Predict ``examples`` in chunks (for a progress bar) and let the task judge each prediction.

    Chunks are cut from the examples sorted by text length, so each batch pads little (predictions do
    not depend on the batch they run in: tested per predictor); rows come back in input order.
    """
    rows: list[PredictionRow | None] = [None] * len(examples)
    bar = tqdm(total=len(examples), desc=progress, unit="ex", disable=progress is None, leave=False)
    chunk = chunk or max(1, int(getattr(predictor, "batch_size", 16)))
    order = sorted(range(len(examples)), key=lambda i: len(str(examples[i].get("text", ""))))
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        preds: list[Prediction] = predictor.predict([examples[i] for i in idx])
        for i, p in zip(idx, preds, strict=True):
            rows[i] = to_row(task, examples[i], p)
        bar.update(len(idx))
    bar.close()
    return [r for r in rows if r is not None]


def to_row(task: Task, example: dict[str, Any], p: Prediction) -> PredictionRow:
    gold = task.gold(example)
    details = dict(p.details or {})
    if p.raw_output is not None:
        details.update(task.row_details(p.raw_output, gold))
    return PredictionRow(
        id=str(example["id"]),
        text=example["text"],
        gold=gold,
        pred=p.pred,
        confidence=p.confidence,
        correct=task.correct(p.pred, gold),
        latency_ms=round(p.latency_ms, 3),
        prompt_tokens=p.prompt_tokens,
        completion_tokens=p.completion_tokens,
        raw_output=p.raw_output,
        label_probs=p.label_probs,
        details=details or None,
    )


def single_request_latency(predictor: Predictor, examples: Sequence[dict[str, Any]], n: int) -> list[float]:
    """Wall time of ``n`` one-example requests (after one warm-up), in ms."""
    probe = list(examples[: n + 1])
    out = []
    for i, ex in enumerate(probe):
        t0 = time.perf_counter()
        predictor.predict([ex])
        if i > 0:  # the first call pays one-off costs (allocations, lazy init)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _search_tokens(rows: Sequence[PredictionRow]) -> dict[str, float]:
    """Exact label-trie decoding: trie nodes run per row, on average -- what decides its speed (a
    confident model runs its answer's path, ~6 on banking77; an unsure one many more, of 481 label tokens
    for exact scoring)."""
    counts = [r.details["searched_nodes"] for r in rows if r.details and "searched_nodes" in r.details]
    return {"searched_nodes_mean": sum(counts) / len(counts)} if counts else {}


def evaluate_split(
    predictor: Predictor,
    task: Task,
    examples: Sequence[dict[str, Any]],
    *,
    name: str,
    split: str,
    predictor_info: dict[str, Any],
    data_info: dict[str, Any],
    out_dir: str | Path | None = None,
    latency_probe_n: int = 16,
    validation_examples: Sequence[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> tuple[ResultsRecord, list[PredictionRow]]:
    """Evaluate and (with ``out_dir``) write ``results.json`` + ``predictions.jsonl`` there.

    ``validation_examples``: also predict these and write ``predictions_validation.jsonl`` (routing fits
    its calibration temperature and threshold on them, never on the test split). ``run_info``: seed,
    overrides and config path of the job (:func:`slmforge.build.run_info`).
    """
    from slmforge.build import library_versions, package_git_sha

    run_info = run_info or {}
    t0 = time.perf_counter()
    rows = predict_rows(predictor, task, examples, progress=f"{name}/{split}")
    wall = time.perf_counter() - t0
    metrics = task.compute_metrics(rows)
    measures_requests = bool(predictor.describe().get("measures_request_latency", False))
    if measures_requests:
        latencies = [r.latency_ms for r in rows if not (r.details or {}).get("cache_hit")]
    else:
        latencies = single_request_latency(predictor, examples, latency_probe_n) if latency_probe_n else []
    n = len(rows)
    record = ResultsRecord(
        run_id=uuid.uuid4().hex[:12],
        name=name,
        task=task.name,
        split=split,
        n=n,
        predictor={**predictor_info, **predictor.describe(), **_search_tokens(rows)},
        data=data_info,
        metrics=metrics,
        latency_ms=latency_summary(latencies),
        throughput={
            "examples_per_s": n / wall if wall > 0 else 0.0,
            "batched_ms_per_example": 1000 * wall / max(n, 1),
            "batch_size": float(getattr(predictor, "batch_size", 1)),
        },
        tokens={
            "prompt_mean": sum(r.prompt_tokens for r in rows) / max(n, 1),
            "completion_mean": sum(r.completion_tokens for r in rows) / max(n, 1),
            "prompt_total": sum(r.prompt_tokens for r in rows),
            "completion_total": sum(r.completion_tokens for r in rows),
        },
        primary_metric=task.primary_metric,
        higher_is_better=bool(task.higher_is_better),
        seed=run_info.get("seed"),
        overrides=list(run_info.get("overrides") or []),
        training=training or {},
        tags=tags or {},
        config_path=run_info.get("config_path"),
        git_sha=package_git_sha(),
        versions=library_versions(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_predictions(out_dir / PREDICTIONS_FILE, rows)
        write_results(out_dir, record)  # the record asked for is on disk before any further pass
        if validation_examples:
            val_rows = predict_rows(predictor, task, validation_examples, progress=f"{name}/validation")
            write_predictions(out_dir / VALIDATION_PREDICTIONS_FILE, val_rows)
            record.metrics = {**metrics, "validation": _scalars(task.compute_metrics(val_rows))}
            write_results(out_dir, record)
    return record, rows


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
