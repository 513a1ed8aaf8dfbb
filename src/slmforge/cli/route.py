"""``slmforge-route``: measure a confidence-routed SLM→LLM hybrid from two evaluated predictors.

No model is re-run: it reads the two predictors' ``results.json`` + ``predictions.jsonl`` (and their
validation predictions for calibration/threshold selection), prices them with ``conf/pricing``, sweeps
the threshold, picks the policy the ``routing`` group asks for, and writes:

    routing.json            the whole curve, the chosen point, calibration before/after, warnings
    routing_policy.json     what a serving process loads (temperature, threshold, tier rules)
    routing_curve.png, reliability.png, ensemble (optional) and a report (report.md/html) with a
    routing section next to the two predictors' leaderboard; plus a W&B summary run.

    slmforge-route cheap=<run>/predictors/finetuned expensive=<run>/predictors/k_shot routing.target=0.9
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from slmforge.cli.common import command, run_dir_of
from slmforge.config import config_dir
from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.economics.pricing import Pricing
    from slmforge.routing import RoutingResult


def _per_request_cost(run: Path, pricing: Pricing, machine: str) -> float:
    from slmforge.economics.cost import cost_summary
    from slmforge.records import read_results

    return float(cost_summary(read_results(run), pricing, machine=machine)["per_request_usd"])


def routing_section(result: RoutingResult, plots: list[Path], ensemble: dict[str, Any] | None) -> str:
    c = result.chosen
    lines = [
        f"**{result.description}**",
        "",
        f"Cheap: `{result.cheap_name}`; expensive: `{result.expensive_name}`; {result.n} {result.split} examples.",
        f"Threshold chosen on: {result.selected_on}; temperature {result.temperature:.3f} "
        f"(fitted on {result.calibration_fit_on or 'nothing: not calibrated'}).",
        "",
        "| policy | escalated | "
        + result.metric_name
        + " | mean latency | p95 latency | cost / 1k requests |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, p in (
        (f"{result.cheap_name} only", result.cheap_only),
        (f"routed at {c.threshold:.3f}", c),
        (f"{result.expensive_name} only", result.expensive_only),
    ):
        lines.append(
            f"| {label} | {p.escalated_share:.0%} | {p.metric:.3f} | {p.latency_mean_ms:.0f} ms | "
            f"{p.latency_p95_ms:.0f} ms | ${p.cost_per_1k_usd:.4f} |"
        )
    if result.calibration_before and result.calibration_after:
        b, a = result.calibration_before, result.calibration_after
        lines += [
            "",
            f"Calibration of `{result.cheap_name}` on {result.split}: ECE {b['ece']:.3f} → {a['ece']:.3f}, "
            f"Brier {b['brier']:.3f} → {a['brier']:.3f}, NLL {b['nll']:.3f} → {a['nll']:.3f}.",
        ]
    if ensemble:
        cost = ensemble["cost_per_1k_usd"]
        lines += [
            "",
            f"Ensemble ({ensemble['mode']} vote of {', '.join(ensemble['members'])}): accuracy "
            f"{ensemble['accuracy']:.3f}, p95 latency {ensemble['latency_p95_ms']:.0f} ms, cost / 1k requests "
            f"{f'${cost:.4f}' if cost is not None else 'n/a'}.",
        ]
    if result.warnings:
        lines += ["", *[f"- ⚠ {w}" for w in result.warnings]]
    return "\n".join(lines)


def route(cfg: DictConfig) -> RoutingResult:
    from slmforge.build import to_container
    from slmforge.economics.pricing import Pricing
    from slmforge.records import ROUTING_FILE, ROUTING_POLICY_FILE, read_predictions, read_results
    from slmforge.routing import evaluate_routing, vote
    from slmforge.routing.plots import plot_reliability, plot_routing_curve

    for key in ("cheap", "expensive"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            raise ConfigError(f"{key}=<predictor dir> is required (a directory holding results.json)")
    cheap, expensive = Path(str(cfg.cheap)).expanduser(), Path(str(cfg.expensive)).expanduser()
    out_dir = Path(str(cfg.output_dir)) if cfg.get("output_dir") else run_dir_of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    pricing = Pricing.from_config(cfg.pricing)
    rcfg = to_container(cfg.routing)
    result = evaluate_routing(
        cheap,
        expensive,
        cost_cheap=_per_request_cost(cheap, pricing, str(cfg.machine)),
        cost_exp=_per_request_cost(expensive, pricing, str(cfg.machine)),
        target=rcfg.get("target"),
        budget=rcfg.get("budget_per_1k"),
        calibrate=bool(rcfg.get("calibrate", True)),
        tiers=rcfg.get("tiers") or (),
        select_on=rcfg.get("select_on", "auto"),
        n_bins=int(rcfg.get("n_bins", 15)),
    )
    plots = [
        plot_routing_curve(
            result.points, result.chosen, out_dir / "routing_curve.png", result.cheap_only, result.expensive_only,
            metric_name=result.metric_name, cheap_name=result.cheap_name, expensive_name=result.expensive_name,
        )
    ]  # fmt: skip
    if result.calibration_before:
        plots.append(
            plot_reliability(result.calibration_before, result.calibration_after, out_dir / "reliability.png")
        )
    ensemble = None
    members = [Path(str(m)).expanduser() for m in rcfg.get("ensemble_members") or []]
    if members:
        ens = vote(
            [read_predictions(m) for m in members],
            mode=str(rcfg.get("ensemble_mode", "majority")),
            costs=[_per_request_cost(m, pricing, str(cfg.machine)) for m in members],
            names=[read_results(m).name for m in members],
        )
        ensemble = {
            "members": [read_results(m).name for m in members], "mode": ens.mode, "accuracy": ens.accuracy,
            "metric": ens.metric, "latency_p95_ms": ens.latency_p95_ms, "cost_per_1k_usd": ens.cost_per_1k_usd,
        }  # fmt: skip
    result.policy.save(out_dir / ROUTING_POLICY_FILE)
    (out_dir / ROUTING_FILE).write_text(
        json.dumps({**result.to_dict(), "ensemble": ensemble}, indent=2, default=str)
    )
    section = routing_section(result, plots, ensemble)
    (out_dir / "routing.md").write_text(f"# SLM → LLM routing\n\n{section}\n")
    if cfg.get("report", {}).get("enabled", True):
        from slmforge.cli.report import build_report

        rep = OmegaConf.create(
            {**to_container(cfg.report), "runs": [str(cheap), str(expensive)], "output_dir": str(out_dir),
             "pricing": to_container(cfg.pricing), "machine": str(cfg.machine)}
        )  # fmt: skip
        files, _ = build_report(rep, extra_sections=[("SLM → LLM routing", section, plots)])
        print(f"report: {files.html}")
    print(result.description)
    print(f"policy: {out_dir / ROUTING_POLICY_FILE}")
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="route")
@command
def main(cfg: DictConfig) -> None:
    route(cfg)


if __name__ == "__main__":
    main()
