"""Each kind of bad input: one clear message (what, where, how to fix), a non-zero exit, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import FAST, run_cli


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = [{"text": f"text number {i}", "label": "a" if i % 2 else "b"} for i in range(40)]


def _train(tmp_path: Path, *args: str):
    return run_cli("slmforge-train", *FAST, f"hydra.run.dir={tmp_path / 'run'}", *args, cwd=tmp_path)


def _assert_clear_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr
    assert "Traceback" not in err, err[-2000:]
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err[-1500:]}"


def test_missing_data_file(tmp_path):
    test = _jsonl(tmp_path / "test.jsonl", GOOD)
    proc = _train(
        tmp_path, "data=jsonl", f"data.train_path={tmp_path / 'nope.jsonl'}", f"data.test_path={test}"
    )
    _assert_clear_error(proc, "nope.jsonl", "does not exist", "data.train_path=")


def test_renamed_field(tmp_path):
    rows = [{"body": r["text"], "label": r["label"]} for r in GOOD]
    f = _jsonl(tmp_path / "d.jsonl", rows)
    proc = _train(tmp_path, "data=jsonl", f"data.train_path={f}", f"data.test_path={f}")
    _assert_clear_error(proc, "no field 'text'", "body", "data.text_field=")


def test_empty_text(tmp_path):
    rows = [*GOOD[:5], {"text": "  ", "label": "a"}, *GOOD[5:]]
    f = _jsonl(tmp_path / "d.jsonl", rows)
    t = _jsonl(tmp_path / "t.jsonl", GOOD)
    proc = _train(tmp_path, "data=jsonl", f"data.train_path={f}", f"data.test_path={t}")
    _assert_clear_error(proc, "row 6", "empty 'text'", "d.jsonl")


def test_test_label_unseen_in_training(tmp_path):
    f = _jsonl(tmp_path / "train.jsonl", GOOD)
    t = _jsonl(tmp_path / "test.jsonl", [*GOOD[:4], {"text": "new kind", "label": "zzz"}])
    proc = _train(
        tmp_path, "data=jsonl", f"data.train_path={f}", f"data.test_path={t}", "data.max_test_examples=null"
    )
    _assert_clear_error(proc, "test split", "'zzz'", "task.labels")


def test_unknown_config_option(tmp_path):
    proc = _train(tmp_path, "train.lrr=0.1")
    assert proc.returncode != 0
    assert "lrr" in proc.stderr


def test_unknown_group_option(tmp_path):
    proc = _train(tmp_path, "adapter=lorax")
    assert proc.returncode != 0
    assert "lorax" in proc.stderr and "Available options" in proc.stderr


def test_hub_model_while_offline(tmp_path):
    proc = run_cli(
        "slmforge-train", "model=qwen2.5-0.5b", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    _assert_clear_error(proc, "Qwen/Qwen2.5-0.5B-Instruct", "model.pretrained=")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_corrupt_checkpoint_keeps_existing_outputs(tmp_path, content):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(content)
    earlier = run / "predictors" / "zero_shot" / "results.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"kept": true}')
    proc = _train(tmp_path, "ckpt_path=last")
    _assert_clear_error(proc, "last.ckpt", "corrupt", "ckpt_path")
    assert json.loads(earlier.read_text()) == {"kept": True}
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == content


def test_missing_checkpoint(tmp_path):
    proc = _train(tmp_path, f"ckpt_path={tmp_path / 'nowhere'}")
    _assert_clear_error(proc, "no checkpoint", "ckpt_path")
