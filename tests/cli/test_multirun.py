"""A Hydra multirun gives one run directory and one W&B run per job, with that job's config, each named after
the job's overrides, all in one W&B group of their own."""

from __future__ import annotations

from slmforge.records import read_results
from test_tracking import offline_run, offline_runs

from clihelp import FAST, run_cli


def test_two_job_multirun_gives_two_named_wandb_runs_in_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "slmforge-train", "-m", *FAST, "adapter.r=4,8", "eval.zero_shot=false", "logger.wandb.log_predictions=3",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, env={"WANDB_DIR": str(tmp_path / "wandb_unused")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    # Folder names: job number, run name and the job's own overrides (model/data/adapter choices are in the
    # run name already).
    suffix = ",debug=fast,eval.zero_shot=False,logger.wandb.log_predictions=3"
    assert [p.name for p in jobs] == [
        f"0_tiny-lora-tickets_adapter.r=4{suffix}",
        f"1_tiny-lora-tickets_adapter.r=8{suffix}",
    ]
    seen = {}
    for job in jobs:
        [folder] = offline_runs(job)
        wb = offline_run(folder)
        run = wb["run"]
        assert run["display_name"] == job.name.split("_", 1)[1]  # the folder's name less the job number
        assert run["job_type"] == "train"
        assert wb["summary"]["_step"] >= 1
        # The run's logged test metric is the one in the job's local results record.
        local = read_results(job / "predictors" / "finetuned")
        assert wb["summary"]["finetuned/test/accuracy"] == local.metrics["accuracy"]
        # log_predictions=3: a table of at most 3 of the 8 test rows.
        assert wb["summary"]["finetuned/test/predictions"]["nrows"] == 3
        [adapter] = [a for a in wb["artifacts"] if a["type"] == "model"]
        assert {f["path"] for f in adapter["manifest"]["contents"]} >= {
            "adapter_config.json",
            "adapter_model.safetensors",
        }
        seen[run["run_id"]] = (run["display_name"], run["run_group"], adapter["name"])
    names, groups, artifacts = (set(x) for x in zip(*seen.values(), strict=True))
    assert len(seen) == 2 and len(names) == 2 and len(artifacts) == 2
    assert groups == {"train-tickets-sweep"}  # one group for the sweep: the configured one + the sweep folder
    assert artifacts == {
        f"adapter-tiny-lora-tickets_adapter.r-{r}-debug-fast-eval.zero_shot-False-logger.wandb.log_predictions-3"
        for r in (4, 8)
    }

    # A report over the sweep joins the sweep's group, named after the sweep folder.
    out = tmp_path / "report"
    proc = run_cli("slmforge-report", f"runs=[{sweep}]", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [folder] = offline_runs(out)
    report = offline_run(folder)["run"]
    assert (report["display_name"], report["run_group"]) == ("report-sweep", "train-tickets-sweep")
