"""Trade-off plots: quality vs cost per 1k requests (log x) and quality vs p95 latency.

Each point is a predictor, labelled with its name and coloured by family (prompted API, prompted local,
fine-tuned); the Pareto front for that pair of axes is circled and joined by a staircase (the best quality
reachable at or below each cost/latency). Quality runs in the primary metric's direction (the leaderboard's
``higher_is_better``); a predictor that answered only part of the examples is drawn hollow and never on the
front. Figures are drawn on an explicit Agg canvas rather than pyplot, so nothing here changes the
process-wide backend (safe inside notebooks, servers and tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slmforge.reporting.formatting import fmt_count
from slmforge.reporting.leaderboard import COST_COL, LATENCY_COL, complete, is_prompted
from slmforge.reporting.pareto import pareto_front

PLOT_FILES = {"quality_vs_cost": "quality_vs_cost.png", "quality_vs_latency": "quality_vs_latency.png"}
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
    ax.set_xlabel(xlabel or x_col)
    ax.set_ylabel(ylabel or y_col)
    ax.set_title(title or f"{y_col} vs {x_col}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


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


def make_plots(df: pd.DataFrame, out_dir: str | Path, quality_col: str | None = None) -> dict[str, Path]:
    """Write both plots into ``out_dir``; returns ``{"quality_vs_cost": path, "quality_vs_latency": path}``."""
    out = Path(out_dir)
    return {
        "quality_vs_cost": plot_quality_vs_cost(df, out / PLOT_FILES["quality_vs_cost"], quality_col),
        "quality_vs_latency": plot_quality_vs_latency(
            df, out / PLOT_FILES["quality_vs_latency"], quality_col
        ),
    }
