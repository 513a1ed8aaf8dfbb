"""Seeds and statistics in the comparison report: aggregation over seeds, intervals, paired differences,
McNemar, the significance marks in the leaderboard and the recommendation when qualities tie.

Records and prediction rows are written to disk as the evaluation writes them (results.json beside
predictions.jsonl and confusion_matrix.json), then read back through the same path slmforge-report uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from slmforge.errors import RecordError
from slmforge.records import PredictionRow, ResultsRecord, write_predictions, write_results
from slmforge.reporting.collect import collect_record_files
from slmforge.reporting.evidence import Evidence
from slmforge.reporting.leaderboard import leaderboard, recommendation, recommended
from slmforge.reporting.plots import make_plots, tick_text
from slmforge.reporting.render import write_report
from slmforge.reporting.statistics import (
    ROW_BOOTSTRAP,
    TWO_LEVEL,
    bootstrap_mean,
    metric_interval,
    paired_difference,
)

LABELS = ["a", "b", "c"]


def _rows(correct, prefix: str = "r", gold=None, pred=None, conf=None) -> list[PredictionRow]:
    out = []
    for i, c in enumerate(correct):
        g = gold[i] if gold is not None else "a"
        p = pred[i] if pred is not None else (g if c else "b")
        out.append(PredictionRow(id=f"{prefix}{i}", text="", gold=g, pred=p, correct=float(c), latency_ms=1.0,
                                 confidence=None if conf is None else float(conf[i])))  # fmt: skip
    return out


# ---- statistics -----------------------------------------------------------------------------------------


def test_one_seed_is_the_row_bootstrap_of_the_metric() -> None:
    correct = [1.0] * 30 + [0.0] * 10
    est = metric_interval({0: _rows(correct)}, "accuracy", resamples=1000, seed=3)
    ref = bootstrap_mean(correct, resamples=1000, seed=3)  # the same draws: identical interval
    assert (est.estimate, est.low, est.high) == (0.75, ref.low, ref.high)
    assert est.method == ROW_BOOTSTRAP and est.n_seeds == 1 and est.n_rows == 40 and est.note == ""
    assert metric_interval({0: _rows(correct)}, resamples=1000, seed=3) == est  # seeded: reproducible


def test_macro_f1_is_recomputed_over_the_whole_label_list() -> None:
    gold, pred = ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    rows = _rows([g == p for g, p in zip(gold, pred, strict=True)], gold=gold, pred=pred)
    est = metric_interval({0: rows}, "macro_f1", labels=LABELS, resamples=500)
    # F1(a) = 2/3, F1(b) = 4/5, F1(c) = 0 (never seen, still averaged): (2/3 + 4/5 + 0) / 3
    assert est.estimate == pytest.approx((2 / 3 + 4 / 5) / 3)
    assert 0.0 <= est.low <= est.high <= 1.0 and est.note == ""
    other = metric_interval({0: rows}, "field_micro_f1", resamples=200)
    assert other.estimate == 0.75 and "stands in for field_micro_f1" in other.note


def test_several_seeds_average_per_seed_and_resample_seeds_then_rows() -> None:
    by_seed = {0: _rows([1.0] * 15 + [0.0] * 5), 1: _rows([1.0] * 10 + [0.0] * 10)}  # 0.75 and 0.50
    est = metric_interval(by_seed, resamples=2000)
    assert est.estimate == 0.625 and est.n_seeds == 2 and est.n_rows == 40 and est.method == TWO_LEVEL
    one = metric_interval({0: by_seed[0]}, resamples=2000)
    # seed-to-seed spread widens the interval beyond what either seed's rows give alone
    assert est.high - est.low > one.high - one.low
    assert 0.25 < est.low < 0.625 < est.high < 1.0


def test_noise_is_not_significant_and_a_clear_win_is() -> None:
    rng = np.random.default_rng(7)
    truth = {s: rng.random(120) for s in (0, 1)}
    a = {s: _rows(list(truth[s] < 0.80)) for s in (0, 1)}
    b = {s: _rows(list(rng.random(120) < 0.80)) for s in (0, 1)}  # same skill, independent errors
    noise = paired_difference(a, b)
    assert not noise.significant and noise.low < 0 < noise.high and noise.mcnemar_p > 0.05
    strong = {s: _rows(list(truth[s] < 0.98)) for s in (0, 1)}  # right wherever a is, and more
    win = paired_difference(strong, a)
    assert (
        win.significant
        and win.low > 0
        and win.estimate
        == pytest.approx(np.mean([np.mean((truth[s] < 0.98) & (truth[s] >= 0.80)) for s in (0, 1)]))
    )
    assert win.mcnemar_p < 1e-6 and win.n_seeds == 2 and win.n_rows == 240


def test_mcnemar_pools_the_discordant_pairs_of_every_shared_seed() -> None:
    # seed 0: a alone right on 3 rows; seed 1: a alone right on 2, b alone right on 1 -> 5 vs 1
    a = {0: _rows([1, 1, 1, 0, 1]), 1: _rows([1, 1, 0, 1])}
    b = {0: _rows([0, 0, 0, 0, 1]), 1: _rows([0, 0, 1, 1])}
    d = paired_difference(a, b)
    assert d.mcnemar_p == pytest.approx(binomtest(5, 6, 0.5).pvalue) == pytest.approx(0.21875)
    assert d.estimate == pytest.approx(np.mean([3 / 5, 1 / 4]))
    assert paired_difference(a, b, "macro_f1", labels=LABELS).mcnemar_p is None  # McNemar: accuracy only


def test_rows_are_never_paired_across_seeds_or_on_different_ids() -> None:
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: _rows([1, 0])}, {1: _rows([1, 0])})
    with pytest.raises(RecordError, match="different rows"):
        paired_difference({0: _rows([1, 0])}, {0: _rows([1, 0], prefix="x")})
    # only the shared seed counts: seed 1 of `a` has no partner
    d = paired_difference({0: _rows([1, 1]), 1: _rows([0, 0])}, {0: _rows([0, 1])})
    assert d.n_seeds == 1 and d.estimate == 0.5


# ---- the leaderboard over seeds ---------------------------------------------------------------------------


def _write(root: Path, job: str, name: str, seed: int, predictor: dict, correct, *, eps: float,
           p95: float, conf=None, multirun: bool = True) -> None:  # fmt: skip
    """One evaluated predictor of one seed, laid out like ``-m seed=...`` jobs (overrides ``seed=<s>``)."""
    rows = _rows(correct, prefix=f"s{seed}-", conf=conf)
    acc = float(np.mean(correct))
    rec = ResultsRecord(
        run_id=f"{job}-{seed}", name=name, task="classification", split="test", n=len(rows),
        predictor={"kind": "local", "model": "smol", "params_m": 135.0, "adapter": None, "k": None, **predictor},
        data={"name": "fixture"}, metrics={"accuracy": acc, "per_class_f1": {lab: 0.5 for lab in LABELS}},
        latency_ms={"p50": p95 / 2, "p95": p95, "p99": p95}, throughput={"examples_per_s": eps},
        tokens={"prompt_mean": 50, "completion_mean": 2}, seed=seed,
        overrides=[f"seed={seed}"] if multirun else ["seeds=[0,1]"],
    )  # fmt: skip
    out = root / f"{seed}" / "predictors" / job
    write_results(out, rec)
    write_predictions(out / "predictions.jsonl", rows)


def _board(root: Path, **kw):
    found = collect_record_files([root])
    records = [r for r, _ in found]
    evidence = Evidence.from_files(records, [f for _, f in found])
    return leaderboard(records, primary_metric="accuracy", evidence=evidence, resamples=1000, **kw), evidence


FT = {"method": "finetuned", "adapter": {"kind": "lora", "r": 8}}
KSHOT = {"method": "k_shot", "k": 4}


def _tie_runs(root: Path) -> Path:
    """fine-tuned 0.80 (cheap, fast) vs 4-shot 0.82 (dearer, slower) on 2 x 100 rows: a noise-level gap.
    A zero-shot 0.40 is far below both. A 'slow' fine-tuned copy is as good but dearer and slower: dominated."""
    rng = np.random.default_rng(11)
    for seed in (0, 1):
        u = rng.random(100)
        conf = np.clip(u + 0.2, 0, 1)
        _write(root, "finetuned", "smol-lora", seed, FT, list(u < 0.80), eps=40.0, p95=30.0, conf=conf)
        _write(root, "k_shot", "smol-4shot", seed, KSHOT, list(rng.random(100) < 0.82), eps=10.0, p95=90.0,
               conf=rng.random(100))  # fmt: skip
        _write(root, "zero_shot", "smol-0shot", seed, {"method": "zero_shot"}, list(u < 0.40), eps=50.0,
               p95=25.0)  # fmt: skip
        slow = {**FT, "adapter": {"kind": "lora", "r": 64}}
        _write(root, "slow", "smol-lora-r64", seed, slow, list(u < 0.80), eps=20.0, p95=60.0)
    return root


def test_seeds_of_one_predictor_make_one_row_with_intervals(tmp_path: Path) -> None:
    df, _ = _board(_tie_runs(tmp_path / "multirun"))
    assert sorted(df["name"]) == [
        "smol-0shot",
        "smol-4shot",
        "smol-lora",
        "smol-lora-r64",
    ]  # no seed suffixes
    assert (df["n_seeds"] == 2).all() and set(df["seeds"]) == {"0,1"}
    assert "seed" not in df.columns  # a seed sweep is not a sweep dimension
    assert (df["ci_low"] <= df["accuracy"]).all() and (df["accuracy"] <= df["ci_high"]).all()
    assert set(df["ci_method"]) == {TWO_LEVEL}
    by = df.set_index("name")
    assert by.at["smol-4shot", "vs_best"] == "best" and df.attrs["best_quality"] == "smol-4shot"
    assert by.at["smol-lora", "tied_with_best"] is True and by.at["smol-lora", "vs_best"].endswith(" n.s.")
    assert by.at["smol-lora", "diff_low"] < 0 < by.at["smol-lora", "diff_high"]
    assert by.at["smol-0shot", "tied_with_best"] is False and not by.at["smol-0shot", "vs_best"].endswith(
        "n.s."
    )
    assert by.at["smol-0shot", "diff_high"] < 0 and by.at["smol-0shot", "mcnemar_p"] < 1e-6
    # the mean over seeds of each seed's record
    seeds = [
        r.metrics["accuracy"]
        for r, _ in collect_record_files([tmp_path / "multirun"])
        if r.name == "smol-lora"
    ]
    assert len(seeds) == 2 and by.at["smol-lora", "accuracy"] == pytest.approx(np.mean(seeds))


def test_a_quality_tie_recommends_the_cheapest_undominated_option(tmp_path: Path) -> None:
    # quality alone decides the score, so the score's winner is the 4-shot model (best point estimate)
    df, _ = _board(_tie_runs(tmp_path / "multirun"), weights={"quality": 1.0})
    assert df.iloc[0]["name"] == "smol-4shot"
    text = recommendation(df)
    assert recommended(df) == "smol-lora"  # tied on quality, cheaper and faster than the 4-shot model
    assert text.startswith(
        "No significant difference in accuracy between `smol-lora` and `smol-4shot` (Δ accuracy"
    )
    assert "95% CI [" in text and "McNemar p=" in text and "2 seeds" in text
    assert "smol-lora-r64" not in text.split(":")[1]  # the dominated copy is never the one deployed


def test_a_dominated_option_is_never_recommended_whatever_the_weights(tmp_path: Path) -> None:
    root = _tie_runs(tmp_path / "multirun")
    for weights in (
        {"quality": 1.0},
        {"quality": 0.5, "cost": 0.3, "latency": 0.2},
        {"quality": 0.9, "cost": 0.1},
    ):
        df, _ = _board(root, weights=weights)
        assert recommended(df) == "smol-lora", weights
    # weights on cost or latency alone pick the zero-shot model: significantly worse, and the sentence says so
    for weights in ({"cost": 1.0}, {"latency": 1.0}):
        df, _ = _board(root, weights=weights)
        text = recommendation(df)
        assert recommended(df) == "smol-0shot" and "No significant" not in text
        assert (
            "`smol-4shot` has the best accuracy; `smol-0shot` is significantly below it (Δ accuracy -0."
            in text
        )


def test_a_significant_win_is_stated_with_its_interval(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    rng = np.random.default_rng(5)
    for seed in (0, 1):
        u = rng.random(100)
        _write(root, "finetuned", "smol-lora", seed, FT, list(u < 0.95), eps=40.0, p95=30.0)
        _write(root, "k_shot", "smol-4shot", seed, KSHOT, list(u < 0.50), eps=10.0, p95=90.0)
    df, _ = _board(root)
    text = recommendation(df)
    assert (
        text.startswith("Deploy `smol-lora`")
        and "for the best prompted baseline (`smol-4shot`; Δ accuracy +0." in text
    )
    assert ", significant)" in text and "No significant" not in text
    assert df.set_index("name").at["smol-4shot", "tied_with_best"] is False


def test_compare_seeds_layout_groups_like_a_multirun(tmp_path: Path) -> None:
    """`slmforge-compare seeds=[0,1]` records share their overrides (seeds=[0,1]) and differ in `seed`."""
    root = tmp_path / "run"
    for seed in (0, 1):
        _write(root, "finetuned", "smol-lora", seed, FT, [1, 0, 1, 1], eps=40.0, p95=30.0, multirun=False)
        _write(root, "k_shot", "smol-4shot", seed, KSHOT, [1, 0, 0, 1], eps=10.0, p95=90.0, multirun=False)
    df, _ = _board(root)
    assert sorted(df["name"]) == ["smol-4shot", "smol-lora"] and (df["n_seeds"] == 2).all()


def test_report_shows_marks_statistics_and_every_picture(tmp_path: Path) -> None:
    df, evidence = _board(_tie_runs(tmp_path / "multirun"))
    files = write_report(df, tmp_path / "out", evidence=evidence)
    md = files.markdown.read_text()
    assert "| 95% CI | vs best |" in md and " n.s. |" in md and "## Statistics" in md and TWO_LEVEL in md
    assert "label scoring: `smol-4shot`: raw, `smol-0shot`: raw" in md  # older records: raw
    assert set(files.plots) == {"quality_vs_cost", "quality_vs_latency", "reliability", "routing_curve"}
    for p in files.plots.values():
        assert p.stat().st_size > 5000
    board = pd.read_csv(files.csv)
    for col in (
        "ci_low",
        "ci_high",
        "diff",
        "diff_low",
        "diff_high",
        "mcnemar_p",
        "n_seeds",
        "tied_with_best",
    ):
        assert col in board.columns


def test_confusion_matrix_with_many_labels(tmp_path: Path) -> None:
    labels = [f"intent_{i}" for i in range(77)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, size=(77, 77)).tolist()
    df, _ = _board(_tie_runs(tmp_path / "multirun"))
    ev = Evidence(confusion={"smol-lora": {"labels": labels, "matrix": matrix, "n_seeds": 2}})
    plots = make_plots(df, tmp_path / "out", evidence=ev, focus=["smol-lora"])
    assert plots["confusion_matrix"].stat().st_size > 20000
    assert "routing_curve" not in plots  # no rows in this evidence: no curve


def test_tick_labels_keep_close_costs_apart() -> None:
    ticks = [0.00121, 0.00122, 0.00123]
    labels = [tick_text(v, 0.00001, money=True) for v in ticks]
    assert labels == ["$0.00121", "$0.00122", "$0.00123"]
    assert (
        tick_text(0.25, 0.05) == "0.25" and tick_text(1250.0, 250.0) == "1,250" and tick_text(0.0, 0.1) == "0"
    )


def test_the_interval_level_follows_alpha(tmp_path: Path) -> None:
    from slmforge.reporting.render import display_table

    root = _tie_runs(tmp_path / "multirun")
    wide, _ = _board(root)
    narrow, _ = _board(root, alpha=0.2)
    assert "80% CI" in display_table(narrow).columns and "95% CI" in display_table(wide).columns
    w, n = wide.set_index("name"), narrow.set_index("name")
    assert (n["ci_high"] - n["ci_low"] < w["ci_high"] - w["ci_low"]).all()
    assert "80% CI [" in recommendation(narrow)
