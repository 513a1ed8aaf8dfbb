"""Grounded entity extraction end to end through the console scripts: slmforge-train experiment=entities on
the tiny model (free decoding), then slmforge-evaluate of that run copy-constrained, recorded separately."""

from __future__ import annotations

import json
from pathlib import Path

from slmforge.data.generators.entities import TYPES
from slmforge.records import read_predictions, read_results

from clihelp import FAST, run_cli

# Few generations keep both commands near 15 s on 2 cores; initializer_range 0.3 makes the tiny model's
# guesses peaked enough that, constrained, it writes many spans (the default tiny model, barely trained,
# writes only empty lists, which would make groundedness trivially 1.0).
SMALL = [
    "logger=csv", "eval.zero_shot=false", "eval.validation_predictions=false", "eval.latency_probe_n=1",
    "data.sizes.test=16", "data.max_test_examples=16",
]  # fmt: skip


def test_entities_train_then_copy_constrained_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", "experiment=entities", *FAST, *SMALL, "+model.tiny_config.initializer_range=0.3",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    free = read_results(run / "predictors" / "finetuned")
    assert free.task == "entities" and free.primary_metric == "span_micro_f1"
    assert free.predictor["decoding"] == "greedy" and "constraint" not in free.predictor
    for key in ("span_micro_f1", "span_macro_f1", "per_type", "groundedness", "ungrounded_spans"):
        assert key in free.metrics, key
    assert set(free.metrics["per_type"]) == set(TYPES)

    ev = tmp_path / "ev"
    proc = run_cli(
        "slmforge-evaluate", f"run_dir={run}", "eval.constrained=true", "logger=csv", "eval.latency_probe_n=1",
        f"hydra.run.dir={ev}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_results(ev)
    assert rec.task == "entities" and rec.primary_metric == "span_micro_f1" and rec.n == 16
    assert rec.predictor["method"] == "finetuned" and rec.predictor["decoding"] == "constrained_greedy"
    assert rec.predictor["constraint"]["per_row"] is True
    m = rec.metrics
    assert 0.0 <= m["span_micro_f1"] <= 1.0 and set(m["per_type"]) == set(TYPES)
    assert m["json_validity"] == m["schema_adherence"] == 1.0
    assert m["predicted_spans"] > 0  # the model does write spans ...
    assert m["groundedness"] == 1.0 and m["ungrounded_spans"] == 0  # ... every one copied from its input
    rows = read_predictions(ev)
    assert len(rows) == 16
    for row in rows:
        out = json.loads(row.raw_output)  # every prediction parses
        assert list(out) == list(TYPES)
        assert all(span in row.text for spans in out.values() for span in spans)

    # Free decoding stays recorded on its own, in the training run, untouched by the constrained evaluation.
    assert read_results(run / "predictors" / "finetuned").to_dict() == free.to_dict()
    assert free.metrics["json_validity"] <= m["json_validity"]
    assert not (run / "predictors" / "finetuned").samefile(ev)
