"""Report section for a hyperparameter sweep: its configurations ranked on the validation split.

An Optuna or grid sweep (``slmforge-train -m hparams_search=lora_optuna``, ``slmforge-train -m
adapter.r=8,16``) writes one fine-tuned record per trial. Each record carries the test split's metrics and,
under ``metrics["validation"]``, the validation split's: the split the sweep optimised. Choosing the winner
on the test column would tune on the test data and overstate how well it generalises, so the leaderboard
ranks configurations on the validation primary metric and shows the test one beside it for reference only.

One row per distinct configuration (the values of the swept overrides, :func:`~slmforge.reporting.collect.
swept_keys`, seeds excluded): its records over several seeds are averaged (``n_seeds``). The section also
writes ``sweep_leaderboard.csv`` (every configuration) and ``sweep_leaderboard.png`` (validation vs test per
configuration, the winner marked: does the validation ranking agree with the test one?).

Figures are drawn on an explicit Agg canvas, never pyplot, so the process-wide backend is left alone.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slmforge.economics.break_even import is_finetuned
from slmforge.errors import ConfigError
from slmforge.records import ResultsRecord
from slmforge.reporting.collect import SEED_KEYS, swept_keys
from slmforge.reporting.formatting import fmt_duration, fmt_metric
from slmforge.reporting.render import markdown_table

SWEEP_LEADERBOARD_TITLE = "Sweep leaderboard (ranked on validation)"
SWEEP_LEADERBOARD_CSV = "sweep_leaderboard.csv"
SWEEP_LEADERBOARD_PNG = "sweep_leaderboard.png"
_MAX_TABLE_ROWS = 20

log = logging.getLogger("slmforge")


def _validation_value(record: ResultsRecord) -> float | None:
    """The record's validation primary metric, or None when it has none."""
    val = record.metrics.get("validation")
    v = val.get(record.primary_metric) if isinstance(val, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _sweep_records(records: Sequence[ResultsRecord]) -> list[ResultsRecord]:
    """Fine-tuned records with a validation primary metric (and a test one), all of one primary metric."""
    tuned = [
        r
        for r in records
        if is_finetuned(r) and _validation_value(r) is not None and r.primary_value is not None
    ]
    metrics = sorted({r.primary_metric for r in tuned})
    if len(metrics) > 1:
        by = {m: [r.name for r in tuned if r.primary_metric == m][:3] for m in metrics}
        raise ConfigError(
            f"the sweep's fine-tuned records rank on different primary metrics ({by}), so they cannot be "
            "ranked together; report one task's sweep at a time (runs=[<one sweep folder>])"
        )
    return tuned


def _keys(tuned: Sequence[ResultsRecord]) -> list[str]:
    return [k for k in swept_keys(tuned) if k not in SEED_KEYS]


def _run_name(record: ResultsRecord) -> str:
    """The record's run folder (``<run dir>/.hydra/config.yaml`` -> ``<run dir>``'s name), else its run id."""
    if record.config_path:
        name = Path(record.config_path).parent.parent.name
        if name:
            return name
    return record.run_id


def _validation_rows(record: ResultsRecord) -> float:
    n = record.metrics["validation"].get("n")
    if n is None:
        n = (record.data.get("sizes") or {}).get("validation")
    return float(n) if isinstance(n, int | float) else math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def sweep_leaderboard(records: Sequence[ResultsRecord]) -> pd.DataFrame | None:
    """One row per swept configuration, best first on the validation primary metric; None when the records
    are not a sweep (fewer than two fine-tuned records with validation metrics, or no swept override).

    Columns: ``rank``, one per swept override key, ``validation_<metric>`` and ``test_<metric>`` (means over
    the configuration's records), ``n_seeds`` (records averaged), ``n_validation`` (validation rows),
    ``training_time_s`` (mean ``training["time_s"]``; NaN when unknown) and ``run`` (run folders, comma
    separated). Ties on validation keep the order the configurations were found in. Raises
    :class:`~slmforge.errors.ConfigError` when the fine-tuned records name different primary metrics.
    """
    tuned = _sweep_records(records)
    if len(tuned) < 2:
        return None
    keys = _keys(tuned)
    if not keys:
        return None
    metric, higher = tuned[0].primary_metric, tuned[0].higher_is_better
    groups: dict[tuple[str | None, ...], list[ResultsRecord]] = {}
    for r in tuned:
        groups.setdefault(tuple(r.swept.get(k) for k in keys), []).append(r)
    rows = []
    for config, recs in groups.items():
        n_val = {_validation_rows(r) for r in recs}
        times = [float(r.training["time_s"]) for r in recs if (r.training or {}).get("time_s") is not None]
        rows.append({
            **dict(zip(keys, config, strict=True)),
            f"validation_{metric}": _mean([v for r in recs if (v := _validation_value(r)) is not None]),
            f"test_{metric}": _mean([v for r in recs if (v := r.primary_value) is not None]),
            "n_seeds": len(recs),
            "n_validation": n_val.pop() if len(n_val) == 1 else _mean(list(n_val)),
            "training_time_s": _mean(times),
            "run": ", ".join(dict.fromkeys(_run_name(r) for r in recs)),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    df = df.sort_values(f"validation_{metric}", ascending=not higher, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def winner_overrides(records: Sequence[ResultsRecord], board: pd.DataFrame) -> str:
    """The top configuration's overrides as they were typed (``+`` prefixes kept, shell-quoted where needed),
    e.g. ``train.lr=0.002 adapter.r=16``: paste after ``slmforge-train`` to rerun it. Empty when the winner
    set none of the swept keys (it ran on the defaults)."""
    tuned = _sweep_records(records)
    keys = _keys(tuned)
    top = board.iloc[0]
    config = tuple(None if _missing(top[k]) else top[k] for k in keys)
    winner = next(r for r in tuned if tuple(r.swept.get(k) for k in keys) == config)
    set_keys = {k for k, v in zip(keys, config, strict=True) if v is not None}
    typed = [o for o in winner.overrides if "=" in o and o.split("=", 1)[0].lstrip("+") in set_keys]
    return " ".join(shlex.quote(o) for o in typed)


def plot_sweep_leaderboard(
    board: pd.DataFrame, path: str | Path, metric: str, winner_label: str = ""
) -> Path:
    """Validation (x) vs test (y) primary metric, one point per configuration, the validation winner marked;
    the dotted diagonal is validation = test."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = board[f"validation_{metric}"].to_numpy(dtype=float)
    y = board[f"test_{metric}"].to_numpy(dtype=float)
    fig = Figure(figsize=(6.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(x[1:], y[1:], s=36, color="#1f77b4", alpha=0.8, label="configuration")
    ax.scatter(x[:1], y[:1], s=140, marker="*", color="#d62728", zorder=3, label="chosen on validation")
    # The winner sits at the best validation end of the x axis: label it towards the middle.
    right = bool(np.nanargmax(x) == 0) if np.isfinite(x).any() else False
    ax.annotate(winner_label or "rank 1", (x[0], y[0]), textcoords="offset points",
                xytext=(-8 if right else 8, 6), ha="right" if right else "left", fontsize=8,
                color="#d62728")  # fmt: skip
    finite = np.concatenate([x, y])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        pad = (hi - lo) * 0.05 or 0.01
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle=":", color="grey", linewidth=1,
                label="validation = test")  # fmt: skip
    ax.set_xlabel(f"validation {metric} (ranks the sweep)")
    ax.set_ylabel(f"test {metric} (reference only)")
    ax.set_title(f"Sweep: validation vs test {metric}, {len(board)} configurations")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _agreement(board: pd.DataFrame, metric: str, higher: bool) -> str:
    """A sentence on whether the test column would have ranked the configurations the same way."""
    val, test = board[f"validation_{metric}"], board[f"test_{metric}"]
    best_test = int(test.idxmax() if higher else test.idxmin()) if test.notna().any() else 0
    text = (
        "The validation winner is also the best configuration on test."
        if best_test == 0 or test.iloc[best_test] == test.iloc[0]
        else f"On test, rank {best_test + 1} scores best ({fmt_metric(test.iloc[best_test])} vs "
        f"{fmt_metric(test.iloc[0])}); do not switch to it, that would be choosing on the test split."
    )
    if len(board) >= 3 and val.nunique() > 1 and test.nunique() > 1:
        rho = float(val.rank().corr(test.rank()))  # Spearman: Pearson of the ranks
        text += f" Spearman rank correlation between validation and test: {rho:.2f}."
    return text


def sweep_leaderboard_section(
    records: Sequence[ResultsRecord], out_dir: str | Path
) -> tuple[str, str, list[Path]] | None:
    """(title, Markdown, [PNG]) for the report, or None when the records are not a sweep with validation
    metrics (:func:`sweep_leaderboard`). Also writes ``sweep_leaderboard.csv`` (every configuration) to
    ``out_dir``; the Markdown table shows the top 20. Records that cannot be ranked together (different
    primary metrics) skip the section with a warning: the rest of the report still stands."""
    try:
        board = sweep_leaderboard(records)
    except ConfigError as e:
        log.warning("no sweep leaderboard: %s", e)
        return None
    if board is None:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    board.to_csv(out_dir / SWEEP_LEADERBOARD_CSV, index=False)
    tuned = _sweep_records(records)
    metric, higher = tuned[0].primary_metric, tuned[0].higher_is_better
    keys = _keys(tuned)
    fragment = winner_overrides(records, board)
    png = plot_sweep_leaderboard(board, out_dir / SWEEP_LEADERBOARD_PNG, metric, fragment)
    table = pd.DataFrame(
        {
            "rank": board["rank"],
            **{k: board[k].map(lambda v: "" if _missing(v) else v) for k in keys},
            f"validation {metric}": board[f"validation_{metric}"].map(fmt_metric),
            f"test {metric} (reference)": board[f"test_{metric}"].map(fmt_metric),
            "seeds": board["n_seeds"],
            "validation rows": board["n_validation"].map(lambda n: "n/a" if _missing(n) else f"{n:,.0f}"),
            "train time": board["training_time_s"].map(lambda t: fmt_duration(t) or "n/a"),
            "run": board["run"],
        }
    ).head(_MAX_TABLE_ROWS)
    direction = "higher" if higher else "lower"
    body = [
        f"{len(board)} configurations of the sweep's swept overrides ({', '.join(f'`{k}`' for k in keys)}), "
        f"ranked on validation {metric} ({direction} is better): the validation split is what the sweep "
        "optimised. The test column is shown for reference only; choosing a configuration on it would leak "
        "the test data into the choice and overstate the winner. Configurations run with several seeds are "
        "averaged over them.",
        "",
        markdown_table(table),
        "",
    ]
    if len(board) > _MAX_TABLE_ROWS:
        body.append(
            f"Top {_MAX_TABLE_ROWS} of {len(board)}; every configuration is in `{SWEEP_LEADERBOARD_CSV}`."
        )
    else:
        body.append(f"The table is also written to `{SWEEP_LEADERBOARD_CSV}`.")
    ties = int((board[f"validation_{metric}"] == board[f"validation_{metric}"].iloc[0]).sum()) - 1
    tie_note = (
        f" (tied on validation with {ties} other configuration(s); the first found is listed)" if ties else ""
    )
    rerun = (
        f"`{fragment}` (add it to the sweep's fixed overrides, without `-m`, to rerun the winner)"
        if fragment
        else "the defaults (it set none of the swept overrides)"
    )
    body += ["", f"Winner on validation{tie_note}: {rerun}. " + _agreement(board, metric, higher)]
    return SWEEP_LEADERBOARD_TITLE, "\n".join(body), [png]
