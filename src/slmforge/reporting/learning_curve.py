"""Report sections for a training-size sweep: quality vs training examples, and the break-even volume.

**Learning curve.** Records of fine-tuned runs that differ in how many training examples they saw
(``slmforge-train -m data.per_label_train=10,20,50,null``; see ``scripts/learning_curve.sh``) become one
line per model (and per any other swept setting, e.g. ``adapter.r``), quality against training examples on
a log axis. x is the number of rows the run trained on: ``training.train_rows`` (what the fit actually
used, after ``max_train_examples``), else the record's ``data.sizes.train``. Prompted predictors (zero-shot,
k-shot, API) do not move with the training set, so each is a dashed horizontal reference at the mean over
its records. Whiskers are a 95% interval:

- several seeds at a point: the t interval of the per-seed scores (the spread that matters when choosing a
  training size is run-to-run; a bootstrap of three values would be degenerate);
- one seed: the percentile bootstrap of the per-row ``correct`` scores in ``predictions.jsonl``
  (:func:`~slmforge.reporting.statistics.bootstrap_mean`, test-set sampling only), when the predictions
  were passed in and their mean is the primary metric (accuracy); else no whisker.

**Break-even.** :func:`~slmforge.economics.break_even.break_even_table` for every fine-tuned record against
every API record, as a table and a plot of monthly cost vs volume with the crossing marked.

Figures are drawn on an explicit Agg canvas, never pyplot, so the process-wide backend is left alone.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slmforge.economics.break_even import BreakEven, break_even_table, is_api, is_finetuned
from slmforge.economics.pricing import Pricing, load_pricing
from slmforge.records import PredictionRow, ResultsRecord
from slmforge.reporting.collect import swept_keys
from slmforge.reporting.formatting import fmt_count, fmt_metric, fmt_usd
from slmforge.reporting.statistics import bootstrap_mean

LEARNING_CURVE_PNG = "learning_curve.png"
BREAK_EVEN_PNG = "break_even.png"
LEARNING_CURVE_TITLE = "Learning curve: quality vs training examples"
BREAK_EVEN_TITLE = "Break-even: when fine-tuning beats the API on cost"
# Overrides that set the training-set size (the x axis) or repeat a point (seed): not part of a line's name.
_X_KEYS = {"data.per_label_train", "data.sizes.train", "data.max_train_examples", "data.train_path", "seed"}
_MAX_PLOTTED_PAIRS = 4  # one line pair per API baseline; more would be unreadable


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: the mean over seeds at one training size, and its 95% interval.

    ``ci`` says how the interval was computed: ``"seeds"`` (t interval across seeds), ``"rows"`` (bootstrap
    over test rows, one seed) or ``""`` (none).
    """

    series: str
    train_examples: int
    n_seeds: int
    mean: float
    low: float
    high: float
    ci: str


@dataclass(frozen=True)
class Reference:
    """A predictor that does not train (zero-shot, k-shot, API): a horizontal line at its mean score."""

    label: str
    mean: float
    n_records: int


def train_examples(record: ResultsRecord) -> int | None:
    """Rows a record's model was fine-tuned on; None when the record says neither."""
    rows = (record.training or {}).get("train_rows")
    if rows is None:
        rows = (record.data.get("sizes") or {}).get("train")
    return int(rows) if rows is not None else None


def _series_names(tuned: Sequence[ResultsRecord]) -> list[str]:
    """A line's name: the model, plus the swept settings (other than size and seed) that tell lines apart."""
    keys = [k for k in swept_keys(tuned) if k not in _X_KEYS and k != "model"]
    names = []
    for r in tuned:
        extra = ", ".join(f"{k}={r.swept[k]}" for k in keys if k in r.swept)
        model = str(r.predictor.get("model", r.name))
        names.append(f"{model} ({extra})" if extra else model)
    return names


def _reference_label(r: ResultsRecord) -> str:
    p = r.predictor
    method = str(p.get("method", "?"))
    if method == "k_shot" and p.get("k"):
        method = f"{p['k']}-shot"
    return f"{p.get('model', r.name)} {method.replace('_', '-')}" + (" (API)" if is_api(r) else "")


def _interval(recs: Sequence[ResultsRecord], predictions: Mapping[str, Sequence[PredictionRow]] | None
              ) -> tuple[int, float, float, float, str]:  # fmt: skip
    """(seeds, mean, low, high, ci kind) for the records at one point."""
    by_seed: defaultdict[Any, list[float]] = defaultdict(list)
    for r in recs:
        by_seed[r.seed].append(float(r.primary_value))  # type: ignore[arg-type]
    scores = np.array([np.mean(v) for v in by_seed.values()])
    mean = float(scores.mean())
    if scores.size >= 2:
        from scipy.stats import t

        half = float(t.ppf(0.975, scores.size - 1) * scores.std(ddof=1) / math.sqrt(scores.size))
        return scores.size, mean, mean - half, mean + half, "seeds"
    rows = (predictions or {}).get(recs[0].run_id) if len(recs) == 1 else None
    if rows:
        correct = [float(x.correct) for x in rows]
        if abs(float(np.mean(correct)) - mean) < 1e-9:  # the per-row scores average to the metric
            iv = bootstrap_mean(correct)
            return 1, mean, iv.low, iv.high, "rows"
    return 1, mean, math.nan, math.nan, ""


def _curve_records(records: Sequence[ResultsRecord]) -> list[ResultsRecord]:
    return [r for r in records if is_finetuned(r) and r.primary_value is not None and train_examples(r)]


def _axis(tuned: Sequence[ResultsRecord]) -> tuple[str, str]:
    """The (task, primary metric) most fine-tuned records share: the one y axis of the plot."""
    counts = Counter((r.task, r.primary_metric) for r in tuned)
    return max(counts, key=lambda k: counts[k])


def learning_curve(
    records: Sequence[ResultsRecord], predictions: Mapping[str, Sequence[PredictionRow]] | None = None
) -> tuple[list[CurvePoint], list[Reference]] | None:
    """The curve's points (by series, then training examples) and reference lines; None when the records
    are not a training-size sweep (no line with two or more training sizes).

    Only records of the fine-tuned records' most common (task, primary metric) are used: one y axis.
    """
    tuned = _curve_records(records)
    if not tuned:
        return None
    task, metric = _axis(tuned)
    tuned = [r for r in tuned if (r.task, r.primary_metric) == (task, metric)]
    groups: defaultdict[tuple[str, int], list[ResultsRecord]] = defaultdict(list)
    for name, r in zip(_series_names(tuned), tuned, strict=True):
        groups[(name, train_examples(r))].append(r)  # type: ignore[index]
    sizes: defaultdict[str, set[int]] = defaultdict(set)
    for name, x in groups:
        sizes[name].add(x)
    if max(len(v) for v in sizes.values()) < 2:
        return None
    points = [
        CurvePoint(name, x, *_interval(recs, predictions)) for (name, x), recs in sorted(groups.items())
    ]
    refs: defaultdict[str, list[float]] = defaultdict(list)
    for r in records:
        if (
            not is_finetuned(r)
            and r.primary_value is not None
            and (r.task, r.primary_metric) == (task, metric)
        ):
            refs[_reference_label(r)].append(float(r.primary_value))
    references = [Reference(label, float(np.mean(v)), len(v)) for label, v in sorted(refs.items())]
    return points, references


def plot_learning_curve(
    points: Sequence[CurvePoint], references: Sequence[Reference], path: str | Path, metric: str = "accuracy"
) -> Path:
    """Quality vs training examples (log x), one line per series with its whiskers; references dashed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = iter(_palette())
    by_series: defaultdict[str, list[CurvePoint]] = defaultdict(list)
    for p in points:
        by_series[p.series].append(p)
    xs_all = sorted({p.train_examples for p in points})
    for series, pts in by_series.items():
        pts.sort(key=lambda p: p.train_examples)
        x = np.array([p.train_examples for p in pts], dtype=float)
        y = np.array([p.mean for p in pts])
        low = np.array([p.low for p in pts])
        high = np.array([p.high for p in pts])
        err = np.vstack([np.where(np.isnan(low), 0, y - low), np.where(np.isnan(high), 0, high - y)])
        ax.errorbar(
            x, y, yerr=err, marker="o", capsize=4, color=next(colours), label=f"{series} (fine-tuned)"
        )
    for ref in references:
        ax.axhline(ref.mean, linestyle="--", linewidth=1.2, color=next(colours), label=ref.label)
    ax.set_xscale("log")
    ax.set_xticks(xs_all)
    ax.set_xticklabels([fmt_count(x) for x in xs_all])
    ax.minorticks_off()
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs training examples")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _palette() -> Iterable[str]:
    """tab10 colours, repeating."""
    base = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]  # fmt: skip
    while True:
        yield from base


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(x: object) -> str:
        return str(x).replace("|", r"\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _ci_text(p: CurvePoint) -> str:
    if not p.ci:
        return ""
    how = f"t over {p.n_seeds} seeds" if p.ci == "seeds" else "bootstrap over test rows"
    return f"{fmt_metric(p.low)}–{fmt_metric(p.high)} ({how})"


def learning_curve_section(
    records: Sequence[ResultsRecord],
    out_dir: str | Path,
    predictions: Mapping[str, Sequence[PredictionRow]] | None = None,
) -> tuple[str, str, list[Path]] | None:
    """(title, Markdown, [PNG]) for the report, or None when the records are not a training-size sweep.

    ``predictions`` (``run_id`` -> rows, :meth:`~slmforge.reporting.evidence.Evidence.rows_by_run_id`) adds test-row bootstrap whiskers to
    single-seed points.
    """
    curve = learning_curve(records, predictions)
    if curve is None:
        return None
    points, references = curve
    metric = _axis(_curve_records(records))[1]
    png = plot_learning_curve(points, references, Path(out_dir) / LEARNING_CURVE_PNG, metric)
    rows = [(p.series, f"{p.train_examples:,}", p.n_seeds, fmt_metric(p.mean), _ci_text(p)) for p in points]
    rows += [(r.label, "reference (not trained)", r.n_records, fmt_metric(r.mean), "") for r in references]
    body = [
        f"Fine-tuned {metric} against the number of training examples each run saw (log x); prompted "
        "predictors are dashed references (mean over their records). Whiskers: 95% t interval across seeds "
        "where a size has several, else a bootstrap over test rows when per-row predictions were read.",
        "",
        _table(["model", "training examples", "seeds / records", metric, "95% interval"], rows),
    ]
    return LEARNING_CURVE_TITLE, "\n".join(body), [png]


def plot_break_even(
    pairs: Sequence[BreakEven], path: str | Path, monthly_requests: float | None = None
) -> Path:
    """Monthly cost vs monthly requests (log-log) for each pair's fine-tuned model (solid) and API (dashed),
    the crossing marked; ``monthly_requests`` (the pricing scenario) as a vertical line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite = [b.volume for b in pairs if b.volume is not None and b.volume >= 1]
    anchors = [*finite, *([monthly_requests] if monthly_requests else [])] or [1e4]
    lo, hi = max(min(anchors) / 100, 1.0), max(anchors) * 100
    volumes = np.logspace(math.log10(lo), math.log10(hi), 200)
    colours = iter(_palette())
    for b in pairs:
        colour = next(colours)
        ax.plot(
            volumes,
            [b.monthly_finetuned_usd(v) for v in volumes],
            color=colour,
            label=f"{b.finetuned} (fine-tuned)",
        )
        ax.plot(
            volumes,
            [b.monthly_api_usd(v) for v in volumes],
            color=colour,
            linestyle="--",
            label=f"{b.api} (API)",
        )
        if b.volume is not None and b.volume >= 1:  # below one request a month there is no crossing to draw
            cost = b.monthly_api_usd(b.volume)
            ax.plot([b.volume], [cost], marker="o", color=colour, markersize=8)
            ax.annotate(f"{fmt_count(b.volume)}/month", (b.volume, cost), textcoords="offset points",
                        xytext=(6, -12), fontsize=8, color=colour)  # fmt: skip
    if monthly_requests:
        ax.axvline(monthly_requests, color="grey", linewidth=1, linestyle=":", label="pricing scenario")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per month (log scale)")
    ax.set_ylabel("USD per month (log scale)")
    ax.set_title("Monthly cost: fine-tuned (solid, training amortised) vs API (dashed)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _fmt_volume(volume: float | None) -> str:
    """222.2 -> "222 requests/month"; under one request a month -> "any volume"; None -> "—"."""
    if volume is None:
        return "—"
    return "any volume" if volume < 1 else f"{fmt_count(volume)} requests/month"


def break_even_section(
    records: Sequence[ResultsRecord],
    pricing: Pricing | Mapping[str, Any] | None,
    out_dir: str | Path | None = None,
    machine: str = "cpu-2core",
    training_machine: str | None = None,
) -> tuple[str, str, list[Path]] | None:
    """(title, Markdown, [PNG]) with every fine-tuned vs API break-even, or None when the records hold no
    API baseline or no fine-tuned predictor. The PNG (when ``out_dir`` is given and some pair breaks even)
    draws, per API baseline, the eligible fine-tuned record with the lowest break-even volume."""
    if not any(is_api(r) for r in records) or not any(is_finetuned(r) for r in records):
        return None
    pricing = load_pricing(pricing)
    pairs = break_even_table(records, pricing, machine=machine, training_machine=training_machine)
    if not pairs:
        return None
    serving = (
        f"requests × its self-hosted cost per request on `{machine}` at utilisation {pricing.utilisation:g}"
    )
    if pricing.always_on:  # one machine is paid around the clock even when traffic would not fill it
        serving = f"the larger of one `{machine}` paid around the clock (`always_on: true`) and {serving}"
    intro = (
        f"The monthly request volume above which a fine-tuned model costs less than an API baseline whose "
        f"quality it equals or beats. Fine-tuned cost per month = training cost / {pricing.amortise_months:g} "
        f"months (`amortise_months`) + {serving}; API cost = requests × its token cost per request. Quality "
        "compares point estimates of the primary metric (a tie counts as equal; whether a lower score is "
        "within noise is not considered here)."
    )
    rows = []
    for b in pairs:
        verdict = _fmt_volume(b.volume)
        rows.append((
            b.finetuned, b.api, f"{fmt_metric(b.quality_finetuned)} vs {fmt_metric(b.quality_api)}",
            fmt_usd(b.training_usd), fmt_usd(b.finetuned_per_request_usd * 1000),
            fmt_usd(b.api_per_request_usd * 1000), verdict, b.reason,
        ))  # fmt: skip
    header = ["fine-tuned", "API", f"{pairs[0].metric} (FT vs API)", "training", "FT $/1k req",
              "API $/1k req", "break-even above", "note"]  # fmt: skip
    body = [intro, "", _table(header, rows), ""]
    best: dict[str, BreakEven] = {}
    for b in pairs:
        if b.volume is not None and (b.api not in best or b.volume < best[b.api].volume):  # type: ignore[operator]
            best[b.api] = b
    if best:
        winner = min(best.values(), key=lambda b: b.volume)  # type: ignore[arg-type, return-value]
        v = pricing.monthly_requests
        where = "at **any volume**" if winner.volume < 1 else f"above **{_fmt_volume(winner.volume)}**"  # type: ignore[operator]
        body.append(
            f"Lowest break-even: **{winner.finetuned}** against **{winner.api}** {where}. "
            f"At the pricing scenario's {fmt_count(v)} "
            f"requests/month it costs {fmt_usd(winner.monthly_finetuned_usd(v))} a month vs "
            f"{fmt_usd(winner.monthly_api_usd(v))} for the API."
        )
    else:
        body.append("No fine-tuned model both matches an API baseline's quality and costs less per request.")
    pngs: list[Path] = []
    if out_dir is not None and best:
        chosen = sorted(best.values(), key=lambda b: b.volume)[:_MAX_PLOTTED_PAIRS]  # type: ignore[arg-type, return-value]
        pngs.append(plot_break_even(chosen, Path(out_dir) / BREAK_EVEN_PNG, pricing.monthly_requests))
    return BREAK_EVEN_TITLE, "\n".join(body), pngs
