"""slmforge-route with a guarantee (Learn-then-Test) and a three-tier chain, on the tiny model's predictors.

The tiny model is weak (about 1 in 8 right) and its confidences are all ~0.99995, so every threshold
either keeps everything or escalates everything; the targets below are chosen for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta, binom

from slmforge.records import VALIDATION_PREDICTIONS_FILE, read_predictions
from slmforge.routing import RoutingPolicy
from slmforge.routing.guarantee import descending_grid, ltt_two_tier, point_estimate_two_tier

from clihelp import FAST, run_cli


@pytest.fixture(scope="module")
def k_shot(shared_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third predictor of the same run (2-shot), test and validation predictions, written elsewhere."""
    out = tmp_path_factory.mktemp("k_shot") / "k_shot"
    proc = run_cli(
        "slmforge-evaluate", *FAST, f"run_dir={shared_run}", "k_shot=2", "name=k_shot", "logger=csv",
        "eval.validation_predictions=true", f"hydra.run.dir={out}", cwd=out.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _route(tmp_path: Path, *args: str):
    out = tmp_path / "route"
    proc = run_cli("slmforge-route", *args, f"hydra.run.dir={out}", "report.enabled=false", cwd=tmp_path)
    return proc, out


def test_route_states_the_guarantee_next_to_the_observed_quality(shared_run: Path, tmp_path: Path) -> None:
    cheap, exp = shared_run / "predictors/finetuned", shared_run / "predictors/zero_shot"
    target, delta = 0.01, 0.1
    proc, out = _route(
        tmp_path, f"cheap={cheap}", f"expensive={exp}", f"routing.target={target}", f"routing.delta={delta}",
        "routing.calibrate=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    routing = json.loads((out / "routing.json").read_text())
    g = routing["guarantee"]
    assert g["method"] == "ltt" and g["valid"] and g["p_values"] == "binomial" and g["n_calibration"] == 8
    assert g["n_rejected"] >= 1 and not g["fallback_all"]
    # The chosen threshold's p-value is the exact binomial tail of its routed validation count.
    val_c, val_e = (
        read_predictions(cheap / VALIDATION_PREDICTIONS_FILE),
        read_predictions(exp / VALIDATION_PREDICTIONS_FILE),
    )
    t = routing["chosen"]["threshold"]
    by_id = {r.id: r for r in val_e}
    k = sum((by_id[r.id] if r.confidence < t else r).correct for r in val_c)
    assert g["p_value"] == pytest.approx(binom.sf(k - 1, 8, target)) and g["p_value"] <= delta
    assert g["observed_metric"] == routing["chosen"]["metric"] and g["observed_on"] == "test"
    statement = (
        "guaranteed: routed accuracy >= 0.0100 with probability >= 0.90 (Learn-then-Test, fixed sequence, "
        "binomial p-values, n=8 calibration rows"
    )
    assert g["statement"].startswith(statement)
    # Next to it, the observed test accuracy with its exact (Clopper–Pearson) 95% interval.
    k_test = round(routing["chosen"]["metric"] * 8)
    lo = beta.ppf(0.025, k_test, 8 - k_test + 1) if k_test else 0.0
    hi = beta.ppf(0.975, k_test + 1, 8 - k_test) if k_test < 8 else 1.0
    assert g["observed_ci95"] == pytest.approx([lo, hi])
    observed = (
        f"observed on test: accuracy {routing['chosen']['metric']:.4f} (n=8, 95% CI [{lo:.3f}, {hi:.3f}])"
    )
    assert statement in proc.stdout and observed in proc.stdout
    assert observed in (out / "routing.md").read_text()
    assert statement in (out / "routing.md").read_text()
    assert RoutingPolicy.load(out / "routing_policy.json").guarantee["statement"] == g["statement"]
    # The field's metrics are reported (None: the two tiny predictors are equally good, no gap to recover).
    fm = routing["field_metrics"]
    assert set(fm["cpt"]) == {"50%", "80%", "95%"} and "RouteLLM" in fm["definition"]
    assert (out / "routing_curve.png").stat().st_size > 1000


def test_route_that_cannot_certify_escalates_everything_loudly(shared_run: Path, tmp_path: Path) -> None:
    proc, out = _route(
        tmp_path, f"cheap={shared_run / 'predictors/finetuned'}", f"expensive={shared_run / 'predictors/zero_shot'}",
        "routing.target=0.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    routing = json.loads((out / "routing.json").read_text())
    assert routing["guarantee"]["fallback_all"] and routing["chosen"]["escalated_share"] == 1.0
    assert "not certified: no threshold passed at delta=0.1" in proc.stdout
    assert "warning: no threshold certified accuracy >= 0.5000" in proc.stdout


def test_guarantee_simulation_on_the_tiny_models_predictions(shared_run: Path) -> None:
    """Pool the tiny model's real test + validation predictions (16 rows), re-split them 500 times into
    8 calibration / 8 other rows, and set the target just above what any threshold reaches on the pool:
    every hypothesis is then false-as-hoped (true null), so any certification is an error. Learn-then-Test
    errs in at most delta of the splits; the point estimate errs whenever the calibration half is lucky."""
    cheap, exp = shared_run / "predictors/finetuned", shared_run / "predictors/zero_shot"
    rows_c = [*read_predictions(cheap), *read_predictions(cheap / VALIDATION_PREDICTIONS_FILE)]
    rows_e = {
        (i // 8, r.id): r
        for i, r in enumerate([*read_predictions(exp), *read_predictions(exp / VALIDATION_PREDICTIONS_FILE)])
    }
    conf = np.array([r.confidence for r in rows_c])
    c_ok = np.array([r.correct for r in rows_c])
    e_ok = np.array([rows_e[(i // 8, r.id)].correct for i, r in enumerate(rows_c)])
    assert len(conf) == 16

    def pool_quality(t: float) -> float:
        return float(np.where(conf < t, e_ok, c_ok).mean())

    target = max(pool_quality(t) for t in descending_grid()) + 0.005
    delta, splits = 0.1, 500
    rng = np.random.default_rng(0)
    ltt_err = pe_err = 0
    for _ in range(splits):
        cal = rng.permutation(16)[:8]
        t, rejected, *_ = ltt_two_tier(conf[cal], c_ok[cal], e_ok[cal], target, delta)
        ltt_err += rejected > 0 and pool_quality(t) < target
        t_pe = point_estimate_two_tier(conf[cal], c_ok[cal], e_ok[cal], target)
        pe_err += (
            pool_quality(t_pe) < target
            and float(np.where(conf[cal] < t_pe, e_ok[cal], c_ok[cal]).mean()) >= target
        )
    assert ltt_err / splits <= delta + 3 * np.sqrt(delta * (1 - delta) / splits)
    assert pe_err / splits > delta  # the old selection certifies an unreachable target far more often


def test_three_tier_chain(shared_run: Path, k_shot: Path, tmp_path: Path) -> None:
    dirs = [shared_run / "predictors/zero_shot", shared_run / "predictors/finetuned", k_shot]
    # Bonferroni across the 3 paths tests each at delta / 3 = 0.1: one right out of 8 certifies 0.01 there.
    proc, out = _route(
        tmp_path, f"chain=[{','.join(map(str, dirs))}]", "routing.target=0.01", "routing.delta=0.3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    routing = json.loads((out / "routing.json").read_text())
    assert routing["kind"] == "chain" and len(routing["tiers"]) == 3
    chosen = routing["chosen"]
    thresholds = [t["threshold"] for t in routing["tiers"]]
    assert thresholds[:2] == chosen["thresholds"] and thresholds[2] is None
    assert all(isinstance(t, float) for t in thresholds[:2])
    shares = [t["share"] for t in routing["tiers"]]
    assert shares == chosen["tier_shares"] and sum(shares) == pytest.approx(1.0)
    assert [t["alone"]["n"] for t in routing["tiers"]] == [8, 8, 8]
    assert chosen["cost_per_1k_usd"] > 0 and chosen["latency_mean_ms"] > 0
    g = routing["guarantee"]
    assert g["valid"] and g["paths"] == 3 and g["n_calibration"] == 8 and g["n_rejected"] >= 1
    assert g["p_value"] <= 0.1 and not g["fallback_all"]
    assert "fixed sequence along 3 paths, Bonferroni across them" in g["statement"]
    policy = RoutingPolicy.load(out / "routing_policy.json")
    assert [t["threshold"] for t in policy.chain] == thresholds
    assert [t["name"] for t in policy.chain] == [t["name"] for t in routing["tiers"]]
    assert policy.threshold == thresholds[0]
    assert (
        "guaranteed: routed accuracy >= 0.0100" in proc.stdout
        and "Routing chain" in (out / "routing.md").read_text()
    )


def test_chain_and_cheap_together_is_a_config_error(shared_run: Path, tmp_path: Path) -> None:
    d = shared_run / "predictors/zero_shot"
    proc, _ = _route(tmp_path, f"chain=[{d},{d},{d}]", f"cheap={d}")
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "chain=[...] and cheap= were both given" in line and "Traceback" not in proc.stderr
