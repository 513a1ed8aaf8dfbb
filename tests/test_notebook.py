"""notebooks/review.ipynb executes top to bottom: as shipped on the outputs folder of a real (tiny) run, and on
a fixture multirun (SLMFORGE_RUNS) where it must show the expected winner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from slmforge.config import find_outputs_dir
from slmforge.records import read_results
from slmforge.reporting import fmt_metric

from clihelp import FAST, run_cli

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "review.ipynb"
TABLE_CELL = 2  # the cell whose output is the leaderboard table


def _fixture_runs():
    path = REPO / "tests" / "reporting" / "fixture_runs.py"
    spec = importlib.util.spec_from_file_location("slmforge_test_fixture_runs_nb", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _execute(cwd: Path) -> nbformat.NotebookNode:
    """Run the shipped notebook in a fresh kernel started in ``cwd`` (as Jupyter starts it in the notebook's
    folder); the kernel inherits this process's environment."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # jupyter_client swaps the kernelspec's "python" for sys.executable, so the venv runs the notebook.
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def _text_outputs(nb: nbformat.NotebookNode) -> str:
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                chunks.append(out["text"])
            elif "data" in out:
                chunks.append(out["data"].get("text/plain", ""))
                chunks.append(out["data"].get("text/html", ""))
            elif out.get("output_type") == "error":
                chunks.append("\n".join(out.get("traceback", [])))
    return "\n".join(chunks)


def _table(nb: nbformat.NotebookNode) -> str:
    return next(o for o in nb.cells[TABLE_CELL].outputs if "data" in o)["data"]["text/plain"]


def _images(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def test_review_notebook_runs_as_shipped_on_the_outputs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = tmp_path / "outputs"
    proc = run_cli(
        "slmforge-train", *FAST, "logger=none", cwd=tmp_path, env={"SLMFORGE_OUTPUTS": str(outputs)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = outputs.glob("train/runs/*")
    zero, tuned = (read_results(run / "predictors" / p) for p in ("zero_shot", "finetuned"))
    for var in ("SLMFORGE_RUNS", "SLMFORGE_PRIMARY_METRIC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLMFORGE_OUTPUTS", str(outputs))
    monkeypatch.setenv("SLMFORGE_PLOTS_DIR", str(tmp_path / "plots"))

    nb = _execute(NOTEBOOK.parent)

    text = _text_outputs(nb)
    assert "2 results records on tickets/test" in text
    rows = {
        r.name: next(line for line in _table(nb).splitlines() if f" {r.name} " in line) for r in (zero, tuned)
    }
    for r in (zero, tuned):  # each predictor's row shows its record's accuracy
        assert fmt_metric(r.metrics["accuracy"]) in rows[r.name]
    best = text.split("Best: ", 1)[1].split("\n", 1)[0]
    assert best in {zero.name, tuned.name}
    assert len(_images(nb)) == 2 and (tmp_path / "plots" / "quality_vs_cost.png").is_file()


def test_outputs_folder_is_found_from_the_notebooks_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo" / "outputs").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    monkeypatch.delenv("SLMFORGE_OUTPUTS", raising=False)
    assert find_outputs_dir(tmp_path / "repo" / "notebooks") == tmp_path / "repo" / "outputs"
    assert find_outputs_dir(tmp_path) == tmp_path / "outputs"  # none above: names the missing folder
    monkeypatch.setenv("SLMFORGE_OUTPUTS", str(tmp_path / "elsewhere"))
    assert find_outputs_dir(tmp_path / "repo" / "notebooks") == tmp_path / "elsewhere"


def test_review_notebook_reproduces_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = _fixture_runs()
    runs = fx.write_multirun(tmp_path / "multirun")
    monkeypatch.setenv("SLMFORGE_RUNS", str(runs))
    monkeypatch.delenv("SLMFORGE_PRIMARY_METRIC", raising=False)
    monkeypatch.setenv("SLMFORGE_PLOTS_DIR", str(tmp_path / "plots"))
    monkeypatch.setenv("WANDB_MODE", "offline")

    nb = _execute(tmp_path)

    text = _text_outputs(nb)
    assert "5 results records" in text and "set aside" not in text
    assert f"Best: {fx.EXPECTED_WINNER}" in text
    assert "Deploy `lora-r16`" in text and "5,688× cheaper" in text
    first_row = next(line for line in _table(nb).splitlines() if line.lstrip().startswith("0 "))
    assert "lora-r16" in first_row and "0.91" in first_row  # the leaderboard's top row
    assert len(_images(nb)) == 2
    assert (tmp_path / "plots" / "quality_vs_cost.png").is_file()
    assert "W&B lookup skipped" in text
