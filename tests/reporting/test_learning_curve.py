"""The learning-curve and break-even report sections: a real tiny training-size sweep for the curve, and
hand-built records for the numbers that need golden values (seed intervals, break-even volumes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmforge.records import ResultsRecord
from slmforge.reporting.collect import collect_record_files, collect_records
from slmforge.reporting.evidence import Evidence
from slmforge.reporting.learning_curve import (
    BREAK_EVEN_TITLE,
    LEARNING_CURVE_TITLE,
    break_even_section,
    learning_curve,
    learning_curve_section,
    train_examples,
)

from clihelp import FAST, run_cli


@pytest.fixture(scope="module")
def size_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``slmforge-train -m model=tiny debug=fast data.per_label_train=2,null``: 8 labels, so 16 rows and all
    32 rows of the fast data's train split; each job also scores the zero-shot base model."""
    root = tmp_path_factory.mktemp("lc")
    sweep = root / "sweep"
    proc = run_cli(
        "slmforge-train", "-m", *FAST, "data.per_label_train=2,null", "logger=csv", f"hydra.sweep.dir={sweep}",
        cwd=root, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_sweep_gives_one_point_per_train_size_and_a_plot(size_sweep: Path, tmp_path: Path) -> None:
    records = collect_records([size_sweep])
    tuned = sorted(
        (r for r in records if r.predictor["method"] == "finetuned"), key=lambda r: r.data["sizes"]["train"]
    )
    assert [r.data["sizes"]["train"] for r in tuned] == [16, 32]
    assert [train_examples(r) for r in tuned] == [16, 32]

    points, refs = learning_curve(records)
    assert [(p.series, p.train_examples, p.n_seeds) for p in points] == [("tiny", 16, 1), ("tiny", 32, 1)]
    assert [p.mean for p in points] == [r.metrics["accuracy"] for r in tuned]
    assert [p.ci for p in points] == ["", ""]  # one seed and no predictions passed: no whisker
    zero_shot = [r.metrics["accuracy"] for r in records if r.predictor["method"] == "zero_shot"]
    assert [(ref.label, ref.n_records) for ref in refs] == [("tiny zero-shot", 2)]
    assert refs[0].mean == pytest.approx(sum(zero_shot) / 2)

    # With the per-row predictions, a single-seed point gets a test-row bootstrap interval around its mean.
    found = collect_record_files([size_sweep])
    records = [r for r, _ in found]
    predictions = Evidence.from_files(records, [f for _, f in found]).rows_by_run_id(records)
    assert {k: len(v) for k, v in predictions.items()} == {r.run_id: 8 for r in records}  # 8 test rows each
    title, body, [png] = learning_curve_section(records, tmp_path, predictions)
    assert title == LEARNING_CURVE_TITLE
    assert png == tmp_path / "learning_curve.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points, _ = learning_curve(records, predictions)
    for p in points:
        assert p.ci == "rows" and p.low <= p.mean <= p.high
    assert "| tiny | 16 | 1 |" in body and "| tiny | 32 | 1 |" in body
    assert "| tiny zero-shot | reference (not trained) | 2 |" in body

    # One training size is not a curve; a sweep without an API record has no break-even.
    assert learning_curve_section([r for r in records if train_examples(r) == 16], tmp_path) is None
    assert break_even_section(records, None, tmp_path) is None


def _rec(name: str, acc: float, seed: int = 0, rows: int | None = None, kind: str = "local",
         method: str = "finetuned", **kw) -> ResultsRecord:  # fmt: skip
    d = {
        "run_id": f"{name}-{seed}", "name": name, "task": "t", "split": "test", "n": 100, "seed": seed,
        "predictor": {"kind": kind, "method": method, "model": kw.pop("model", "small")},
        "data": {"name": "tickets", "sizes": {"train": rows or 0, "test": 100}}, "metrics": {"accuracy": acc},
        "throughput": {"examples_per_s": 10.0}, "tokens": {"prompt_mean": 500, "completion_mean": 20},
        "training": {"time_s": 3600.0, "train_rows": rows} if method == "finetuned" else {},
    }  # fmt: skip
    d.update(kw)
    return ResultsRecord.from_dict(d)


def test_several_seeds_give_a_t_interval() -> None:
    # Scores .5/.6/.7: mean .6, sd .1, t(0.975, 2) = 4.302653 -> half-width 4.302653 * .1 / sqrt(3) = .248414
    recs = [_rec("ft", acc, seed=s, rows=80) for s, acc in enumerate((0.5, 0.6, 0.7))] + [
        _rec("ft", 0.9, rows=160)
    ]
    points, refs = learning_curve(recs)
    assert refs == []
    p80, p160 = points
    assert (p80.train_examples, p80.n_seeds, p80.ci) == (80, 3, "seeds")
    assert p80.mean == pytest.approx(0.6)
    assert (p80.low, p80.high) == pytest.approx((0.6 - 0.248414, 0.6 + 0.248414), abs=1e-6)
    assert (p160.train_examples, p160.n_seeds, p160.mean, p160.ci) == (160, 1, 0.9, "")


PRICING = {
    "amortise_months": 12,
    "api": {"big-api": {"input_per_1k": 0.0025, "output_per_1k": 0.01}},
    "self_hosted": {"box": {"hourly_usd": 3.6}},
}


def test_break_even_section_names_the_volume_and_draws_the_crossing(tmp_path: Path) -> None:
    # API: 500 in + 20 out = $0.00145/request. Fine-tuned: $3.60/h / 3600 / 10 ex/s = $0.0001/request,
    # 1 h of training = $3.60 = $0.30/month over 12 months -> break-even 0.30 / 0.00135 = 222 requests/month.
    api = _rec("big-api-0shot", 0.80, kind="api", method="zero_shot", model="big-api")
    good, bad = _rec("ft-160", 0.85, rows=160), _rec("ft-10", 0.40, rows=10)
    title, body, [png] = break_even_section([api, good, bad], PRICING, tmp_path, machine="box")
    assert title == BREAK_EVEN_TITLE
    assert "| ft-160 | big-api-0shot | 0.85 vs 0.80 | $3.60 | $0.1 | $1.45 | 222 requests/month |  |" in body
    assert "| ft-10 | big-api-0shot | 0.40 vs 0.80 |" in body and "not eligible: accuracy lower" in body
    assert "Lowest break-even: **ft-160** against **big-api-0shot** above **222 requests/month**" in body
    # At the default 10M requests/month: 0.30 + 10M * 0.0001 = $1,000 vs 10M * 0.00145 = $14,500.
    assert "costs $1,000 a month vs $14,500 for the API" in body
    assert png == tmp_path / "break_even.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 1 s of training = $0.001, $0.0000833/month: paid off by 0.06 requests, so cheaper at any volume.
    quick = _rec("ft-quick", 0.85, rows=160, training={"time_s": 1.0})
    _, body, [png] = break_even_section([api, quick], PRICING, tmp_path / "quick", machine="box")
    assert "| any volume |" in body and "against **big-api-0shot** at **any volume**" in body

    # Never cheaper per request: the row says so and nothing is drawn.
    slow = _rec("ft-slow", 0.9, rows=160, throughput={"examples_per_s": 0.5})
    _, body, pngs = break_even_section([api, slow], PRICING, tmp_path / "slow", machine="box")
    assert "never: costs at least as much per request as the API" in body and pngs == []
    assert "No fine-tuned model both matches" in body
    assert break_even_section([good, bad], PRICING, tmp_path) is None  # no API baseline
    assert break_even_section([api], PRICING, tmp_path) is None  # nothing fine-tuned
