"""Render the report: ``report.md`` (PNGs next to it) and a self-contained ``report.html``.

The Markdown is the single source: the HTML is the same text rendered by markdown-it with every image
inlined as a base64 data URI, so the two never drift apart and the HTML can be mailed or attached to a
ticket on its own. Other stages add sections through ``extra_sections`` (title, Markdown body, PNG paths),
e.g. routing's "cascade" section, without this module knowing about them.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from slmforge.reporting.formatting import (
    fmt_count,
    fmt_duration,
    fmt_metric,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_usd,
)
from slmforge.reporting.leaderboard import (
    COST_COL,
    COVERAGE_COL,
    MONTHLY_COL,
    STAT_COLS,
    ci_label,
    complete,
    describe,
    is_prompted,
    recommendation,
    recommended,
)
from slmforge.reporting.plots import make_plots

if TYPE_CHECKING:
    from slmforge.reporting.evidence import Evidence

ExtraSection = tuple[str, str, Sequence[str | Path]]
"""(section title, Markdown body, PNG paths shown under it)."""

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
LEADERBOARD_CSV = "leaderboard.csv"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.85em;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:nth-child(2),td:nth-child(3),td:nth-child(4){text-align:left}
img{max-width:100%;height:auto}code{background:#f5f5f5;padding:0 .2em}
blockquote{border-left:4px solid #1f77b4;margin:1em 0;padding:.3em 1em;background:#f4f8fc}
"""


@dataclass
class ReportFiles:
    """Where a rendered report went."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    plots: dict[str, Path] = field(default_factory=dict)
    recommendation: str = ""


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as formatted strings with readable headers (what the report shows): the swept
    override keys after the predictor, and a coverage column when some predictor answered only part of
    the examples."""
    metric = df.attrs.get("primary_metric", "accuracy")
    swept = list(df.attrs.get("swept") or [])
    metric_cols = [metric] + [
        c
        for c in df.columns
        if c not in _NON_METRIC_COLS
        and c not in swept
        and c != metric
        and pd.api.types.is_numeric_dtype(df[c])
    ]
    out = pd.DataFrame(index=df.index)
    out["#"] = [str(i + 1) for i in range(len(df))]
    out["name"] = df["name"].astype(str)
    out["predictor"] = [describe(row) for _, row in df.iterrows()]
    for c in swept:
        out[c] = df[c].map(lambda x: "" if pd.isna(x) else str(x))
    if "scoring" in df and any(is_prompted(r) for _, r in df.iterrows()):
        out["scoring"] = df["scoring"].fillna("").astype(str)
    out["params (M)"] = df["params_m"].map(fmt_num)
    stats = "ci_low" in df and df["ci_low"].notna().any()
    for c in metric_cols:
        out[c] = df[c].map(fmt_metric)
        if c == metric and stats:
            out[ci_label(df.attrs.get("alpha", 0.05))] = [
                "" if pd.isna(lo) else f"[{lo:.3f}, {hi:.3f}]"
                for lo, hi in zip(df["ci_low"], df["ci_high"], strict=True)
            ]
            out["vs best"] = df["vs_best"].fillna("").astype(str)
            out["McNemar p"] = df["mcnemar_p"].map(lambda p: "" if pd.isna(p) else f"{p:.2g}")
            out["seeds"] = df["n_seeds"].map(lambda n: "" if pd.isna(n) else str(int(n)))
    out["p50"] = df["latency_p50_ms"].map(fmt_ms)
    out["p95"] = df["latency_p95_ms"].map(fmt_ms)
    out["p99"] = df["latency_p99_ms"].map(fmt_ms)
    out["ex/s"] = df["examples_per_s"].map(fmt_num)
    out["$ / 1k req"] = df[COST_COL].map(fmt_usd)
    out["$ / month"] = df[MONTHLY_COL].map(fmt_usd)
    out["priced as"] = df["priced_as"].fillna("").astype(str)
    out["train time"] = df["training_time_s"].map(fmt_duration)
    out["train $"] = df["training_cost_usd"].map(lambda x: "" if pd.isna(x) else fmt_usd(x))
    if not complete(df).all():
        out["coverage"] = df[COVERAGE_COL].map(fmt_pct)
    out["score"] = df["score"].map(lambda x: f"{x:.3f}")
    out["Pareto"] = df["pareto"].map(lambda x: "★" if x else "")
    return out.reset_index(drop=True)


_NON_METRIC_COLS = {
    "name", "method", "k", "model", "kind", "params_m", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "examples_per_s", COST_COL, MONTHLY_COL, "cost_basis", "priced_as",
    "training_time_s", "training_cost_usd", "n", "task", "split", "run_id", "score", "pareto", COVERAGE_COL,
    "scoring", *STAT_COLS,
}  # fmt: skip


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-style pipe table (no ``tabulate`` dependency); pipes in cells are escaped."""

    def cell(x: object) -> str:
        return str(x).replace("|", r"\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    sep = "|" + "|".join("---" if i in (1, 2) else "---:" for i in range(len(table.columns))) + "|"
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join([header, sep, *rows])


def _settings_lines(df: pd.DataFrame) -> list[str]:
    a = df.attrs
    weights = ", ".join(f"{k} {v:g}" for k, v in (a.get("weights") or {}).items())
    lines = [
        f"- runs compared: {len(df)} (task: {', '.join(sorted(map(str, df['task'].unique())))}; "
        f"split: {', '.join(sorted(map(str, df['split'].unique())))})",
        f"- primary metric: `{a.get('primary_metric', 'accuracy')}`; decision weights: {weights or 'n/a'}",
        f"- volume: {fmt_count(a.get('monthly_requests'))} requests/month; local runs priced on "
        f"`{a.get('machine', '?')}` at utilisation {a.get('utilisation', 1.0):g}; training on "
        f"`{a.get('training_machine', a.get('machine', '?'))}`",
        f"- prices from `{a.get('pricing_source', 'conf/pricing/default.yaml')}`",
    ]
    return lines


def _statistics_lines(df: pd.DataFrame) -> list[str]:
    """How the intervals and the significance marks were computed (only when the leaderboard has them)."""
    if "ci_low" not in df or not df["ci_low"].notna().any():
        return []
    metric = df.attrs.get("primary_metric", "accuracy")
    methods = sorted({m for m in df["ci_method"].dropna().astype(str) if m})
    seeds = sorted({int(n) for n in df["n_seeds"].dropna()})
    ties = int(df["tied_with_best"].map(lambda x: x is True).sum()) - 1
    level = ci_label(df.attrs.get("alpha", 0.05))
    lines = [
        "## Statistics",
        "",
        (
            f"- `{metric}` is the mean over each predictor's seeds ({'/'.join(map(str, seeds))} seeds)"
            if seeds != [1]
            else f"- `{metric}` comes from one seed per predictor"
        )
        + f"; its {level}: {'; '.join(methods)} (seeded), {metric} recomputed on every resample.",
        f"- **vs best**: paired difference from `{df.attrs.get('best_quality')}` (the best {metric}) on the same"
        " test rows, paired within each seed both share (seeds draw their own test split) and resampled like the"
        f" CI. `n.s.`: the {level} contains 0, so the difference is not significant.",
        "- **McNemar p**: exact binomial test of the rows only one of the two got right (accuracy only), "
        "discordant pairs pooled over the shared seeds (each seed-row one trial; with a test split shared "
        "across seeds that overstates independence, so read p next to the CI).",
    ]
    if ties > 0:
        lines.append(f"- {ties} predictor(s) not significantly different from the best on {metric}.")
    lines += [f"- {n}" for n in df.attrs.get("ci_notes") or []]
    return [*lines, ""]


def _scoring_lines(df: pd.DataFrame) -> list[str]:
    """Which label scoring each prompted baseline used (raw log-likelihood, length-normalised, calibrated)."""
    if "scoring" not in df:
        return []
    used = [(r["name"], r["scoring"]) for _, r in df.iterrows() if is_prompted(r) and r.get("scoring")]
    if not used:
        return []
    text = ", ".join(f"`{n}`: {s}" for n, s in used)
    return [f"Prompted baselines' label scoring: {text}.", ""]


def _copy_into(out_dir: Path, png: str | Path) -> str:
    """Copy a PNG next to the report (if it is elsewhere) and return its name relative to the report."""
    src = Path(png)
    try:
        return str(src.resolve().relative_to(out_dir.resolve()))
    except ValueError:
        dest = out_dir / src.name
        if dest.exists() and dest.resolve() != src.resolve():
            dest = out_dir / f"{src.stem}_{zlib.crc32(str(src).encode()):08x}{src.suffix}"
        shutil.copy2(src, dest)
        return dest.name


def build_markdown(
    df: pd.DataFrame,
    rec: str,
    plots: dict[str, Path],
    out_dir: Path,
    extra_sections: Sequence[ExtraSection] | None = None,
    title: str = "slmforge report: fine-tuned small models vs prompted large ones",
) -> str:
    """The report's Markdown text; images are referenced relative to ``out_dir``."""
    metric = df.attrs.get("primary_metric", "accuracy")
    lower = "" if df.attrs.get("higher_is_better", True) else f" (lower {metric} is better)"
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# {title}", "", f"_Generated {now}._", "", "## Recommendation", "", f"> {rec}", ""]
    parts += ["## Settings", "", *_settings_lines(df), ""]
    parts += [
        "## Leaderboard",
        "",
        "Ranked by the decision score (min-max normalised, weighted; 1 = best on every weighted column). "
        f"★ = on the {metric}-vs-cost Pareto front{lower} (no other run is both better and cheaper)."
        + ("" if complete(df).all() else " Runs with coverage below 100% rank last and are never on it."),
        "",
        markdown_table(display_table(df)),
        "",
    ]
    parts += _statistics_lines(df)
    parts += _scoring_lines(df)
    captions = {
        "quality_vs_cost": f"## {metric} vs cost",
        "quality_vs_latency": f"## {metric} vs p95 latency",
        "reliability": "## Reliability (confidence vs accuracy)",
        "routing_curve": "## Routing curve (quality vs share escalated)",
        "confusion_matrix": "## Confusion matrix",
    }
    for key, png in plots.items():
        parts += [captions.get(key, f"## {key}"), "", f"![{key}]({_copy_into(out_dir, png)})", ""]
    for sec_title, body, pngs in extra_sections or []:
        parts += [f"## {sec_title}", "", body.strip(), ""]
        parts += [f"![{Path(p).stem}]({_copy_into(out_dir, p)})\n" for p in pngs]
    warnings = df.attrs.get("warnings") or []
    if warnings:
        parts += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    parts += [
        "## How the numbers are computed",
        "",
        "- **API models**: mean prompt and completion tokens per request × the list price per 1k tokens.",
        "- **Self-hosted models**: machine price per hour / 3600 / (batched examples per second × "
        "utilisation); the machine is paid whether busy or idle.",
        "- **Monthly**: cost per request × requests per month (no volume discounts, no fixed fees).",
        "- **Training**: one-off; wall-clock training time × the training machine's hourly price.",
        "- **Latency**: per-request wall time, percentiles with linear interpolation.",
        "",
    ]
    return "\n".join(parts)


def _markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt  # ships with rich, a core dependency

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _inline_images(body: str, base: Path) -> str:
    """Replace ``src="x.png"`` with base64 data URIs so the HTML is one self-contained file."""

    def repl(m: re.Match[str]) -> str:
        src = html.unescape(m.group(1))
        path = base / src
        if src.startswith("data:") or not path.is_file():
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    return re.sub(r'src="([^"]+\.png)"', repl, body)


def render_html(markdown_text: str, out_dir: Path, title: str = "slmforge report") -> str:
    """A standalone HTML page for the Markdown report, images inlined."""
    body = _inline_images(_markdown_to_html(markdown_text), out_dir)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _no_evidence() -> Evidence:
    from slmforge.reporting.evidence import Evidence

    return Evidence()


def write_report(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    recommendation_text: str | None = None,
    extra_sections: Sequence[ExtraSection] | None = None,
    title: str = "slmforge report: fine-tuned small models vs prompted large ones",
    evidence: Evidence | None = None,
) -> ReportFiles:
    """Plots, ``leaderboard.csv``, ``report.md`` and ``report.html`` into ``out_dir``; ``evidence`` (the
    prediction rows and confusion matrices) adds the reliability, routing and confusion pictures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec = recommendation_text or recommendation(df)
    focus = [n for n in (recommended(df), df.attrs.get("best_quality")) if n]
    if not focus and len(df):
        focus = [str(df["name"].iloc[0])]
    # every report has a reliability diagram: without prediction rows it says that none were recorded
    plots = make_plots(df, out, evidence=evidence if evidence is not None else _no_evidence(), focus=focus)
    csv = out / LEADERBOARD_CSV
    df.to_csv(csv, index=False)
    text = build_markdown(df, rec, plots, out, extra_sections, title)
    md = out / REPORT_MD
    md.write_text(text)
    page = out / REPORT_HTML
    page.write_text(render_html(text, out, title))
    return ReportFiles(out_dir=out, markdown=md, html=page, csv=csv, plots=plots, recommendation=rec)
