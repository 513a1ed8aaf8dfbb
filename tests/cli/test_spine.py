"""The spine: the results contract, one setup path, evaluate's defaults, callbacks, HPO objective, DDP.

Each test runs the real commands on the tiny model (``model=tiny debug=fast``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from slmforge.errors import ConfigError, RecordError
from slmforge.records import (
    CONFUSION_MATRIX_FILE,
    SCHEMA_VERSION,
    ResultsRecord,
    read_predictions,
    read_results,
)

from clihelp import FAST, run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(shared_run: Path) -> Path:
    return shared_run


def test_record_carries_the_contract(run: Path) -> None:
    rec = read_results(run / "predictors/finetuned")
    zero = read_results(run / "predictors/zero_shot")
    assert rec.schema_version == SCHEMA_VERSION == 2
    assert (rec.primary_metric, rec.higher_is_better) == ("accuracy", True)
    p = rec.predictor
    assert (p["kind"], p["method"], p["model"], p["source"]) == ("local", "finetuned", "tiny", "tiny")
    assert len(p["weights_sha256"]) == 64 and p["weights_sha256"] == zero.predictor["weights_sha256"]
    assert p["adapter"]["kind"] == "lora" and p["adapter"]["r"] == 4 and p["adapter"]["alpha"] == 32
    assert p["adapter"]["dropout"] == pytest.approx(0.05) and "q_proj" in p["adapter"]["target_modules"]
    assert zero.predictor["adapter"] is None and p["k"] == zero.predictor["k"] == 0
    assert rec.seed == 3
    assert {"model=tiny", "adapter.r=4", "seed=3"} <= set(rec.overrides)
    assert rec.swept["adapter.r"] == "4"
    assert not any(o.startswith("hydra.") for o in rec.overrides)
    assert rec.data["fingerprint"] == zero.data["fingerprint"] and rec.data["sizes"]["test"] == rec.n == 8
    assert {"slmforge", "torch", "transformers", "peft", "lightning"} <= set(rec.versions)
    assert rec.git_sha  # read from the package's checkout, whatever the working directory
    assert rec.config_path == str(run / ".hydra/config.yaml")


def test_record_reads_on_a_screen(run: Path) -> None:
    text = (run / "predictors/finetuned/results.json").read_text()
    assert "confusion_matrix" not in json.loads(text)["metrics"]
    side = json.loads((run / "predictors/finetuned" / CONFUSION_MATRIX_FILE).read_text())
    assert len(side["matrix"]) == len(side["labels"]) == 8
    assert sum(map(sum, side["matrix"])) == 8
    assert len(text.splitlines()) < 150


def test_older_records_still_load_and_newer_ones_are_refused(tmp_path: Path) -> None:
    v1 = {"run_id": "a", "name": "x", "task": "extraction", "split": "test", "n": 1, "predictor": {},
          "data": {}, "metrics": {"field_micro_f1": 0.5}, "cost": {"per_1k_requests_usd": 1.0}}  # fmt: skip
    rec = ResultsRecord.from_dict(v1)
    assert rec.primary_metric == "field_micro_f1" and rec.primary_value == 0.5 and rec.schema_version == 1
    with pytest.raises(RecordError, match="schema 3 is newer"):
        ResultsRecord.from_dict({**v1, "schema_version": 3})


def test_adapter_records_its_base_model_portably(run: Path) -> None:
    cfg = json.loads((run / "adapter/adapter_config.json").read_text())
    rec = read_results(run / "predictors/finetuned")
    assert cfg["base_model_name_or_path"] == "tiny"  # never a machine-local cache folder
    assert cfg["slmforge"]["base_model"]["weights_sha256"] == rec.predictor["weights_sha256"]
    assert cfg["slmforge"]["weights_sha256"] == rec.predictor["adapter"]["sha256"]


def test_evaluate_scores_the_test_split_by_default_and_writes_the_record_first(
    run: Path, tmp_path: Path
) -> None:
    proc = run_cli("slmforge-evaluate", f"run_dir={run}", f"hydra.run.dir={tmp_path / 'ev'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_results(tmp_path / "ev")
    assert (rec.split, rec.n, rec.predictor["method"]) == ("test", 8, "finetuned")
    assert rec.predictor["adapter"]["r"] == 4  # read back from the adapter's own config
    assert not (tmp_path / "ev/predictions_validation.jsonl").exists()  # only what was asked
    assert "validation" not in rec.metrics


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evaluate_run_dir_on_other_data_is_named_after_it(tmp_path: Path) -> None:
    topics = {"billing": "invoice charge refund", "technical": "crash error bug", "account": "password login"}
    rows = [{"text": f"{w} issue number {i}", "label": lab} for i in range(12) for lab, w in topics.items()]
    train, test = _jsonl(tmp_path / "train.jsonl", rows[:30]), _jsonl(tmp_path / "test.jsonl", rows[30:])
    fresh = _jsonl(tmp_path / "fresh_tickets.jsonl", rows[:3])
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "data=jsonl", f"data.train_path={train}", f"data.test_path={test}",
        "logger=csv", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(
        "slmforge-evaluate", f"run_dir={run_dir}", f"data.test_path={fresh}", "logger=csv", cwd=tmp_path,
        env={"SLMFORGE_OUTPUTS": str(tmp_path / "out")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = (tmp_path / "out/evaluate/runs").iterdir()
    assert out.name.endswith("tiny-jsonl-fresh_tickets-test-finetuned"), out.name
    rec = read_results(out)
    assert rec.n == 3 and [r.text for r in read_predictions(out)] == [r["text"] for r in rows[:3]]
    assert rec.data["origin"]["test"] == str(fresh) and rec.predictor["method"] == "finetuned"


def test_every_command_shares_build_setup() -> None:
    """Only build.py composes data -> task -> model; commands, the training run and the benchmark scripts
    call build_setup (the torchtune lesson: share one setup or guard the copies)."""
    pieces = {"build_data", "build_task", "build_model", "load_splits", "set_length_bound"}
    offenders = []
    users = set()
    for path in [*REPO.glob("src/slmforge/**/*.py"), *REPO.glob("scripts/*.py")]:
        if path.name == "build.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in pieces and "data/sources.py" not in str(path) and "tasks/" not in str(path):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} calls {name}")
                if name == "build_setup":
                    users.add(path.relative_to(REPO).as_posix())
    assert not offenders, offenders
    assert {
        "src/slmforge/training/run.py",
        "src/slmforge/cli/evaluate.py",
        "src/slmforge/cli/compare.py",
        "scripts/bench_extract_speed.py",
        "scripts/bench_eval_speed.py",
        "scripts/bench_train_speed.py",
    } <= users


def test_callbacks_group_and_trainer_key_collisions(tmp_path: Path) -> None:
    ok = run_cli(
        "slmforge-train", *FAST, "callbacks=early_stopping", "logger=csv", "eval.zero_shot=false",
        f"hydra.run.dir={tmp_path / 'es'}", cwd=tmp_path,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    cfg = (tmp_path / "es/.hydra/config.yaml").read_text()
    assert "EarlyStopping" in cfg and "monitor: val/primary" in cfg and "LearningRateMonitor" in cfg
    assert (
        "lr-AdamW" in (tmp_path / "es/csv/metrics.csv").read_text().splitlines()[0]
    )  # the LR monitor logged

    bad = run_cli(
        "slmforge-train", *FAST, "+callbacks.mine.patience=2", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path
    )
    assert bad.returncode == 2 and "error: callbacks.mine has no _target_" in bad.stderr, bad.stderr[-2000:]
    clash = run_cli(
        "slmforge-train",
        *FAST,
        "+hardware.trainer.max_epochs=3",
        f"hydra.run.dir={tmp_path / 'c'}",
        cwd=tmp_path,
    )
    assert clash.returncode == 2 and "hardware.trainer sets ['max_epochs']" in clash.stderr, clash.stderr[
        -2000:
    ]
    assert "Traceback" not in bad.stderr + clash.stderr


def test_hpo_objective_reads_validation_only(tmp_path: Path) -> None:
    from slmforge.cli.train import objective

    summary = {
        "primary_metric": "accuracy",
        "val": {"accuracy": 0.25},
        "finetuned": {"metrics": {"accuracy": 0.9}},
    }
    assert objective(summary) == 0.25
    with pytest.raises(ConfigError, match="no validation result"):
        objective({**summary, "val": None})  # never falls back to the test metric
    proc = run_cli(
        "slmforge-train", *FAST, "objective_required=true", "data.max_validation_examples=0",
        f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "validation split is empty" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "r").exists()  # stopped before any compute; no empty folder left behind


def test_ddp_on_two_cpu_processes_evaluates_and_writes_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = run_cli(
        "slmforge-train", *FAST, "hardware=ddp_cpu", "logger=csv", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in run_dir.glob("*.log"))  # each process logs to its own file
    assert logs.count("evaluate finetuned on test (8 rows) done") == 1
    assert logs.count("evaluate zero_shot on test (8 rows) done") == 1
    assert logs.count("GLOBAL_RANK: 1") == 1  # a second process did train
    assert proc.stdout.count("outputs: ") == 1
    rec = read_results(run_dir / "predictors/finetuned")
    assert rec.n == 8 and len(read_predictions(run_dir / "predictors/finetuned")) == 8
    assert json.loads((run_dir / "metrics.json").read_text())["training"]["steps"] == 4
