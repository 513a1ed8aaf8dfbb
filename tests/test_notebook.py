"""notebooks/review.ipynb executes top to bottom on a fixture multirun and shows the expected winner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "review.ipynb"


def _fixture_runs():
    path = REPO / "tests" / "reporting" / "fixture_runs.py"
    spec = importlib.util.spec_from_file_location("slmforge_test_fixture_runs_nb", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_review_notebook_reproduces_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = _fixture_runs()
    runs = fx.write_multirun(tmp_path / "multirun")
    monkeypatch.setenv("SLMFORGE_RUNS", str(runs))
    monkeypatch.setenv("SLMFORGE_PLOTS_DIR", str(tmp_path / "plots"))
    monkeypatch.setenv("WANDB_MODE", "offline")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # jupyter_client swaps the kernelspec's "python" for sys.executable, so the venv runs the notebook.
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    text = _text_outputs(nb)
    assert f"Best: {fx.EXPECTED_WINNER}" in text
    assert "Deploy `lora-r16`" in text and "5,688× cheaper" in text
    table = next(o for o in nb.cells[2].outputs if "data" in o)["data"]["text/plain"]
    first_row = next(line for line in table.splitlines() if line.lstrip().startswith("0 "))
    assert "lora-r16" in first_row and "0.91" in first_row  # the leaderboard's top row
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
    assert (tmp_path / "plots" / "quality_vs_cost.png").is_file()
    assert "W&B lookup skipped" in text
