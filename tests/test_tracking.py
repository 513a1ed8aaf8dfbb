"""W&B tracking never ends a run, and every run it logs is named and grouped after what it holds.

Offline W&B runs are read back from their ``.wandb`` files with W&B's own reader (``wandb leet inspect``).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from slmforge import tracking
from slmforge.cli.sweep_callback import job_suffix
from slmforge.records import PredictionRow, ResultsRecord, read_results
from slmforge.reporting.wandb_summary import runs_group

from clihelp import FAST, run_cli

WANDB_CLI = Path(sys.executable).parent / "wandb"


def offline_run(run_folder: Path) -> dict:
    """An offline W&B run as W&B wrote it: its ``run`` record (display_name, run_group, job_type), its
    ``summary`` and its ``artifacts`` (name, type, manifest)."""
    [wandb_file] = run_folder.glob("run-*.wandb")
    records = subprocess.run(
        [str(WANDB_CLI), "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    summary = subprocess.run(
        [str(WANDB_CLI), "leet", "inspect", "--summary", "--json", str(wandb_file)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    out: dict = {"run": None, "artifacts": [], "summary": json.loads(summary)["summary"]}
    for line in records.splitlines():
        rec = json.loads(line)
        if rec.get("type") == "run":
            out["run"] = rec["run"]
        elif rec.get("type") == "artifact":
            out["artifacts"].append(rec["artifact"])
    return out


def offline_runs(folder: Path) -> list[Path]:
    """The offline W&B runs written directly under ``<folder>/wandb``."""
    return sorted((folder / "wandb").glob("offline-run-*"))


class _Server(http.server.ThreadingHTTPServer):
    """A local HTTP server answering every request with 401: reachable, but it accepts no API key."""


class _Reject(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b'{"errors": ["invalid API key"]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def no_login(tmp_path: Path) -> dict[str, str]:
    """An environment in which W&B finds no credentials: no key, an empty config dir, a HOME without netrc
    (the model caches stay where they are, so nothing is converted again)."""
    home = Path.home()
    return {
        "WANDB_API_KEY": "",
        "HOME": str(tmp_path / "home"),
        "NETRC": str(tmp_path / "no-netrc"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "SLMFORGE_CACHE": os.environ.get("SLMFORGE_CACHE", str(home / ".cache" / "slmforge")),
        "HF_HOME": os.environ.get("HF_HOME", str(home / ".cache" / "huggingface")),
    }


@pytest.fixture
def fresh_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees its own probe results and warnings (both are kept per process)."""
    monkeypatch.setattr(tracking, "_online_problems", {})
    monkeypatch.setattr(tracking, "_warned", set())


# ---- online without a login or a server: offline, one warning, nothing lost ----------------------------------


def test_online_without_api_key_logs_offline_with_one_warning(tmp_path, no_login):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path,
        env={**no_login, "WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    warnings = [
        ln for ln in proc.stderr.splitlines() if ln.startswith("warning: W&B online logging unavailable")
    ]
    assert len(warnings) == 1, proc.stderr[-3000:]
    assert "no API key configured" in warnings[0]
    assert f"logging offline to {run_dir / 'wandb'}" in warnings[0]
    assert f"wandb sync {run_dir / 'wandb' / 'offline-run-*'}" in warnings[0]
    zero_shot = read_results(run_dir / "predictors" / "zero_shot")
    finetuned = read_results(run_dir / "predictors" / "finetuned")
    [folder] = offline_runs(run_dir)
    wb = offline_run(folder)
    assert wb["run"]["job_type"] == "train"
    assert wb["run"]["display_name"] == "tiny-lora-tickets"
    assert wb["summary"]["zero_shot/test/accuracy"] == zero_shot.metrics["accuracy"]
    assert wb["summary"]["finetuned/test/accuracy"] == finetuned.metrics["accuracy"]


def test_wandb_failure_during_a_run_is_warned_once_and_keeps_local_results(
    tmp_path, no_login, rejecting_server
):
    # A key and a server that answers, so online logging is tried; the server rejects the key, so wandb.init
    # raises inside the run (after the model has loaded). The run must carry on without W&B.
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path,
        env={**no_login, "WANDB_MODE": "online", "WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": rejecting_server},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    failures = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: W&B logging failed")]
    assert len(failures) == 1, proc.stderr[-3000:]
    assert "local results are unaffected" in failures[0]
    assert "W&B online logging unavailable" not in proc.stderr  # the server answered: online was tried
    assert read_results(run_dir / "predictors" / "zero_shot").n == 8
    assert read_results(run_dir / "predictors" / "finetuned").n == 8
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["training"]["steps"] == 4
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


def test_probe_key_but_unreachable_server_falls_back_offline(tmp_path, monkeypatch, capsys, fresh_tracking):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    problem = tracking.online_problem(timeout_s=2.0)
    assert problem is not None and problem.startswith("http://127.0.0.1:9 unreachable")
    assert tracking.wandb_mode("online", tmp_path / "wandb") == "offline"
    assert tracking.wandb_mode("online", tmp_path / "wandb") == "offline"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: W&B online logging unavailable (http://127.0.0.1:9")
    assert tracking.wandb_mode("offline", tmp_path / "wandb") == "offline"  # offline is never probed


def test_probe_finds_a_netrc_key_and_a_reachable_server(
    tmp_path, monkeypatch, fresh_tracking, rejecting_server
):
    netloc = rejecting_server.removeprefix("http://")
    monkeypatch.setenv("WANDB_BASE_URL", rejecting_server)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert tracking.online_problem() == "no API key configured: run `wandb login` or set WANDB_API_KEY"
    (tmp_path / "netrc").write_text(f"machine {netloc}\n  login user\n  password {'k' * 40}\n")
    assert tracking.online_problem() is None  # any HTTP answer (here 401) means the server is reachable
    assert tracking.wandb_mode("online", tmp_path / "wandb") == "online"


def _record(config_path: str | None = None) -> ResultsRecord:
    return ResultsRecord(
        run_id="r", name="tiny-zero-shot", task="classification", split="test", n=2,
        predictor={"kind": "local", "method": "zero_shot", "model": "tiny"}, data={"name": "tickets"},
        metrics={"accuracy": 0.5, "macro_f1": 0.25}, latency_ms={"mean": 10.0, "p95": 12.0},
        throughput={"examples_per_s": 3.0}, tokens={}, config_path=config_path,
    )  # fmt: skip


def test_guarded_logger_turns_a_wandb_failure_into_one_warning(tmp_path, capsys, fresh_tracking):
    (tmp_path / "wandb").write_text("a file where W&B wants its folder")  # wandb.init fails for real
    loggers = tracking.make_loggers(
        {"wandb": {"mode": "offline", "group": "g"}}, tmp_path, "run", {"seed": 0}, ["tiny"]
    )
    rows = [PredictionRow(id="1", text="t", gold="a", pred="b", confidence=0.5, correct=0.0, latency_ms=1.0)]
    tracking.log_evaluation(loggers, _record(), rows, "zero_shot/test")
    [logger] = loggers
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"train/loss": 1.0}, step=1)
    tracking.log_adapter(loggers, tmp_path, "run")
    tracking.finish()
    assert tracking.wandb_run(loggers) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("warning: W&B logging failed while starting the run (NotADirectoryError")


# ---- names and groups ------------------------------------------------------------------------------------------


def test_job_suffix_is_file_name_safe_and_distinct():
    assert job_suffix("") == ""
    assert job_suffix("adapter.r=4,seed=1") == "_adapter.r=4,seed=1"
    assert job_suffix("data.train_path=/a b/c.jsonl") == "_data.train_path=-a-b-c.jsonl"
    long_a, long_b = job_suffix("x=" + "a" * 200), job_suffix("x=" + "a" * 199 + "b")
    assert len(long_a) == len(long_b) == 101 and long_a != long_b


def _run_folder(root: Path, group: str | None, mode: str = "RUN", overrides: tuple[str, ...] = ()) -> str:
    """A run folder as a command leaves it: resolved config and Hydra's record; returns its config path."""
    root.mkdir(parents=True)
    logger = {"wandb": {"group": group}} if group else {}
    OmegaConf.save(OmegaConf.create({"logger": logger}), root / "config_resolved.yaml")
    hydra = {"mode": mode, "runtime": {"output_dir": str(root)}, "overrides": {"task": list(overrides)}}
    (root / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), root / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create({}), root / ".hydra" / "config.yaml")
    return str(root / ".hydra" / "config.yaml")


def test_report_group_is_the_group_its_runs_logged_to(tmp_path):
    run = _run_folder(tmp_path / "run", "compare-tickets")
    job0 = _run_folder(
        tmp_path / "2025-06-01_12-00-00" / "0_a", "train-tickets", "MULTIRUN", ("adapter.r=4",)
    )
    job1 = _run_folder(
        tmp_path / "2025-06-01_12-00-00" / "1_b", "train-tickets", "MULTIRUN", ("adapter.r=8",)
    )
    named = _run_folder(tmp_path / "x" / "0_c", "mine", "MULTIRUN", ("logger.wandb.group=mine",))
    no_wandb = _run_folder(tmp_path / "plain", None)
    assert runs_group([_record(run), _record(run), _record(no_wandb)]) == "compare-tickets"
    assert runs_group([_record(job0), _record(job1)]) == "train-tickets-2025-06-01_12-00-00"  # the sweep's
    assert runs_group([_record(named)]) == "mine"  # a group given on the command line is kept
    assert runs_group([_record(run), _record(job0)]) == "report"  # two groups: the report's own
    assert runs_group([_record(None), _record(no_wandb)]) == "report"


def test_evaluate_logs_a_run_named_after_what_it_evaluated_without_a_table(tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(
        "slmforge-evaluate", *FAST, "logger.wandb.log_predictions=0", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_results(out)
    [folder] = offline_runs(out)
    wb = offline_run(folder)
    assert wb["run"]["display_name"] == "tiny-tickets-test-zero-shot"
    assert wb["run"]["job_type"] == "evaluate"
    assert wb["run"]["run_group"] == "evaluate-tickets"
    assert wb["summary"]["zero_shot/test/accuracy"] == record.metrics["accuracy"]
    # log_predictions=0: no predictions table, neither as a logged key nor as a table artifact.
    assert not [k for k in wb["summary"] if "predictions" in k]
    assert not [a for a in wb["artifacts"] if a["type"] == "run_table"]


def test_compare_logs_baselines_and_report_with_the_training_run(tmp_path):
    run_dir = tmp_path / "cmp"
    proc = run_cli("slmforge-compare", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {
        where: offline_run(folder)["run"]
        for where in ("", "predictors/k_shot", "report")
        for folder in offline_runs(run_dir / where)
    }
    assert set(runs) == {"", "predictors/k_shot", "report"}  # exactly one run in each place
    assert {r["run_group"] for r in runs.values()} == {"compare-tickets"}
    assert (runs[""]["display_name"], runs[""]["job_type"]) == ("tiny-lora-tickets", "train")
    baseline = runs["predictors/k_shot"]
    assert (baseline["display_name"], baseline["job_type"]) == ("tiny-lora-tickets-k_shot", "baseline")
    assert (runs["report"]["display_name"], runs["report"]["job_type"]) == ("report-cmp", "report")

    # slmforge-report on that run, no group given: the group its runs logged to, named after the run.
    out = tmp_path / "rep"
    proc = run_cli("slmforge-report", f"runs=[{run_dir}]", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [folder] = offline_runs(out)
    report = offline_run(folder)["run"]
    assert (report["display_name"], report["run_group"], report["job_type"]) == (
        "report-cmp",
        "compare-tickets",
        "report",
    )
