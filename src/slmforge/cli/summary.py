"""The one-screen summary printed at the end of a run: the comparison table, training figures, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from slmforge.records import ResultsRecord


def comparison_table(records: dict[str, ResultsRecord], primary: str, split: str = "test") -> Table:
    table = Table(title=f"{split} split", title_justify="left")
    cols = (
        ["predictor", primary]
        + (["macro_f1"] if primary == "accuracy" else [])
        + ["mean latency", "examples/s"]
    )
    for c in cols:
        table.add_column(c, justify="left" if c == "predictor" else "right")
    for name, r in records.items():
        cells = [f"{name} ({r.name})", _fmt(r.metrics.get(primary))]
        if primary == "accuracy":
            cells.append(_fmt(r.metrics.get("macro_f1")))
        cells += [
            f"{r.latency_ms.get('mean', float('nan')):.0f} ms",
            f"{r.throughput.get('examples_per_s', 0):.2f}",
        ]
        table.add_row(*cells)
    return table


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else "-"


def print_summary(summary: dict[str, Any], records: dict[str, ResultsRecord], run_dir: Path) -> None:
    console = Console(width=110)
    console.print(comparison_table(records, summary["primary_metric"]))
    t = summary.get("training") or {}
    if t:
        console.print(
            f"training: {t['steps']} steps, {t['tokens_seen']:,} tokens ({t['supervised_tokens_seen']:,} supervised) "
            f"in {t['time_s']:.0f} s = {t['tokens_per_s']:,.0f} tokens/s; "
            f"{t['trainable_params']:,} trainable of {t['total_params']:,} params; peak memory "
            f"{summary.get('peak_memory_mb', 0):,.0f} MB"
        )
    if t.get("truncated_prompts"):
        console.print(
            f"[yellow]{t['truncated_prompts']} of {t['train_rows']} training prompts were cut to task.max_length="
            f"{t.get('max_length')}[/yellow]"
        )
    for name, r in records.items():
        cut = (r.predictor.get("prompts") or {}).get("truncated")
        if cut:
            console.print(
                f"[yellow]{name}: {cut} of {r.n} {r.split} prompts were cut to {r.predictor['prompts']['max_tokens']} tokens[/yellow]"
            )
        for w in r.warnings:
            console.print(f"[bold red]warning[/bold red] ({name}): {w}")
    console.print(f"outputs: {run_dir} (metrics.json, predictors/*/results.json, adapter/, checkpoints/)")
