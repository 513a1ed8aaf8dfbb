"""Reporting: collect results records, rank them, find the Pareto front, plot, and render a report.

Typical use::

    found = collect_record_files(["multirun/2025-01-01/12-00-00"])
    records = [r for r, _ in found]
    evidence = Evidence.from_files(records, [f for _, f in found])  # rows: CIs, significance, pictures
    df = leaderboard(records, load_pricing(), primary_metric="accuracy", evidence=evidence)
    files = write_report(df, "reports/latest", evidence=evidence)
    print(files.recommendation)
"""

from slmforge.reporting.collect import collect_record_files, collect_records, find_results_files
from slmforge.reporting.evidence import Evidence
from slmforge.reporting.formatting import fmt_count, fmt_metric, fmt_ms, fmt_num, fmt_usd
from slmforge.reporting.leaderboard import (
    COST_COL,
    DEFAULT_WEIGHTS,
    LATENCY_COL,
    MONTHLY_COL,
    describe,
    is_prompted,
    leaderboard,
    recommendation,
    recommended,
)
from slmforge.reporting.pareto import decision_score, pareto_front
from slmforge.reporting.plots import make_plots, plot_quality_vs_cost, plot_quality_vs_latency, plot_tradeoff
from slmforge.reporting.render import (
    ExtraSection,
    ReportFiles,
    build_markdown,
    display_table,
    markdown_table,
    render_html,
    write_report,
)
from slmforge.reporting.wandb_summary import log_report_to_wandb

__all__ = [
    "COST_COL",
    "DEFAULT_WEIGHTS",
    "LATENCY_COL",
    "MONTHLY_COL",
    "Evidence",
    "ExtraSection",
    "ReportFiles",
    "build_markdown",
    "collect_record_files",
    "collect_records",
    "decision_score",
    "describe",
    "display_table",
    "find_results_files",
    "fmt_count",
    "fmt_metric",
    "fmt_ms",
    "fmt_num",
    "fmt_usd",
    "is_prompted",
    "leaderboard",
    "log_report_to_wandb",
    "make_plots",
    "markdown_table",
    "pareto_front",
    "plot_quality_vs_cost",
    "plot_quality_vs_latency",
    "plot_tradeoff",
    "recommendation",
    "recommended",
    "render_html",
    "write_report",
]
