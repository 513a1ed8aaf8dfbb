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

Seeds: records of one predictor over several seeds (:func:`~slmforge.reporting.collect.seed_groups`) make
one row whose numbers are means over the seeds (``n_seeds``, ``seeds``). With the prediction rows
(:class:`~slmforge.reporting.evidence.Evidence`) each row gets a 95% interval of the primary metric
(``ci_low``/``ci_high``; one seed: bootstrap over test rows, several: two-level bootstrap over seeds then
rows, named in ``ci_method``) and its paired difference from the best-quality row on the same rows
(``diff``, ``diff_low``, ``diff_high``, exact McNemar ``mcnemar_p`` for accuracy). A difference whose
interval contains 0 is not significant: the row is ``tied_with_best`` and ``vs_best`` ends in ``n.s.``;
:func:`recommendation` then calls it a tie and never names a dominated option.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from slmforge.economics.cost import cost_summary, ratio, record_training_cost
from slmforge.economics.pricing import Pricing, PricingError, load_pricing
from slmforge.errors import ConfigError, RecordError
from slmforge.records import ResultsRecord
from slmforge.reporting.collect import SEED_KEYS, seed_groups, swept_keys
from slmforge.reporting.formatting import fmt_count, fmt_metric, fmt_ms, fmt_pct, fmt_usd
from slmforge.reporting.pareto import MAX, MIN, decision_score, pareto_front
from slmforge.reporting.statistics import DEFAULT_RESAMPLES, metric_interval, paired_difference

if TYPE_CHECKING:
    from slmforge.reporting.evidence import Evidence

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
    "run_id", "score", "pareto", COVERAGE_COL, "scoring", "n_seeds", "seeds", "ci_low", "ci_high", "ci_method",
    "diff", "diff_low", "diff_high", "mcnemar_p", "tied_with_best", "vs_best",
}  # fmt: skip
STAT_COLS = ["n_seeds", "seeds", "ci_low", "ci_high", "ci_method", "diff", "diff_low", "diff_high", "mcnemar_p",
             "tied_with_best", "vs_best"]  # fmt: skip


def leaderboard(
    records: Sequence[ResultsRecord],
    pricing: Pricing | Mapping[str, Any] | None = None,
    primary_metric: str = "accuracy",
    weights: Mapping[str, float] | None = None,
    machine: str = "cpu-2core",
    training_machine: str | None = None,
    monthly_requests: int | None = None,
    *,
    evidence: Evidence | None = None,
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
) -> pd.DataFrame:
    """One row per predictor (its records over seeds averaged), ranked by the decision score (best first).

    Columns: ``name, method, k, model, kind, params_m``, one per swept override key (e.g. ``adapter.r``),
    the primary metric and the other scalar metrics, ``latency_p50_ms/p95/p99``, ``examples_per_s``,
    ``cost_per_1k_usd``, ``monthly_cost_usd``, ``cost_basis``, ``priced_as``, ``training_time_s``,
    ``training_cost_usd``, ``coverage`` (share of the examples with a reply; 1 for local predictors),
    ``score``, ``pareto``, ``scoring`` (prompted rows: raw, length_norm or calibrated label scoring; raw
    for records that predate it), and the statistics columns :data:`STAT_COLS` (NaN without ``evidence``,
    the prediction rows; ``alpha`` and ``resamples`` set the intervals). ``weights`` keys are ``quality``/``cost``/``latency`` (aliases for the primary
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
    swept = [k for k in swept_keys(records) if k not in _RESERVED and k not in SEED_KEYS]
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
                "scoring": _scoring(p),
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
                "_seed": r.seed,
            }
        )
    rows = [_merge_seeds([rows[i] for i in g]) for g in seed_groups(records)]
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
        "cost_basis", "priced_as", "scoring", "training_time_s", "training_cost_usd", COVERAGE_COL, "n", "task", "split",
        "run_id",
    ]  # fmt: skip
    swept = [k for k in swept if k not in all_metrics]
    df = pd.DataFrame(rows).reindex(columns=head + swept + metric_cols + tail + STAT_COLS)
    for col in ["params_m", *metric_cols, *tail[:6], "training_time_s", "training_cost_usd", COVERAGE_COL,
                "n_seeds", "ci_low", "ci_high", "diff", "diff_low", "diff_high", "mcnemar_p"]:  # fmt: skip
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
    labels = _label_list(records)
    stats = _add_statistics(df, evidence, primary_metric, higher, labels, alpha, resamples, warnings)
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
            **stats,
        }
    )
    for w in warnings:
        log.warning(w)
    return df


def _unpriced(priced_as: str) -> dict[str, Any]:
    return {"per_1k_requests_usd": math.nan, "monthly_usd": math.nan, "basis": "", "priced_as": priced_as}


def _scoring(p: Mapping[str, Any]) -> str:
    """How a prompted predictor scored its labels (records before the field existed: raw)."""
    if p.get("kind") == "api" or str(p.get("method", "")) in PROMPTED_METHODS:
        return str(p.get("scoring") or "raw")
    return str(p.get("scoring") or "")


def _merge_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One predictor's per-seed leaderboard rows as one: numbers are means over the seeds (coverage the
    smallest, so one incomplete seed marks the predictor incomplete), text is the first seed's."""
    seeds = [r.pop("_seed") for r in rows]
    out = dict(rows[0])
    out["n_seeds"] = len(rows)
    out["seeds"] = ",".join(str(s) for s in seeds if s is not None)
    if len(rows) == 1:
        return out
    for key in out:
        values = [r.get(key) for r in rows]
        if key == COVERAGE_COL:
            out[key] = min(float(v) for v in values)
        elif key == "run_id":
            out[key] = ",".join(str(v) for v in values if v)
        elif key in ("n_seeds", "seeds"):
            continue
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values if v is not None):
            nums = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            out[key] = float(nums.mean()) if nums.notna().any() else math.nan
            if key == "n":
                out[key] = round(out[key])
    return out


def _label_list(records: Sequence[ResultsRecord]) -> list[str] | None:
    """The classification label list (macro-F1 averages over all of it), from the per-class F1 keys."""
    for r in records:
        per_class = r.metrics.get("per_class_f1")
        if isinstance(per_class, Mapping) and per_class:
            return [str(k) for k in per_class]
    return None


def _fmt_signed(x: float) -> str:
    return f"{x:+.3f}".replace("+0.000", "0.000").replace("-0.000", "0.000")


def ci_label(alpha: float = 0.05) -> str:
    """'95% CI' for alpha 0.05 (the report's ``statistics.alpha``)."""
    return f"{100 * (1 - float(alpha)):g}% CI"


def fmt_difference(d: Mapping[str, Any], metric: str) -> str:
    """'Δ accuracy -0.021, 95% CI [-0.063, +0.021], McNemar p=0.48' (p only when computed)."""
    level = ci_label(d.get("alpha", 0.05))
    text = f"Δ {metric} {_fmt_signed(d['diff'])}, {level} [{_fmt_signed(d['diff_low'])}, {_fmt_signed(d['diff_high'])}]"
    p = d.get("mcnemar_p")
    if p is not None and not pd.isna(p):
        text += f", McNemar p={float(p):.2g}"
    n_seeds = d.get("n_seeds")
    if n_seeds is not None and not pd.isna(n_seeds) and int(n_seeds) > 1:
        text += f"; {int(n_seeds)} seeds"
    return text


def _add_statistics(
    df: pd.DataFrame,
    evidence: Evidence | None,
    metric: str,
    higher: bool,
    labels: list[str] | None,
    alpha: float,
    resamples: int,
    warnings: list[str],
) -> dict[str, Any]:
    """Fill the interval and vs-best columns in place; return the attrs that describe them.

    "Best" is the complete row with the best mean primary metric among those with prediction rows; every
    other row's difference is paired with it on the seeds both share. The pair the recommendation
    compares (the top-ranked row and its comparator) is computed too when neither is the best.
    """
    df["tied_with_best"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    df["vs_best"] = ""
    df["ci_method"] = ""
    rows = (evidence.rows if evidence is not None else {}) or {}
    have = [i for i in df.index if df.at[i, "name"] in rows]
    if not have:
        return {}
    notes: set[str] = set()
    for i in list(have):
        try:
            est = metric_interval(rows[df.at[i, "name"]], metric, labels, alpha, resamples)
        except ValueError as e:  # an empty predictions file: no interval for that row, the rest stand
            warnings.append(f"{df.at[i, 'name']}: no interval ({e})")
            have.remove(i)
            continue
        df.at[i, "ci_low"], df.at[i, "ci_high"] = est.low, est.high
        df.at[i, "ci_method"] = est.method
        if est.note:
            notes.add(est.note)
    whole = complete(df)
    ranked = [i for i in have if whole[i] and pd.notna(df.at[i, metric])]
    if not ranked:
        return {"ci_notes": sorted(notes)}
    q = df.loc[ranked, metric] if higher else -df.loc[ranked, metric]
    best = q.idxmax()
    best_name = str(df.at[best, "name"])
    for i in have:
        if i == best:
            df.at[i, "diff"] = df.at[i, "diff_low"] = df.at[i, "diff_high"] = 0.0
            df.at[i, "tied_with_best"] = True
            df.at[i, "vs_best"] = "best"
            continue
        d = _pair(rows, str(df.at[i, "name"]), best_name, metric, labels, alpha, resamples, warnings)
        if d is None:
            df.at[i, "vs_best"] = "not paired (no shared seed)"
            continue
        df.at[i, "diff"], df.at[i, "diff_low"], df.at[i, "diff_high"] = d.estimate, d.low, d.high
        df.at[i, "mcnemar_p"] = math.nan if d.mcnemar_p is None else d.mcnemar_p
        df.at[i, "tied_with_best"] = not d.significant
        df.at[i, "vs_best"] = f"{_fmt_signed(d.estimate)} [{_fmt_signed(d.low)}, {_fmt_signed(d.high)}]" + (
            " n.s." if not d.significant else ""
        )
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    if whole.any():
        top = df[whole].iloc[0]
        comp, _ = comparator(df[whole], top, metric, higher)
        names = {str(top["name"]), None if comp is None else str(comp["name"])}
        if comp is not None and best_name not in names and names <= set(rows):
            d = _pair(rows, str(top["name"]), str(comp["name"]), metric, labels, alpha, resamples, warnings)
            if d is not None:
                pairs[(str(top["name"]), str(comp["name"]))] = _diff_dict(d, alpha)
    return {"best_quality": best_name, "pairs": pairs, "ci_notes": sorted(notes), "alpha": alpha}


def _diff_dict(d: Any, alpha: float) -> dict[str, Any]:
    return {
        "diff": d.estimate, "diff_low": d.low, "diff_high": d.high, "n_seeds": d.n_seeds,
        "mcnemar_p": math.nan if d.mcnemar_p is None else d.mcnemar_p, "significant": d.significant,
        "alpha": alpha,
    }  # fmt: skip


def _pair(
    rows: Mapping[str, Any], a: str, b: str, metric: str, labels: list[str] | None, alpha: float,
    resamples: int, warnings: list[str],
) -> Any:  # fmt: skip
    try:
        return paired_difference(rows[a], rows[b], metric, labels, alpha, resamples)
    except ValueError:
        warnings.append(f"{a}: no seed shared with {b}, so their difference is not tested")
    except RecordError as e:
        warnings.append(f"{a} vs {b}: not compared on the same rows ({e})")
    return None


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


def comparator(
    whole: pd.DataFrame, best: pd.Series, metric: str, higher: bool = True
) -> tuple[pd.Series | None, str]:
    """The row ``best`` is compared with, and how to call it: the best prompted baseline when ``best`` is
    fine-tuned/local, the best non-prompted model when ``best`` is itself prompted, else the runner-up
    (the cheapest of equal quality)."""
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
    if metric in pool and pool[metric].notna().any():  # compare against a row that has the metric
        pool = pool[pool[metric].notna()]
    if pool.empty:
        return None, label
    q = (pool[metric] if higher else -pool[metric]).fillna(-math.inf)
    top = pool[q == q.max()]
    return top.sort_values(COST_COL, kind="stable").iloc[0], label


def _dominated(row: pd.Series, rows: pd.DataFrame, metric: str, higher: bool) -> bool:
    """Another row at least as good on quality, cost and p95 latency, and strictly better on one."""

    def vals(r: pd.Series) -> tuple[float, float, float]:
        q = float(r[metric]) if pd.notna(r[metric]) else -math.inf
        c = float(r[COST_COL]) if pd.notna(r[COST_COL]) else math.inf
        lat = float(r[LATENCY_COL]) if pd.notna(r[LATENCY_COL]) else math.inf
        return (q if higher else -q), -c, -lat

    mine = vals(row)
    for idx, other in rows.iterrows():
        if idx == row.name:
            continue
        theirs = vals(other)
        if all(t >= m for t, m in zip(theirs, mine, strict=True)) and theirs != mine:
            return True
    return False


def _pick_among_tied(tied: pd.DataFrame, whole: pd.DataFrame, metric: str, higher: bool) -> pd.Series:
    """Of rows with no significant quality difference: the cheapest, then the fastest, that no complete
    row dominates (quality, cost, latency); never a dominated option."""
    order = tied.assign(
        _c=pd.to_numeric(tied[COST_COL], errors="coerce").fillna(math.inf),
        _l=pd.to_numeric(tied[LATENCY_COL], errors="coerce").fillna(math.inf),
    ).sort_values(["_c", "_l"], kind="stable")
    for idx in order.index:
        if not _dominated(whole.loc[idx], whole, metric, higher):
            return whole.loc[idx]
    return whole.loc[order.index[0]]


def _difference(df: pd.DataFrame, a: str, b: str) -> dict[str, Any] | None:
    """The leaderboard's paired statistics of ``a - b`` (from the vs-best columns or the stored pair)."""
    best = df.attrs.get("best_quality")
    by_name = df.set_index("name", drop=False)

    def from_row(name: str, sign: float) -> dict[str, Any] | None:
        if name not in by_name.index:
            return None
        r = by_name.loc[name]
        if pd.isna(r.get("diff")):
            return None
        lo, hi = (r["diff_low"], r["diff_high"]) if sign > 0 else (-r["diff_high"], -r["diff_low"])
        tied = r.get("tied_with_best")
        return {
            "diff": sign * float(r["diff"]), "diff_low": float(lo), "diff_high": float(hi),
            "mcnemar_p": r.get("mcnemar_p"), "n_seeds": r.get("n_seeds"), "significant": tied is False,
            "alpha": df.attrs.get("alpha", 0.05),
        }  # fmt: skip

    if b == best:
        return from_row(a, 1.0)
    if a == best:
        return from_row(b, -1.0)
    pairs = df.attrs.get("pairs") or {}
    if (a, b) in pairs:
        return dict(pairs[(a, b)])
    if (b, a) in pairs:
        d = dict(pairs[(b, a)])
        d["diff"], d["diff_low"], d["diff_high"] = -d["diff"], -d["diff_high"], -d["diff_low"]
        return d
    return None


def recommended(df: pd.DataFrame) -> str | None:
    """The name :func:`recommendation` recommends (None when nothing can be)."""
    return _recommend(df)[1]


def recommendation(
    df: pd.DataFrame, quality_col: str | None = None, monthly_requests: int | None = None
) -> str:
    """One plain sentence recommending a predictor, compared with the strongest alternative.

    Without a quality tie it is the top-ranked row (decision score), compared with the best prompted
    baseline when it is fine-tuned/local and with the best non-prompted model when it is itself a prompted
    baseline; the paired difference and its 95% interval follow when the prediction rows were available.
    When the top-ranked row is not significantly different from the best-quality row (``tied_with_best``),
    or from its comparator, the sentence says "no significant difference" instead of naming a quality
    winner and recommends, among the tied rows, the cheapest and then fastest one that no row dominates
    (quality, cost, latency). A top-ranked row significantly below the best quality (the weights chose it
    for cost or latency) stays the recommendation, with that difference stated. Rows that did not answer
    every example are neither recommended nor compared with.
    """
    return _recommend(df, quality_col, monthly_requests)[0]


def _recommend(
    df: pd.DataFrame, quality_col: str | None = None, monthly_requests: int | None = None
) -> tuple[str, str | None]:
    if df.empty:
        return "No runs to compare.", None
    metric = quality_col or df.attrs.get("primary_metric", "accuracy")
    volume = int(monthly_requests or df.attrs.get("monthly_requests", 10_000_000))
    primary = df.attrs.get("primary_metric", metric)
    higher = bool(df.attrs.get("higher_is_better", True)) if metric == primary else True
    whole = df[complete(df)]
    if whole.empty:
        return (
            "Nothing to recommend: no predictor answered every example "
            f"({', '.join(f'`{n}`' for n in df['name'])}); see the warnings."
        ), None
    best = whole.loc[whole["score"].idxmax()] if "score" in whole else whole.iloc[0]
    comp, label = comparator(whole, best, metric, higher)
    stats = None if comp is None else _difference(df, str(best["name"]), str(comp["name"]))
    tied_col = whole["tied_with_best"] if "tied_with_best" in whole and metric == primary else None
    tied = whole[tied_col.map(lambda x: x is True)] if tied_col is not None else whole.iloc[0:0]
    tie_text = ""
    # A tie is about the top-ranked row: when it is tied with the best quality, the choice among the tied
    # rows is cost and latency; a cheaper row that the weights chose despite a significantly lower quality
    # stays the recommendation (with its difference stated).
    top_tied = len(tied) >= 2 and best.name in tied.index
    if top_tied or (stats is not None and not stats["significant"]):
        pool = tied if top_tied else whole.loc[[best.name, comp.name]]  # type: ignore[union-attr]
        pick = _pick_among_tied(pool, whole, metric, higher)
        ref = df.attrs.get("best_quality")
        if not top_tied or pick["name"] == ref:
            # the other side of the tie: the comparator when it is tied, else the best-quality other row
            rest = pool.drop(index=pick.name)
            other, _ = comparator(pool, pick, metric, higher)
            if other is None or other.name not in rest.index:
                q = rest[metric] if higher else -rest[metric]
                other = rest.loc[q.fillna(-math.inf).idxmax()]
        else:
            other = whole[whole["name"] == ref].iloc[0]
        d = _difference(df, str(pick["name"]), str(other["name"]))
        cheapest = pick.name == pool[COST_COL].fillna(math.inf).idxmin()
        what = "cheapest" if cheapest else "cheapest undominated"
        tie_text = (
            f"No significant difference in {metric} between `{pick['name']}` and `{other['name']}`"
            + (f" ({fmt_difference(d, metric)})" if d else "")
            + f": deploy `{pick['name']}` ({describe(pick)}), the {what} of the {len(pool)} predictors "
            f"tied on {metric}:"
        )
        best, comp, label = pick, other, f"`{other['name']}`"
    direction = "" if higher else " (lower is better)"
    if tie_text:
        text = f"{tie_text} {metric}{direction} {fmt_metric(best[metric])}"
        text += f" vs {fmt_metric(comp[metric])} for {label}"
    else:
        text = f"Deploy `{best['name']}` ({describe(best)}): {metric}{direction} {fmt_metric(best[metric])}"
        if comp is not None:
            text += f" vs {fmt_metric(comp[metric])} for {label} (`{comp['name']}`"
            text += f"; {fmt_difference(stats, metric)}, significant)" if stats else ")"
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
    if not tie_text and "pareto" in df and not bool(best["pareto"]):
        text += (
            f" Note: it is off the {metric}-vs-cost Pareto front; its rank comes from the other weighted"
            " columns (latency)."
        )
    ref = df.attrs.get("best_quality")
    if not tie_text and ref and ref != best["name"] and (comp is None or ref != comp["name"]):
        d = _difference(df, str(best["name"]), str(ref))
        if d is not None and d["significant"]:
            text += (
                f" `{ref}` has the best {metric}; `{best['name']}` is significantly below it"
                f" ({fmt_difference(d, metric)})."
            )
    return text, str(best["name"])
