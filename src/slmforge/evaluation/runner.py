"""One evaluation path: run a predictor over a split -> predictions + metrics + latency -> results record.

Used by validation inside training, by ``slmforge-train``'s final test, by ``slmforge-evaluate`` and by the
comparison sweeps, so a metric means the same thing everywhere.

Latency is measured two ways: ``throughput`` is batched examples/s over the whole split (what a batch job
sees); ``latency_ms`` is the distribution of *single-request* latency (batch size 1) over a probe of
``latency_probe_n`` examples (what an online request sees). API predictors already time each request,
so their per-row latencies are used directly.

Predictors that send requests (API ones, counting them in ``requests_made``) also get the record's
``requests``: requests sent, failed and cached examples, the budget, and the coverage. A predictor that
stops early (:class:`~slmforge.prediction.base.IncompletePredictions`: its request budget ran out) still
gets a record, of the rows that finished, with coverage below 1.

Abstention (a task whose ``abstention_needs_validation``: classification with
``task.abstain.threshold=auto``): the validation split is predicted *first*, the threshold chosen there
(per predictor, recorded in ``metrics.abstention`` with where it was chosen), then the test rows are
predicted, judged with it, and the record written at once; the validation predictions written after it
reuse the first pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from slmforge.errors import DivergenceError
from slmforge.prediction.base import IncompletePredictions, Prediction, Predictor
from slmforge.records import (
    COVERAGE_CURVE_PLOT,
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    PredictionRow,
    ResultsRecord,
    latency_summary,
    write_predictions,
    write_results,
)
from slmforge.tasks.base import Task

log = logging.getLogger(__name__)


def predict_rows(
    predictor: Predictor,
    task: Task,
    examples: Sequence[dict[str, Any]],
    chunk: int | None = None,
    progress: str | None = None,
) -> list[PredictionRow]:
    """Predict ``examples`` in chunks (for a progress bar) and let the task judge each prediction.

    Chunks are cut from the examples sorted by text length, so each batch pads little (predictions do
    not depend on the batch they run in: tested per predictor); rows come back in input order. A predictor
    that stops early raises its :class:`IncompletePredictions` (:func:`predict_available` keeps the rows).
    """
    rows, stopped = predict_available(predictor, task, examples, chunk, progress)
    if stopped is not None:
        raise stopped
    return rows


def predict_available(
    predictor: Predictor,
    task: Task,
    examples: Sequence[dict[str, Any]],
    chunk: int | None = None,
    progress: str | None = None,
) -> tuple[list[PredictionRow], IncompletePredictions | None]:
    """:func:`predict_rows` that keeps what finished when the predictor stops early: the finished rows in
    input order, and the exception that stopped it (``None`` when every example was predicted)."""
    rows: list[PredictionRow | None] = [None] * len(examples)
    bar = tqdm(total=len(examples), desc=progress, unit="ex", disable=progress is None, leave=False)
    chunk = chunk or max(1, int(getattr(predictor, "batch_size", 16)))
    order = sorted(range(len(examples)), key=lambda i: len(str(examples[i].get("text", ""))))
    stopped: IncompletePredictions | None = None
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        preds: list[Prediction | None]
        try:
            preds = list(predictor.predict([examples[i] for i in idx]))
        except IncompletePredictions as e:
            stopped, preds = e, e.predictions
        for i, p in zip(idx, preds, strict=True):
            if p is not None:
                rows[i] = to_row(task, examples[i], p)
        bar.update(len(idx))
        if stopped is not None:
            break
    bar.close()
    return [r for r in rows if r is not None], stopped


def failed(row: PredictionRow) -> bool:
    """Whether the row's request failed (an API error after retries, or a reply that was no completion):
    there is no reply to time or price, only a wrong answer to score."""
    return "error" in (row.details or {})


def request_accounting(
    rows: Sequence[PredictionRow], n: int, sent: int, budget: int | None
) -> dict[str, Any]:
    """The record's ``requests``: HTTP requests ``attempted`` (retries included), examples whose request
    ``failed`` or came from the cache (``cached``), the ``budget``, and ``coverage``: the share of the
    ``n`` examples asked that got a reply (failed and unfinished examples are not covered)."""
    n_failed = sum(failed(r) for r in rows)
    return {
        "attempted": int(sent),
        "failed": n_failed,
        "cached": sum(bool((r.details or {}).get("cache_hit")) for r in rows),
        "budget": budget,
        "coverage": (len(rows) - n_failed) / n if n else 1.0,
    }


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


def check_finite(rows: Sequence[PredictionRow], name: str) -> None:
    """Non-finite probabilities never reach a record: they mean broken weights, not a bad prediction."""
    bad = [
        r.id
        for r in rows
        if (r.confidence is not None and not math.isfinite(r.confidence))
        or any(not math.isfinite(v) for v in (r.label_probs or {}).values())
    ]
    if bad:
        raise DivergenceError(
            f"{name}: the model produced non-finite probabilities on {len(bad)} of {len(rows)} rows (e.g. id "
            f"{bad[0]}); its weights are likely NaN or infinite (a diverged adapter?). Nothing was written for "
            f"this predictor; retrain with a lower train.lr or check the adapter file"
        )


def collapse_warning(rows: Sequence[PredictionRow]) -> str | None:
    """A classifier that answers (almost) one label while the gold labels are spread out has collapsed:
    its accuracy is the majority share, not skill. Warned in the summary and the record."""
    labels = [r.pred for r in rows if isinstance(r.pred, str)]
    golds = [r.gold for r in rows if isinstance(r.gold, str)]
    if len(labels) < 8 or len(golds) < 8:
        return None
    ((top, n_top),) = Counter(labels).most_common(1)
    gold_share = Counter(golds).most_common(1)[0][1] / len(golds)
    share = n_top / len(labels)
    if share >= 0.9 and gold_share < 0.5:
        return (
            f"predictions collapsed: '{top}' for {share:.0%} of {len(labels)} rows while the most common gold "
            f"label is {gold_share:.0%}: it answers one label whatever the input, so its accuracy is that label's "
            f"share, not skill (fine-tuned: learning rate too high or too few steps?)"
        )
    return None


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
    sent_before = getattr(predictor, "requests_made", None)
    early_val: list[PredictionRow] | None = None
    val_stopped: IncompletePredictions | None = None
    if task.abstention_needs_validation and validation_examples:
        early_val, val_stopped = predict_available(
            predictor, task, validation_examples, progress=f"{name}/validation"
        )
        check_finite(early_val, name)
    # Evaluating validation itself without separate validation rows: the threshold comes from its own rows.
    self_chosen = task.abstention_needs_validation and early_val is None and split == "validation"
    abstention = None if self_chosen else _abstention(task, early_val, split)  # fails before the test pass
    t0 = time.perf_counter()
    rows, stopped = predict_available(predictor, task, examples, progress=f"{name}/{split}")
    wall = time.perf_counter() - t0
    check_finite(rows, name)
    if stopped is not None:
        log.warning("%s: %d of %d %s examples finished; recording those. %s", name, len(rows),
                    len(examples), split, stopped)  # fmt: skip
    if self_chosen:
        abstention = task.choose_abstention(rows, "validation (the evaluated split itself)")
    rows = task.apply_abstention(rows, abstention)
    metrics = task.compute_metrics(rows)
    if abstention:
        metrics["abstain_threshold"] = abstention["threshold"]
        metrics["abstention"] = abstention
    described = predictor.describe()
    # Only rows that got a reply have a latency and tokens to price (a failed request is neither fast nor
    # free); a cache hit carries the latency its original request had.
    answered = [r for r in rows if not failed(r)]
    if described.get("measures_request_latency", False):
        latencies = [r.latency_ms for r in answered]
    else:
        latencies = single_request_latency(predictor, examples, latency_probe_n) if latency_probe_n else []
    n = len(examples)
    requests: dict[str, Any] = {}
    if sent_before is not None:
        sent = predictor.requests_made - sent_before  # type: ignore[attr-defined]
        requests = request_accounting(rows, n, sent, described.get("request_budget"))
    collapsed = collapse_warning(rows)
    if collapsed:
        log.warning("%s: %s", name, collapsed)
    record = ResultsRecord(
        warnings=[collapsed] if collapsed else [],
        run_id=uuid.uuid4().hex[:12],
        name=name,
        task=task.name,
        split=split,
        n=n,
        predictor={**predictor_info, **described, **_search_tokens(rows)},
        data=data_info,
        metrics=metrics,
        latency_ms=latency_summary(latencies),
        throughput={
            "examples_per_s": len(rows) / wall if wall > 0 else 0.0,
            "batched_ms_per_example": 1000 * wall / max(len(rows), 1),
            "batch_size": float(getattr(predictor, "batch_size", 1)),
        },
        tokens={
            "prompt_mean": _mean([r.prompt_tokens for r in answered]),
            "completion_mean": _mean([r.completion_tokens for r in answered]),
            "prompt_total": sum(r.prompt_tokens for r in rows),
            "completion_total": sum(r.completion_tokens for r in rows),
        },
        primary_metric=task.primary_metric,
        higher_is_better=bool(task.higher_is_better),
        seed=run_info.get("seed"),
        overrides=list(run_info.get("overrides") or []),
        requests=requests,
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
        if "coverage_curve" in metrics:
            plot_coverage_curve(out_dir / COVERAGE_CURVE_PLOT, metrics, name, split)
        if validation_examples and stopped is None:  # a predictor that stopped on test cannot go on
            if early_val is not None:  # predicted first, to choose the abstention threshold
                val_rows = early_val
            else:
                val_rows, val_stopped = predict_available(
                    predictor, task, validation_examples, progress=f"{name}/validation"
                )
            val_rows = task.apply_abstention(val_rows, abstention)
            if val_stopped is not None:
                log.warning("%s: %d of %d validation examples finished. %s", name, len(val_rows),
                            len(validation_examples), val_stopped)  # fmt: skip
            write_predictions(out_dir / VALIDATION_PREDICTIONS_FILE, val_rows)
            record.metrics = {**metrics, "validation": _scalars(task.compute_metrics(val_rows))}
            write_results(out_dir, record)
    return record, rows


def _abstention(task: Task, validation_rows: list[PredictionRow] | None, split: str) -> dict[str, Any] | None:
    """The task's abstention rule for this predictor: fixed by config, or chosen on the validation rows
    predicted first (the task raises a :class:`~slmforge.errors.TaskError` when it needs them and there
    are none)."""
    if not task.abstention_needs_validation:
        return task.choose_abstention(None, "config")
    return task.choose_abstention(validation_rows, "validation" if validation_rows is not None else split)


def plot_coverage_curve(path: Path, metrics: dict[str, Any], name: str, split: str) -> Path | None:
    """``metrics["coverage_curve"]`` as a PNG, this split's point at the abstention threshold marked;
    skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curve, abstention = metrics["coverage_curve"], metrics.get("abstention")
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    ax.step(curve["coverage"], curve["accuracy"], where="pre", label="answer if confidence >= t")
    if abstention and isinstance(metrics.get("selective_accuracy"), float):
        ax.plot([metrics["coverage"]], [metrics["selective_accuracy"]], "o", color="C3",
                label=f"t={abstention['threshold']:.3f} (chosen on {abstention.get('chosen_on')})")  # fmt: skip
    ax.set_xlabel("coverage (share of rows answered)")
    ax.set_ylabel("accuracy on answered rows")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name} / {split}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _mean(values: Sequence[float]) -> float:
    """NaN for no values: a mean that does not exist must not read as zero tokens (zero cost)."""
    return sum(values) / len(values) if values else math.nan


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
