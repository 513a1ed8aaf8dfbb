"""Report pictures: quality vs cost and vs p95 latency, reliability, routing curve, confusion matrix.

Trade-off plots: quality vs cost per 1k requests (log x) and quality vs p95 latency.

Each point is a predictor, labelled with its name and coloured by family (prompted API, prompted local,
fine-tuned); the Pareto front for that pair of axes is circled and joined by a staircase (the best quality
reachable at or below each cost/latency). Quality runs in the primary metric's direction (the leaderboard's
``higher_is_better``); a predictor that answered only part of the examples is drawn hollow and never on the
front. Figures are drawn on an explicit Agg canvas rather than pyplot, so nothing here changes the
process-wide backend (safe inside notebooks, servers and tests).

Quality points carry their 95% interval as whiskers when the leaderboard has one (``ci_low``/``ci_high``).
Tick labels never use offset notation (``1e-5+1.2e-3``): close costs get a linear axis and labels with as
many significant digits as it takes to tell neighbouring ticks apart.

From the prediction rows (:class:`~slmforge.reporting.evidence.Evidence`): a reliability diagram
(confidence vs accuracy in 10 equal-width bins, every predictor that records confidences, pooled over
seeds), the routing curve (quality vs share escalated, cheapest predictor first and escalating to the
best-quality one, :func:`slmforge.routing.threshold.sweep_thresholds`, on their shared seeds' rows) and the
confusion matrix of the recommended predictor (and the best-quality one when different), row-normalised,
counts written in the cells only when there are few labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from slmforge.reporting.formatting import fmt_count
from slmforge.reporting.leaderboard import COST_COL, LATENCY_COL, ci_label, complete, is_prompted
from slmforge.reporting.pareto import pareto_front

if TYPE_CHECKING:
    from slmforge.reporting.evidence import Evidence

PLOT_FILES = {
    "quality_vs_cost": "quality_vs_cost.png",
    "quality_vs_latency": "quality_vs_latency.png",
    "reliability": "reliability.png",
    "routing_curve": "routing_curve.png",
    "confusion_matrix": "confusion_matrix.png",
}
_FAMILIES = {  # label -> (colour, marker)
    "prompted (API)": ("#d62728", "s"),
    "prompted (local)": ("#ff7f0e", "^"),
    "fine-tuned / other local": ("#1f77b4", "o"),
}


def _family(row: pd.Series) -> str:
    if row.get("kind") == "api":
        return "prompted (API)"
    return "prompted (local)" if is_prompted(row) else "fine-tuned / other local"


def plot_tradeoff(
    df: pd.DataFrame,
    x_col: str,
    y_col: str,
    path: str | Path,
    *,
    logx: bool = False,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    maximize: bool = True,
) -> Path:
    """Scatter ``y_col`` (maximised; ``maximize=False``: minimised) against ``x_col`` (minimised), mark the
    Pareto front of the complete rows, save a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = df.copy()
    data["_x"] = pd.to_numeric(data[x_col], errors="coerce")
    data["_y"] = pd.to_numeric(data[y_col], errors="coerce")
    data = data[np.isfinite(data["_x"]) & np.isfinite(data["_y"])]
    has_ci = y_col == df.attrs.get("primary_metric") and {"ci_low", "ci_high"} <= set(data.columns)
    if logx and (data["_x"] > 0).any() and data.loc[data["_x"] > 0, "_x"].max() < 10 * data["_x"].min():
        logx = False  # within one decade a log axis shows one tick or none: linear reads better
    if logx and (data["_x"] > 0).any():
        # A log axis cannot show 0 (a free option); draw it at half the smallest positive value instead.
        floor = data.loc[data["_x"] > 0, "_x"].min() / 2
        data["_x"] = data["_x"].where(data["_x"] > 0, floor)

    fig = Figure(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if data.empty:
        ax.text(0.5, 0.5, f"no rows with both {x_col} and {y_col}", ha="center", transform=ax.transAxes)
    else:
        families = data.apply(_family, axis=1)
        whole = complete(data)
        if has_ci:
            lo = pd.to_numeric(data["ci_low"], errors="coerce")
            hi = pd.to_numeric(data["ci_high"], errors="coerce")
            ok = lo.notna() & hi.notna()
            if ok.any():
                yerr = np.vstack([(data["_y"] - lo)[ok].clip(lower=0), (hi - data["_y"])[ok].clip(lower=0)])
                ax.errorbar(data.loc[ok, "_x"], data.loc[ok, "_y"], yerr=yerr, fmt="none", ecolor="0.45",
                            elinewidth=1, capsize=3, zorder=2, label=ci_label(df.attrs.get("alpha", 0.05)))  # fmt: skip
        for fam, (colour, marker) in _FAMILIES.items():
            sub = data[(families == fam) & whole]
            if not sub.empty:
                ax.scatter(sub["_x"], sub["_y"], c=colour, marker=marker, s=55, label=fam, zorder=3)
            part = data[(families == fam) & ~whole]
            if not part.empty:
                ax.scatter(part["_x"], part["_y"], facecolors="none", edgecolors=colour, marker=marker, s=55,
                           label=f"{fam}, partial coverage", zorder=3)  # fmt: skip
        front = data[pareto_front(data, "_y", "_x", maximize=maximize, eligible=whole)]
        front = front.sort_values(["_x", "_y"])
        if not front.empty:
            ax.plot(front["_x"], front["_y"], drawstyle="steps-post", color="0.35", lw=1.2, ls="--",
                    zorder=2, label="Pareto front")  # fmt: skip
            ax.scatter(front["_x"], front["_y"], s=190, facecolors="none", edgecolors="0.2", lw=1.3, zorder=4)
        # Alternate label offsets so neighbours with equal cost (e.g. two LoRA ranks) stay readable.
        for i, (_, row) in enumerate(data.sort_values(["_x", "_y"]).iterrows()):
            dy = 7 if i % 2 == 0 else -12
            ax.annotate(str(row["name"]), (row["_x"], row["_y"]), xytext=(6, dy), textcoords="offset points",
                        fontsize=8, zorder=5)  # fmt: skip
        ax.legend(loc="best", fontsize=8, frameon=False)
    if logx:
        ax.set_xscale("log")
    _readable_ticks(ax, logx, money=x_col == COST_COL)
    if xlabel and not logx:
        xlabel = xlabel.replace(" (log)", "").replace(", log)", ")")
    ax.set_xlabel(xlabel or x_col)
    ax.set_ylabel(ylabel or y_col)
    ax.set_title(title or f"{y_col} vs {x_col}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def tick_text(value: float, step: float, money: bool = False) -> str:
    """A tick label with enough significant digits to differ from a neighbour ``step`` away, no offset:
    0.00121 with step 1e-5 -> "0.00121"; 1250 -> "1,250"."""
    if not math.isfinite(value):
        return ""
    if value == 0:
        return "$0" if money else "0"
    step = abs(step) if step and math.isfinite(step) and step > 0 else abs(value)
    step = float(f"{step:.9g}")  # tick spacing from float differences: 0.0999999 is 0.1
    decimals = max(0, -math.floor(math.log10(step)) + (0 if _round_step(step) else 1))
    text = f"{value:,.{decimals}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return f"${text}" if money else text


def _round_step(step: float) -> bool:
    mant = step / 10 ** math.floor(math.log10(step))
    return abs(mant - round(mant)) < 1e-6


def _readable_ticks(ax: Any, logx: bool, money: bool) -> None:
    """Plain tick labels on both axes (no offset or scientific notation), digits sized to the tick step
    (read when the figure is drawn, so margins and layout changes are accounted for)."""
    from matplotlib.ticker import NullFormatter

    if not logx:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    for axis in (ax.xaxis, ax.yaxis):
        is_money = money and axis is ax.xaxis
        if logx and axis is ax.xaxis:
            axis.set_major_formatter(FuncFormatter(lambda v, _p, m=is_money: tick_text(v, v, m)))
            lo, hi = ax.get_xlim()
            few_decades = lo > 0 and hi / lo < 100
            minor = (
                FuncFormatter(lambda v, _p, m=is_money: tick_text(v, v, m))
                if few_decades
                else NullFormatter()
            )
            axis.set_minor_formatter(minor)
            continue

        def fmt(v: float, _p: Any, axis: Any = axis, m: bool = is_money) -> str:
            locs = sorted(x for x in axis.get_majorticklocs() if math.isfinite(x))
            step = float(np.min(np.diff(locs))) if len(locs) > 1 else 0.0
            return tick_text(v, step, m)

        axis.set_major_formatter(FuncFormatter(fmt))


def plot_quality_vs_cost(df: pd.DataFrame, path: str | Path, quality_col: str | None = None) -> Path:
    """Quality against USD per 1k requests on a log axis (costs span orders of magnitude)."""
    q = quality_col or df.attrs.get("primary_metric", "accuracy")
    volume = df.attrs.get("monthly_requests")
    title = f"{q} vs cost" + (
        f" (Pareto front; {fmt_count(volume)} requests/month)" if volume else " (Pareto front)"
    )
    return plot_tradeoff(df, COST_COL, q, path, logx=True, xlabel="USD per 1k requests (log)",
                         ylabel=_quality_label(df, q), title=title, maximize=_maximize(df, q))  # fmt: skip


def plot_quality_vs_latency(df: pd.DataFrame, path: str | Path, quality_col: str | None = None) -> Path:
    """Quality against p95 per-request latency; log x once latencies span more than 20x (local vs API),
    where a linear axis would pile every local model into one corner."""
    q = quality_col or df.attrs.get("primary_metric", "accuracy")
    lat = pd.to_numeric(df[LATENCY_COL], errors="coerce")
    lat = lat[np.isfinite(lat) & (lat > 0)]
    logx = bool(len(lat) and lat.max() / lat.min() > 20)
    return plot_tradeoff(df, LATENCY_COL, q, path, logx=logx,
                         xlabel="p95 latency (ms" + (", log)" if logx else ")"), ylabel=_quality_label(df, q),
                         title=f"{q} vs p95 latency (Pareto front)", maximize=_maximize(df, q))  # fmt: skip


def _maximize(df: pd.DataFrame, quality_col: str) -> bool:
    """The leaderboard's direction for its primary metric (another column plotted as quality: higher)."""
    if quality_col != df.attrs.get("primary_metric", quality_col):
        return True
    return bool(df.attrs.get("higher_is_better", True))


def _quality_label(df: pd.DataFrame, quality_col: str) -> str:
    return quality_col if _maximize(df, quality_col) else f"{quality_col} (lower is better)"


def _figure(w: float = 7.5, h: float = 5) -> tuple[Figure, Any]:
    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _pooled(by_seed: dict[Any, list[Any]]) -> list[Any]:
    return [r for s in sorted(by_seed, key=str) for r in by_seed[s]]


def plot_reliability(evidence: Evidence | None, path: str | Path, names: Sequence[str] = ()) -> Path:
    """Confidence vs accuracy (mean ``correct``) in 10 equal-width confidence bins, one line per predictor
    with confidences (rows pooled over seeds; bins with a handful of rows are noisy: the marker size grows
    with the row count). The diagonal is perfect calibration; below it, overconfident."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = _figure(6.5, 5.5)
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfectly calibrated")
    drawn = 0
    rows = evidence.rows if evidence is not None else {}
    for name in [n for n in names if n in rows] or list(rows):
        pooled = [r for r in _pooled(rows[name]) if r.confidence is not None]
        if not pooled:
            continue
        conf = np.clip(np.array([float(r.confidence) for r in pooled]), 0, 1)
        ok = np.array([float(r.correct) for r in pooled])
        bins = np.minimum((conf * 10).astype(int), 9)
        xs, ys, ns = [], [], []
        for b in range(10):
            m = bins == b
            if m.any():
                xs.append(conf[m].mean())
                ys.append(ok[m].mean())
                ns.append(int(m.sum()))
        ece = float(sum(n * abs(x - y) for x, y, n in zip(xs, ys, ns, strict=True)) / len(pooled))
        line = ax.plot(xs, ys, marker="o", ms=0, lw=1.3, label=f"{name} (ECE {ece:.3f}, n={len(pooled)})")[0]
        ax.scatter(xs, ys, s=[12 + 60 * n / max(ns) for n in ns], color=line.get_color(), zorder=3)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no predictor recorded confidences", ha="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (bin mean)")
    ax.set_ylabel("accuracy (mean correct)")
    ax.set_title("Reliability diagram", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def routing_pair(df: pd.DataFrame, evidence: Evidence | None) -> tuple[str, str, list[Any]] | None:
    """(cheap, expensive, shared seeds) for the routing curve: the cheapest complete, priced row with
    confidences answers first and escalates to the best-quality row among the others that share a seed
    with it (the rest of the leaderboard when the cheapest is itself the best); None when no such pair."""
    rows = evidence.rows if evidence is not None else {}
    metric = df.attrs.get("primary_metric", "accuracy")
    whole = df[complete(df) & df["name"].isin(list(rows)) & df[COST_COL].notna() & df[metric].notna()]
    if len(whole) < 2:
        return None
    sign = 1.0 if df.attrs.get("higher_is_better", True) else -1.0
    for _, cheap in whole.sort_values(COST_COL, kind="stable").iterrows():
        c_rows = rows[cheap["name"]]
        if not any(r.confidence is not None for rs in c_rows.values() for r in rs):
            continue
        others = whole[whole["name"] != cheap["name"]]
        for _, exp in others.assign(_q=sign * others[metric]).sort_values("_q", ascending=False).iterrows():
            seeds = [s for s in c_rows if s in rows[exp["name"]]]
            if seeds:
                return str(cheap["name"]), str(exp["name"]), seeds
    return None


def plot_routing_curve(df: pd.DataFrame, evidence: Evidence | None, path: str | Path) -> Path | None:
    """Mean per-row score vs share of requests escalated from the cheap predictor to the best one (a
    confidence threshold sweep over their shared seeds' rows, row ids made unique per seed)."""
    from dataclasses import replace

    from slmforge.routing.threshold import sweep_thresholds

    pair = routing_pair(df, evidence)
    if pair is None or evidence is None:
        return None
    cheap, exp, seeds = pair
    by = df.set_index("name")
    c_rows, e_rows = [], []
    for s in seeds:
        ids = {r.id for r in evidence.rows[exp][s]}
        c_rows += [replace(r, id=f"{s}:{r.id}") for r in evidence.rows[cheap][s] if r.id in ids]
        keep = {r.id for r in evidence.rows[cheap][s]}
        e_rows += [replace(r, id=f"{s}:{r.id}") for r in evidence.rows[exp][s] if r.id in keep]
    if not c_rows:
        return None
    from slmforge.errors import SlmforgeError

    try:
        points = sweep_thresholds(
            c_rows,
            e_rows,
            float(by.at[cheap, COST_COL]) / 1000,
            float(by.at[exp, COST_COL]) / 1000,
            cheap,
            exp,
        )
    except SlmforgeError:  # rows that cannot be paired: no curve rather than no report
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = _figure(7, 5)
    xs = [p.escalated_share for p in points]
    ys = [p.metric for p in points]
    ax.plot(xs, ys, marker="o", ms=3, lw=1.4, color="#1f77b4", label="confidence-threshold routing")
    ax.axhline(points[0].metric, color="#ff7f0e", ls=":", lw=1, label=f"{cheap} alone")
    ax.axhline(points[-1].metric, color="#d62728", ls=":", lw=1, label=f"{exp} alone")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"share of requests escalated to {exp}")
    ax.set_ylabel("mean per-row score (correct)")
    seeds_txt = f", {len(seeds)} seeds pooled" if len(seeds) > 1 else ""
    ax.set_title(f"Routing: {cheap} first, escalate when unsure ({len(c_rows)} rows{seeds_txt})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    _readable_ticks(ax, False, money=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_confusion(evidence: Evidence | None, names: Sequence[str], path: str | Path) -> Path | None:
    """Row-normalised confusion matrices (true label down, predicted across) of up to two predictors,
    counts summed over seeds. Cell counts are written only up to 12 labels and tick labels shrink with
    the label count, so a 77-label matrix stays readable as a heat map."""
    mats = [(n, evidence.confusion[n]) for n in names if evidence is not None and n in evidence.confusion][:2]
    if not mats:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = max(len(m["labels"]) for _, m in mats)
    side = min(14.0, max(4.5, 0.16 * c + 3))
    fig = Figure(figsize=(side * len(mats), side * 0.92), dpi=110)
    FigureCanvasAgg(fig)
    font = 8 if c <= 12 else max(5.5, 9 - c / 20)  # 77 labels: 5.5 pt on a 0.16 in pitch
    for k, (name, m) in enumerate(mats, 1):
        ax = fig.add_subplot(1, len(mats), k)
        counts = np.asarray(m["matrix"], dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        norm = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        labels = [str(x) for x in m["labels"]]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=font)
        ax.set_yticks(range(len(labels)), labels, fontsize=font)
        if len(labels) <= 12:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if counts[i, j]:
                        colour = "white" if norm[i, j] > 0.5 else "black"
                        ax.text(
                            j, i, f"{counts[i, j]:.0f}", ha="center", va="center", fontsize=7, color=colour
                        )
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        seeds = m.get("n_seeds", 1)
        ax.set_title(f"{name}" + (f" ({seeds} seeds)" if seeds and seeds > 1 else ""), fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def make_plots(
    df: pd.DataFrame,
    out_dir: str | Path,
    quality_col: str | None = None,
    *,
    evidence: Evidence | None = None,
    focus: Sequence[str] = (),
) -> dict[str, Path]:
    """Write the report's pictures into ``out_dir``: the two trade-off plots; with ``evidence`` (even an
    empty one, as every report passes) the reliability diagram, and the routing curve (two or more predictors with rows on a shared seed) and the confusion matrix
    of the ``focus`` predictors (the recommended one and the best-quality one; classification only) when
    ``evidence`` allows. Returns ``{key: path}`` for the plots written (keys of :data:`PLOT_FILES`)."""
    out = Path(out_dir)
    plots = {
        "quality_vs_cost": plot_quality_vs_cost(df, out / PLOT_FILES["quality_vs_cost"], quality_col),
        "quality_vs_latency": plot_quality_vs_latency(
            df, out / PLOT_FILES["quality_vs_latency"], quality_col
        ),
    }
    if evidence is None:
        return plots
    plots["reliability"] = plot_reliability(evidence, out / PLOT_FILES["reliability"], list(df["name"]))
    routing = plot_routing_curve(df, evidence, out / PLOT_FILES["routing_curve"])
    if routing is not None:
        plots["routing_curve"] = routing
    cm = plot_confusion(evidence, list(dict.fromkeys(focus)), out / PLOT_FILES["confusion_matrix"])
    if cm is not None:
        plots["confusion_matrix"] = cm
    return plots
