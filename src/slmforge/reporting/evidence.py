"""What the report needs beyond the records' numbers: each predictor's prediction rows and confusion matrix.

The leaderboard's confidence intervals, significance marks, reliability diagram, routing curve and
confusion matrix are computed from ``predictions.jsonl`` and ``confusion_matrix.json``, the files the
evaluation writes beside each ``results.json``. :class:`Evidence` holds them per leaderboard row (the
name the records share), with the rows of each seed kept apart: rows are only ever paired within a seed.
A record whose files are missing (an older run, a hand-made record) simply has no evidence; the report
then shows no interval for it rather than failing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmforge.errors import RecordError
from slmforge.records import (
    CONFUSION_MATRIX_FILE,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    PredictionRow,
    ResultsRecord,
    read_predictions,
)
from slmforge.reporting.collect import seed_groups

log = logging.getLogger(__name__)


@dataclass
class Evidence:
    """Per leaderboard row name: ``rows`` ``{seed: prediction rows}`` and ``confusion`` ``{"labels": [...],
    "matrix": [[...]]}`` (rows: true label, columns: predicted; summed over seeds with the same labels)."""

    rows: dict[str, dict[Any, list[PredictionRow]]] = field(default_factory=dict)
    confusion: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_files(cls, records: Sequence[ResultsRecord], files: Sequence[str | Path]) -> Evidence:
        """Read the evidence beside each record's file (``files[i]`` is ``records[i]``'s results file).

        Only a ``results.json`` has its ``predictions.jsonl`` beside it (``results_<x>.json`` variants
        share a folder with another record, so their rows cannot be told apart and are skipped)."""
        ev = cls()
        for group in seed_groups(records):
            name = records[group[0]].name
            per_seed: dict[Any, list[PredictionRow]] = {}
            matrices: list[dict[str, Any]] = []
            for i in group:
                path = Path(files[i])
                folder = path.parent if path.is_file() or path.suffix == ".json" else path
                if path.suffix == ".json" and path.name != RESULTS_FILE:
                    continue
                if (folder / PREDICTIONS_FILE).is_file():
                    try:
                        per_seed[records[i].seed] = read_predictions(folder / PREDICTIONS_FILE)
                    except RecordError as e:  # a damaged file costs that row its interval, not the report
                        log.warning("%s", e)
                cm = _read_confusion(folder / CONFUSION_MATRIX_FILE)
                if cm is not None:
                    matrices.append(cm)
            if per_seed and len(per_seed) == len(group):  # every seed's rows, or none (no partial means)
                ev.rows[name] = per_seed
            if matrices:
                ev.confusion[name] = _sum_matrices(matrices)
        return ev

    def rows_by_run_id(self, records: Sequence[ResultsRecord]) -> dict[str, list[PredictionRow]]:
        """Each record's own prediction rows keyed by its ``run_id`` (records without evidence left out):
        what per-record readers such as the learning curve need, from the one reader of the files."""
        out: dict[str, list[PredictionRow]] = {}
        for r in records:
            rows = self.rows.get(r.name, {}).get(r.seed)
            if rows is not None:
                out[r.run_id] = rows
        return out


def _read_confusion(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s: not valid JSON; no confusion matrix for this predictor", path)
        return None
    matrix, labels = d.get("matrix"), d.get("labels")
    if not isinstance(matrix, list) or not matrix:
        return None
    if not labels or len(labels) != len(matrix):
        labels = [str(i) for i in range(len(matrix))]
    return {"labels": [str(x) for x in labels], "matrix": matrix}


def _sum_matrices(matrices: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds with the same label list add up (counts over all seeds' test rows); others are left out."""
    import numpy as np

    first = matrices[0]
    same = [m for m in matrices if m["labels"] == first["labels"]]
    total = np.sum([np.asarray(m["matrix"], dtype=float) for m in same], axis=0)
    return {"labels": first["labels"], "matrix": total.tolist(), "n_seeds": len(same)}
