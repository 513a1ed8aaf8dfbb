"""The leaderboard: one row per evaluated predictor with quality, latency, throughput and cost, ranked.

Rows are ordered by :func:`~slmforge.reporting.pareto.decision_score` over the user's weights (quality,
cost, latency by default) and flagged when on the quality-vs-cost Pareto front. :func:`recommendation`
turns the top row into one plain sentence a non-specialist can act on.

Quality is ranked in the direction the records give for their primary metric (``higher_is_better``).
A predictor that did not answer every example (failed requests, a spent request budget: ``coverage``
below 1) is measured on fewer examples than the others, so it ranks after every complete one and stays off
the Pareto front and out of the recommendation; an API model with no price has an unknown (NaN) cost and
is off the front too. Both come with a warning in the report. Override keys that differ between records
(a sweep's dimensions) become columns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from slmforge.economics.cost import cost_summary, ratio, record_training_cost
from slmforge.economics.pricing import Pricing, PricingError, load_pricing
from slmforge.errors import ConfigError, RecordError
from slmforge.records import ResultsRecord
from slmforge.reporting.collect import swept_keys
from slmforge.reporting.formatting import fmt_count, fmt_metric, fmt_ms, fmt_pct, fmt_usd
from slmforge.reporting.pareto import MAX, MIN, decision_score, pareto_front

log = logging.getLogger(__name__)

COST_COL = "cost_per_1k_usd"
MONTHLY_COL = "monthly_cost_usd"
LATENCY_COL = "latency_p95_ms"
COVERAGE_COL = "coverage"
DEFAULT_WEIGHTS: dict[str, float] = {"quality": 0.5, "cost": 0.3, "latency": 0.2}
# Metrics shown right after the primary one when present, in this order; others follow alphabetically.
_PREFERRED_METRICS = ["accuracy", "macro_f1", "micro_f1", "f1", "exact_match", "rougeL", "ece"]
# Metrics where lower is better (so a weight on them must minimise), for metrics no record names as its
# primary one (a record's own primary metric carries its direction).
_LOWER_IS_BETTER = {"ece", "brier", "loss", "perplexity", "wer", "cer"}
PROMPTED_METHODS = {"zero_shot", "k_shot", "few_shot", "prompted", "prompt"}
_METHOD_WORDS = {
    "finetuned": "fine-tuned",
    "fine_tuned": "fine-tuned",
    "lora": "LoRA-fine-tuned",
    "qlora": "QLoRA-fine-tuned",
    "zero_shot": "zero-shot",
    "few_shot": "few-shot",
}


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Top-level numeric metrics only: per-label dicts and confusion matrices stay in the JSON."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _metric_order(names: set[str], primary: str) -> list[str]:
    rest = [m for m in _PREFERRED_METRICS if m in names and m != primary]
    rest += sorted(names - set(rest) - {primary})
    return [primary, *rest]


_RESERVED = {
    "name", "method", "k", "model", "kind", "params_m", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "examples_per_s", "cost_basis", "priced_as", "training_time_s", "training_cost_usd", "n", "task", "split",
    "run_id", "score", "pareto", COVERAGE_COL,
}  # fmt: skip


def leaderboard(
    records: Sequence[ResultsRecord],
    pricing: Pricing | Mapping[str, Any] | None = None,
    primary_metric: str = "accuracy",
    weights: Mapping[str, float] | None = None,
    machine: str = "cpu-2core",
    training_machine: str | None = None,
    monthly_requests: int | None = None,
) -> pd.DataFrame:
    """One row per record, ranked by the decision score (best first).

    Columns: ``name, method, k, model, kind, params_m``, one per swept override key (e.g. ``adapter.r``),
    the primary metric and the other scalar metrics, ``latency_p50_ms/p95/p99``, ``examples_per_s``,
    ``cost_per_1k_usd``, ``monthly_cost_usd``, ``cost_basis``, ``priced_as``, ``training_time_s``,
    ``training_cost_usd``, ``coverage`` (share of the examples with a reply; 1 for local predictors),
    ``score``, ``pareto``. ``weights`` keys are ``quality``/``cost``/``latency`` (aliases for the primary
    metric, cost per 1k requests and p95 latency) or any numeric column name. ``df.attrs`` keeps the
    settings (primary metric and its direction, swept keys, weights, monthly volume, warnings) so
    :func:`recommendation` and the renderers need nothing else.
    """
    if not records:
        raise RecordError("no results records to rank; pass runs=[path/to/multirun]")
    pricing = load_pricing(pricing)
    volume = int(monthly_requests if monthly_requests is not None else pricing.monthly_requests)
    higher = _higher_is_better(records, primary_metric)
    # A swept key named like a column (`model=tiny` names the local model, not an API row's) is not shown.
    swept = [k for k in swept_keys(records) if k not in _RESERVED]
    warnings: list[str] = []
    rows: list[dict[str, Any]] = []
    all_metrics: set[str] = set()
    for r in records:
        # A metric named like a table column (e.g. the metric collection's own `n`) would duplicate it.
        metrics = {k: v for k, v in _scalar_metrics(r.metrics).items() if k not in _RESERVED}
        all_metrics |= set(metrics)
        p = r.predictor
        try:
            cost = cost_summary(r, pricing, machine=machine, monthly_requests=volume)
        except PricingError as e:
            if p.get("kind") != "api":
                raise  # an unknown machine is a report setting to fix, not a gap in one record
            # An API model missing from the table: its cost is unknown, never guessed (nor zero).
            warnings.append(f"{r.name}: cost unknown, so it is off the Pareto front ({e})")
            cost = _unpriced("unknown")
        except ValueError as e:
            # A record without throughput/tokens is a data gap: report it, keep the rest of the table.
            warnings.append(f"{r.name}: cost not computed ({e})")
            cost = _unpriced("")
        coverage = float(r.requests.get("coverage", 1.0))
        if coverage < 1.0:
            warnings.append(_coverage_warning(r, coverage))
        train_s, train_usd = record_training_cost(r, pricing, training_machine or machine)
        rows.append(
            {
                "name": r.name,
                "method": p.get("method", ""),
                "k": p.get("k"),
                "model": p.get("model", ""),
                "kind": p.get("kind", "local"),
                "params_m": p.get("params_m"),
                **{k: r.swept.get(k) for k in swept},
                **metrics,
                "latency_p50_ms": r.latency_ms.get("p50", math.nan),
                "latency_p95_ms": r.latency_ms.get("p95", math.nan),
                "latency_p99_ms": r.latency_ms.get("p99", math.nan),
                "examples_per_s": r.throughput.get("examples_per_s", math.nan),
                COST_COL: cost["per_1k_requests_usd"],
                MONTHLY_COL: cost["monthly_usd"],
                "cost_basis": cost["basis"],
                "priced_as": cost["priced_as"],
                "training_time_s": train_s,
                "training_cost_usd": train_usd,
                COVERAGE_COL: coverage,
                "n": r.n,
                "task": r.task,
                "split": r.split,
                "run_id": r.run_id,
            }
        )
    if primary_metric not in all_metrics:
        raise ConfigError(
            f"primary_metric '{primary_metric}' is in none of the records; they have: "
            f"{', '.join(sorted(all_metrics)) or 'no numeric metrics'} (set primary_metric=...)"
        )
    lacking = [row["name"] for row in rows if primary_metric not in row]
    if lacking:
        warnings.append(f"{', '.join(lacking)}: no '{primary_metric}' metric; scored as worst on quality")

    metric_cols = _metric_order(all_metrics, primary_metric)
    head = ["name", "method", "k", "model", "kind", "params_m"]
    tail = [
        "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "examples_per_s", COST_COL, MONTHLY_COL,
        "cost_basis", "priced_as", "training_time_s", "training_cost_usd", COVERAGE_COL, "n", "task", "split",
        "run_id",
    ]  # fmt: skip
    swept = [k for k in swept if k not in all_metrics]
    df = pd.DataFrame(rows).reindex(columns=head + swept + metric_cols + tail)
    for col in ["params_m", *metric_cols, *tail[:6], "training_time_s", "training_cost_usd", COVERAGE_COL]:
        df[col] = pd.to_numeric(df[col], errors="coerce")

    weights = dict(weights if weights is not None else DEFAULT_WEIGHTS)
    alias = {"quality": primary_metric, "cost": COST_COL, "latency": LATENCY_COL}
    col_weights = {alias.get(k, k): float(v) for k, v in weights.items()}
    directions = {c: _direction(c, primary_metric, higher) for c in col_weights}
    df["score"] = decision_score(df, col_weights, directions)
    whole = complete(df)
    df["pareto"] = pareto_front(df, primary_metric, COST_COL, maximize=higher, eligible=whole)
    # Complete rows first; ties on score are broken by quality, then cost, so the order is deterministic.
    df["_whole"] = whole
    df["_q"] = (df[primary_metric] if higher else -df[primary_metric]).fillna(-math.inf)
    df = df.sort_values(
        ["_whole", "score", "_q", COST_COL], ascending=[False, False, False, True], kind="stable"
    )
    df = df.drop(columns=["_whole", "_q"]).reset_index(drop=True)
    df.attrs.update(
        {
            "primary_metric": primary_metric,
            "higher_is_better": higher,
            "swept": swept,
            "weights": weights,
            "monthly_requests": volume,
            "machine": machine,
            "training_machine": training_machine or machine,
            "pricing_source": pricing.source,
            "utilisation": pricing.utilisation,
            "warnings": warnings,
        }
    )
    for w in warnings:
        log.warning(w)
    return df


def _unpriced(priced_as: str) -> dict[str, Any]:
    return {"per_1k_requests_usd": math.nan, "monthly_usd": math.nan, "basis": "", "priced_as": priced_as}


def _coverage_warning(r: ResultsRecord, coverage: float) -> str:
    """Why a record covers only part of its examples (failed requests, a spent budget), in one line."""
    failed = int(r.requests.get("failed") or 0)
    unfinished = round(r.n * (1.0 - coverage)) - failed
    why = [f"{failed} request(s) failed"] if failed else []
    if unfinished > 0:
        budget = r.requests.get("budget")
        spent = f" (request budget of {budget} spent)" if budget is not None else ""
        why.append(f"{unfinished} example(s) not predicted{spent}")
    return (
        f"{r.name}: answered only {fmt_pct(coverage)} of {r.n} examples ({'; '.join(why) or 'incomplete'}); "
        "its numbers are not comparable with complete runs, so it ranks last, off the Pareto front and out "
        "of the recommendation"
    )


def complete(df: pd.DataFrame) -> pd.Series:
    """Rows whose predictor answered every example (coverage 1): the only ones ranked against each other."""
    if COVERAGE_COL not in df:
        return pd.Series(True, index=df.index)
    return pd.to_numeric(df[COVERAGE_COL], errors="coerce").fillna(1.0) >= 1.0


def _higher_is_better(records: Sequence[ResultsRecord], primary: str) -> bool:
    """The primary metric's direction, as the records that rank on it say (for a metric none of them
    ranks on: higher is better unless it is a known error/loss metric)."""
    said = {r.higher_is_better for r in records if r.primary_metric == primary}
    if len(said) > 1:
        raise RecordError(
            f"the records disagree on whether a higher '{primary}' is better; re-evaluate the older ones"
        )
    return said.pop() if said else primary not in _LOWER_IS_BETTER


def _direction(col: str, primary: str, higher_is_better: bool) -> str:
    if col == primary:
        return MAX if higher_is_better else MIN
    if col.startswith(("latency_", "cost_", "monthly_", "training_")) or col in _LOWER_IS_BETTER:
        return MIN
    return MAX


def is_prompted(row: Mapping[str, Any]) -> bool:
    """Prompting baselines: any API model, and local models used zero-/few-shot without training."""
    return row.get("kind") == "api" or str(row.get("method", "")) in PROMPTED_METHODS


def describe(row: Mapping[str, Any]) -> str:
    """'fine-tuned SmolLM2-135M', '5-shot gpt-4o via API', 'zero-shot SmolLM2-135M'."""
    method = str(row.get("method") or "")
    k = row.get("k")
    if method == "k_shot":
        words = f"{int(k)}-shot" if k is not None and not pd.isna(k) else "few-shot"
    else:
        words = _METHOD_WORDS.get(method, method.replace("_", " "))
    text = f"{words} {row.get('model', '')}".strip()
    return f"{text} via API" if row.get("kind") == "api" else text


def recommendation(
    df: pd.DataFrame, quality_col: str | None = None, monthly_requests: int | None = None
) -> str:
    """One plain sentence recommending the top-ranked row, compared with the strongest alternative.

    The comparator is the best prompted baseline when the winner is fine-tuned/local, and the best
    non-prompted model when the winner is itself a prompted baseline. Rows that did not answer every
    example are neither recommended nor compared with.
    """
    if df.empty:
        return "No runs to compare."
    metric = quality_col or df.attrs.get("primary_metric", "accuracy")
    volume = int(monthly_requests or df.attrs.get("monthly_requests", 10_000_000))
    primary = df.attrs.get("primary_metric", metric)
    higher = bool(df.attrs.get("higher_is_better", True)) if metric == primary else True
    whole = df[complete(df)]
    if whole.empty:
        return (
            "Nothing to recommend: no predictor answered every example "
            f"({', '.join(f'`{n}`' for n in df['name'])}); see the warnings."
        )
    best = whole.loc[whole["score"].idxmax()] if "score" in whole else whole.iloc[0]
    others = whole.drop(index=best.name)
    winner_prompted = is_prompted(best)
    # a boolean Series keeps the columns when there are no other rows (a plain empty list selects no columns)
    pool = others[
        pd.Series(
            [is_prompted(r) != winner_prompted for _, r in others.iterrows()], index=others.index, dtype=bool
        )
    ]
    label = "the best prompted baseline" if not winner_prompted else "the best non-prompted model"
    if pool.empty and not others.empty:
        pool, label = others, "the runner-up"
    if pool[metric].notna().any():  # compare against a row that has the metric, when one does
        pool = pool[pool[metric].notna()]
    comp = None
    if not pool.empty:
        q = (pool[metric] if higher else -pool[metric]).fillna(-math.inf)
        top = pool[q == q.max()]
        comp = top.sort_values(COST_COL, kind="stable").iloc[0]

    direction = "" if higher else " (lower is better)"
    text = f"Deploy `{best['name']}` ({describe(best)}): {metric}{direction} {fmt_metric(best[metric])}"
    if comp is not None:
        text += f" vs {fmt_metric(comp[metric])} for {label} (`{comp['name']}`)"
    text += f", p95 {fmt_ms(best[LATENCY_COL])}, {fmt_usd(best[COST_COL])} per 1k requests"
    if comp is not None and not (pd.isna(best[COST_COL]) or pd.isna(comp[COST_COL])):
        target = comp["model"] if comp.get("kind") == "api" and comp.get("model") else f"`{comp['name']}`"
        phrase = ratio(float(best[COST_COL]), float(comp[COST_COL]))
        joiner = "as" if phrase.startswith("the same") else "than"
        text += (
            f" — {phrase} {joiner} {target} at {fmt_count(volume)} requests/month "
            f"({fmt_usd(best[MONTHLY_COL])} vs {fmt_usd(comp[MONTHLY_COL])})"
        )
    text += "."
    if "pareto" in df and not bool(best["pareto"]):
        text += (
            f" Note: it is off the {metric}-vs-cost Pareto front; its rank comes from the other weighted"
            " columns (latency)."
        )
    return text
