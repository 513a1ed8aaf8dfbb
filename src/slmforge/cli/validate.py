"""``slmforge-validate``: the data checks ``slmforge-train`` runs first, alone, before a run is spent on them.

Same config as ``slmforge-train`` (conf/validate.yaml composes conf/train.yaml), so the data, task and model
overrides of a training command work unchanged here. Loads the data and the task, and the model's tokenizer
only when ``validation.truncation`` is on (never the weights); prints the findings; writes
``validation.json`` and ``validation.md`` to its run folder. Exit code 0 when no finding has severity
``error``, 1 when one does (one ``error:`` line naming the checks); a config or data file that cannot be read
at all is the usual ``error:`` line with code 2.

    slmforge-validate data=jsonl data.train_path=train.jsonl data.test_path=test.jsonl
    slmforge-validate experiment=banking77 validation=strict
    slmforge-validate validation.leakage_near.threshold=0.8 validation.truncation.severity=off
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from slmforge.cli.common import command, run_dir_of
from slmforge.config import config_dir

if TYPE_CHECKING:
    from rich.table import Table

    from slmforge.data.validation import ValidationReport


def validate(cfg: DictConfig) -> tuple[ValidationReport, Path]:
    """Check the data the config describes; returns the report and the path of its ``validation.md``."""
    from slmforge.build import build_for_validation, stage
    from slmforge.data.validation import validate_splits, validation_config

    config = validation_config(cfg.get("validation"))  # a bad check name or severity, before any loading
    out_dir = run_dir_of(cfg)
    splits, task, tokenizer, task_error = build_for_validation(cfg)
    with stage("data validation"):
        report = validate_splits(
            splits, task.target_key, config, tokenizer=tokenizer, task=task, task_error=task_error
        )
    md = report.write(out_dir)
    from rich.console import Console

    Console(width=140).print(findings_table(report))
    for note in report.notes:
        print(f"note: {note}")
    print(f"outputs: {out_dir} (validation.json, validation.md)")
    return report, md


def findings_table(report: ValidationReport) -> Table:
    from rich.table import Table

    verdict = "passed" if report.passed else "FAILED"
    table = Table(
        title=f"data validation {verdict}: {report.errors} errors, {report.warnings} warnings",
        title_justify="left",
    )
    for col in ("check", "severity", "finding", "rows"):
        table.add_column(col, overflow="fold")
    for f in report.findings:
        style = "red" if f.severity == "error" else "yellow"
        table.add_row(f.check, f"[{style}]{f.severity}[/{style}]", f.message, f.rows_text(8))
    if not report.findings:
        table.add_row("-", "-", "no findings", "-")
    return table


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="validate")
@command
def main(cfg: DictConfig) -> None:
    report, md = validate(cfg)
    if not report.passed:
        print(f"error: {report.error_message(md)}", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
