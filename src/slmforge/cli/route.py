"""``slmforge-route``: measure a confidence-routed SLM→LLM hybrid from two (or a chain of) evaluated predictors.

No model is re-run: it reads the two predictors' ``results.json`` + ``predictions.jsonl`` (and their
validation predictions for calibration/threshold selection), prices them with ``conf/pricing``, sweeps
the threshold, picks the policy the ``routing`` group asks for, and writes:

    routing.json            the whole curve, the chosen point, calibration before/after, warnings
    routing_policy.json     what a serving process loads (temperature, threshold, tier rules)
    routing_curve.png, reliability.png, ensemble (optional) and a report (report.md/html) with a
    routing section next to the two predictors' leaderboard; plus a W&B summary run.

    slmforge-route cheap=<run>/predictors/finetuned expensive=<run>/predictors/k_shot routing.target=0.9
    slmforge-route 'chain=[<135m>/predictors/finetuned,<270m>/predictors/finetuned,<run>/predictors/llm]' \
        routing.target=0.9 routing.delta=0.1

With ``routing.target`` the threshold is chosen by Learn-then-Test (``routing.guarantee=ltt``, the default
then): with probability >= 1 - ``routing.delta`` the routed quality on new data is >= the target; the
statement is printed next to the observed test quality. ``routing.json`` also carries APGR and CPT.
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
    from slmforge.routing.chain import ChainResult


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
    lines += _guarantee_lines(result)
    if result.warnings:
        lines += ["", *[f"- ⚠ {w}" for w in result.warnings]]
    return "\n".join(lines)


def _guarantee_lines(result: RoutingResult | ChainResult) -> list[str]:
    """The guarantee next to the observed quality, and APGR/CPT, for routing.md and the report."""
    lines: list[str] = []
    g = result.guarantee
    if g is not None:
        lines += ["", f"**{g.summary or g.statement}**."]
        lines += [f"- assumption: {a}" for a in g.assumptions]
    fm = getattr(result, "field_metrics", None) or getattr(result, "field", None)
    if fm:
        if fm.get("apgr") is None:
            lines += ["", f"APGR/CPT: n/a ({fm.get('note', 'no gap')})."]
        else:
            cpt = ", ".join(f"CPT({k}) {'n/a' if v is None else f'{v:.0%}'}" for k, v in fm["cpt"].items())
            lines += ["", f"APGR {fm['apgr']:.3f}; {cpt} (escalation share; RouteLLM's definitions)."]
    return lines


def chain_section(result: ChainResult) -> str:
    c = result.chosen
    lines = [
        f"**{result.description}**",
        "",
        f"Chain (cheapest first): {' → '.join(f'`{n}`' for n in result.names)}; {result.n} {result.split} "
        f"examples; thresholds chosen on {result.selected_on}.",
        "",
        f"| tier | threshold | answered | {result.metric_name} of its answers | alone: {result.metric_name} | "
        "alone: cost / 1k |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, name in enumerate(result.names):
        t = "—" if i == len(result.names) - 1 else f"{min(c.thresholds[i], 1.0):.3f}"
        m = c.tier_metrics[i]
        alone = result.singles[i]
        lines.append(
            f"| {name} | {t} | {c.tier_shares[i]:.0%} | {'—' if m is None else f'{m:.3f}'} | "
            f"{alone['metric']:.3f} | ${alone['cost_per_1k_usd']:.4f} |"
        )
    lines += [
        "",
        f"Routed: {result.metric_name} {c.metric:.3f}, mean latency {c.latency_mean_ms:.0f} ms, p95 "
        f"{c.latency_p95_ms:.0f} ms, ${c.cost_per_1k_usd:.4f} per 1k requests.",
    ]
    lines += _guarantee_lines(result)
    if result.warnings:
        lines += ["", *[f"- ⚠ {w}" for w in result.warnings]]
    return "\n".join(lines)


def route_chain(cfg: DictConfig, out_dir: Path, pricing: Pricing) -> ChainResult:
    """``chain=[dirA,dirB,dirC]``: one threshold per non-final tier, chosen jointly (routing.chain)."""
    from slmforge.build import to_container
    from slmforge.records import ROUTING_FILE, ROUTING_POLICY_FILE
    from slmforge.routing.chain import evaluate_chain
    from slmforge.routing.plots import plot_routing_curve
    from slmforge.routing.threshold import RoutingPoint

    dirs = [Path(str(d)).expanduser() for d in cfg.chain]
    if len(dirs) < 2:
        raise ConfigError(f"chain needs at least 2 predictor dirs (cheapest first), got {len(dirs)}")
    rcfg = to_container(cfg.routing)
    if rcfg.get("tiers"):
        raise ConfigError(
            "routing.tiers (pre-route rules) are not supported with chain=[...]; drop one of them"
        )
    result = evaluate_chain(
        dirs,
        [_per_request_cost(d, pricing, str(cfg.machine)) for d in dirs],
        target=rcfg.get("target"),
        budget=rcfg.get("budget_per_1k"),
        delta=float(rcfg.get("delta", 0.1)),
        guarantee=rcfg.get("guarantee"),
        calibrate=bool(rcfg.get("calibrate", True)),
        select_on=rcfg.get("select_on", "auto"),
    )
    plots = [
        plot_routing_curve(
            result.points, result.chosen, out_dir / "routing_curve.png",
            RoutingPoint.from_dict(result.singles[0]), RoutingPoint.from_dict(result.singles[-1]),
            metric_name=result.metric_name, cheap_name=result.names[0], expensive_name=result.names[-1],
            title=f"routing chain {' → '.join(result.names)}", target=result.target,
            target_label="guaranteed target" if result.guarantee.valid else "target",
        )
    ]  # fmt: skip
    result.policy.save(out_dir / ROUTING_POLICY_FILE)
    (out_dir / ROUTING_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str))
    section = chain_section(result)
    (out_dir / "routing.md").write_text(f"# Routing chain\n\n{section}\n")
    if cfg.get("report", {}).get("enabled", True):
        from slmforge.cli.report import build_report

        rep = OmegaConf.create(
            {**to_container(cfg.report), "runs": [str(d) for d in dirs], "output_dir": str(out_dir),
             "pricing": to_container(cfg.pricing), "machine": str(cfg.machine)}
        )  # fmt: skip
        files, _ = build_report(rep, extra_sections=[("Routing chain", section, plots)])
        print(f"report: {files.html}")
    print(result.description)
    print(result.guarantee.summary)
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"policy: {out_dir / ROUTING_POLICY_FILE}")
    return result


def route(cfg: DictConfig) -> RoutingResult | ChainResult:
    from slmforge.build import to_container
    from slmforge.economics.pricing import Pricing
    from slmforge.records import ROUTING_FILE, ROUTING_POLICY_FILE, read_predictions, read_results
    from slmforge.routing import evaluate_routing, vote
    from slmforge.routing.plots import plot_reliability, plot_routing_curve

    chain = cfg.get("chain") or []
    given = [k for k in ("cheap", "expensive") if not OmegaConf.is_missing(cfg, k) and cfg.get(k)]
    if chain and given:
        raise ConfigError(
            f"chain=[...] and {'/'.join(given)}= were both given; a chain lists every predictor dir (cheapest "
            "first), so drop cheap=/expensive="
        )
    if not chain:
        for key in ("cheap", "expensive"):
            if key not in given:
                raise ConfigError(
                    f"{key}=<predictor dir> is required (a directory holding results.json), or "
                    "chain=[dirA,dirB,dirC] for a chain of predictors"
                )
    out_dir = Path(str(cfg.output_dir)) if cfg.get("output_dir") else run_dir_of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    pricing = Pricing.from_config(cfg.pricing)
    if chain:
        return route_chain(cfg, out_dir, pricing)
    cheap, expensive = Path(str(cfg.cheap)).expanduser(), Path(str(cfg.expensive)).expanduser()
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
        guarantee=rcfg.get("guarantee"),
        delta=float(rcfg.get("delta", 0.1)),
    )
    g = result.guarantee
    plots = [
        plot_routing_curve(
            result.points, result.chosen, out_dir / "routing_curve.png", result.cheap_only, result.expensive_only,
            metric_name=result.metric_name, cheap_name=result.cheap_name, expensive_name=result.expensive_name,
            target=result.target, target_label="guaranteed target" if g is not None and g.valid else "target",
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
    if g is not None:
        print(g.summary)
    fm = result.field_metrics or {}
    if fm.get("apgr") is not None:
        cpt = ", ".join(f"CPT({k}) {'n/a' if v is None else f'{v:.0%}'}" for k, v in fm["cpt"].items())
        print(f"APGR {fm['apgr']:.3f}; {cpt}")
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"policy: {out_dir / ROUTING_POLICY_FILE}")
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="route")
@command
def main(cfg: DictConfig) -> None:
    route(cfg)


if __name__ == "__main__":
    main()
