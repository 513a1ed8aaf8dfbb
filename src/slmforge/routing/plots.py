"""Routing and reliability figures (PNG), drawn with matplotlib's Agg canvas.

Figures are built on :class:`matplotlib.figure.Figure` directly rather than through ``pyplot``, so
plotting neither needs a display nor switches the process-wide backend under other code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slmforge.routing.threshold import RoutingPoint


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_routing_curve(
    points: Sequence[Any],
    chosen: Any | None,
    path: str | Path,
    cheap_only: RoutingPoint | None = None,
    expensive_only: RoutingPoint | None = None,
    metric_name: str = "accuracy",
    cheap_name: str = "cheap",
    expensive_name: str = "expensive",
    title: str | None = None,
    target: float | None = None,
    target_label: str = "target",
) -> Path:
    """Metric vs cost per 1k requests (left) and metric vs escalated share (right): the quality-vs-
    escalation-share curve the field reports.

    The sweep is a line; the chosen point, cheap-only and expensive-only references are marked, and
    ``target`` (when set) is a dashed horizontal line labelled ``target_label`` (e.g. the guarantee).
    ``points`` may be chain points too (anything with ``escalated_share``, ``metric``, ``cost_per_1k_usd``).
    """
    pts = sorted(points, key=lambda p: p.escalated_share)
    fig = Figure(figsize=(11, 4.2))
    ax_cost, ax_share = fig.subplots(1, 2)
    for ax, x_of, xlabel in (
        (ax_cost, lambda p: p.cost_per_1k_usd, "cost per 1k requests (USD)"),
        (ax_share, lambda p: 100 * p.escalated_share, f"escalated to {expensive_name} (%)"),
    ):
        ax.plot(
            [x_of(p) for p in pts],
            [p.metric for p in pts],
            "-o",
            ms=3,
            color="tab:blue",
            label="threshold sweep",
        )
        refs: list[tuple[RoutingPoint | None, str, str, str]] = [
            (cheap_only, f"{cheap_name} only", "s", "tab:green"),
            (expensive_only, f"{expensive_name} only", "D", "tab:red"),
        ]
        for ref, label, marker, color in refs:
            if ref is not None:
                ax.plot([x_of(ref)], [ref.metric], marker, ms=8, color=color, label=label, linestyle="none")
        if chosen is not None:
            t = chosen.threshold
            label = "chosen" if t is None else f"chosen (t={min(t, 1.0):.2f})"
            ax.plot(
                [x_of(chosen)], [chosen.metric], "*", ms=16, color="tab:orange", label=label, linestyle="none"
            )
        if target is not None:
            ax.axhline(target, ls="--", lw=1, color="tab:purple", label=target_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_name)
        ax.grid(alpha=0.3)
    ax_share.legend(loc="lower right", fontsize=8)
    fig.suptitle(title or f"routing {cheap_name} → {expensive_name}")
    return _save(fig, path)


def _bins_xy(report: dict[str, Any]) -> tuple[list[float], list[float], list[int]]:
    xs, ys, ns = [], [], []
    for b in report["bins"]:
        if b["count"]:
            xs.append(b["confidence"])
            ys.append(b["accuracy"])
            ns.append(b["count"])
    return xs, ys, ns


def plot_reliability(
    report_before: dict[str, Any],
    report_after: dict[str, Any] | None,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Reliability diagram (accuracy vs confidence per bin) before and after temperature scaling.

    Marker area grows with the bin's example count; the legend carries ECE and the temperature.
    """
    fig = Figure(figsize=(5.2, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    for rep, name, color in ((report_before, "before", "tab:red"), (report_after, "after", "tab:blue")):
        if rep is None:
            continue
        xs, ys, ns = _bins_xy(rep)
        total = max(sum(ns), 1)
        t = rep.get("temperature")
        label = f"{name}: ECE {rep['ece']:.3f}" + (f" (T={t:.2f})" if t is not None else "")
        ax.plot(xs, ys, "-", color=color, lw=1)
        ax.scatter(xs, ys, s=[20 + 400 * n / total for n in ns], color=color, alpha=0.7, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability")
    return _save(fig, path)
