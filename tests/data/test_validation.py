"""Data validation: each check on data built to trip it, with the row ids it must name; severities; fingerprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slmforge.data.validation import (
    CHECKS,
    ValidationConfig,
    enforce,
    normalise_text,
    split_fingerprints,
    validate_splits,
    validation_config,
)
from slmforge.errors import ConfigError, DataError

# 5 training rows: t2 repeats t1 (case and spacing aside), t3/t4 are one text with two labels.
TRAIN = [
    {"id": "t1", "text": "My invoice is wrong", "label": "billing"},
    {"id": "t2", "text": "my  invoice is WRONG ", "label": "billing"},
    {"id": "t3", "text": "Cannot log in", "label": "account"},
    {"id": "t4", "text": "Cannot log in", "label": "technical"},
    {"id": "t5", "text": "App crashes on start", "label": "technical"},
]
VALIDATION = [
    {"id": "v1", "text": "Where is my refund", "label": "billing"},
    {"id": "v2", "text": "The screen stays black", "label": "technical"},
    {"id": "v3", "text": "Reset my password please", "label": "account"},
]
# Thirty words; a near copy changes the last one (Jaccard of word 3-shingles 27/29 = 0.93).
TEXT = (
    "the quarterly report shows that revenue grew in every region while costs fell slightly because the new "
    "supplier contract lowered shipping fees for all customers across europe and asia today"
)
WORDS = TEXT.split()
assert len(WORDS) == 30 and len(set(WORDS)) < 30  # 'the' twice: still 28 distinct 3-shingles


def bad_data() -> dict[str, list[dict[str, Any]]]:
    return {"train": [dict(r) for r in TRAIN], "validation": [dict(r) for r in VALIDATION],
            "test": [dict(r) for r in TRAIN]}  # fmt: skip


def ids(finding: Any) -> set[tuple[str, str]]:
    return {(r["split"], r["id"]) for r in finding.rows}


def by_check(report: Any, check: str) -> list[Any]:
    return [f for f in report.findings if f.check == check]


def test_bad_data_names_every_problem_and_its_rows() -> None:
    report = validate_splits(bad_data(), "label", None)  # the default: every check at warn
    assert report.passed and report.errors == 0 and report.warnings == len(report.findings)

    sizes = by_check(report, "min_size")
    assert sizes[0].message == "train has 5 rows, fewer than min_train=100" and sizes[0].n_rows == 0
    assert sizes[1].details["labels"] == {"account": 1, "billing": 2, "technical": 2}

    dups = {f.details["split"]: f for f in by_check(report, "duplicates")}
    assert set(dups) == {"train", "test"}  # validation has none
    assert ids(dups["train"]) == {("train", "t1"), ("train", "t2"), ("train", "t3"), ("train", "t4")}
    assert dups["train"].details["groups"] == 2 and dups["train"].n_rows == 4

    conflicts = {f.details["where"]: f for f in by_check(report, "conflicting_labels")}
    assert ids(conflicts["train"]) == {("train", "t3"), ("train", "t4")}
    assert "'Cannot log in' -> 'account', 'technical'" in conflicts["train"].message
    assert ids(conflicts["test"]) == {("test", "t3"), ("test", "t4")}

    (leak,) = by_check(report, "leakage_exact")  # train<->test only: validation is clean
    assert leak.details["pair"] == ["train", "test"] and leak.details["texts"] == 3
    assert leak.details["share_of_second"] == 1.0 and "100.0% of test's rows" in leak.message
    assert ids(leak) == {(s, f"t{i}") for s in ("train", "test") for i in range(1, 6)} and leak.n_rows == 10

    assert report.checks["leakage_near"] == "ok"  # exact copies are not repeated as near ones
    assert report.checks["truncation"] == "skipped" and any("truncation: skipped" in n for n in report.notes)
    assert report.checks["schema"] == "skipped"


def test_labels_in_one_split_and_imbalance() -> None:
    data = {
        "train": [{"id": f"a{i}", "text": f"alpha {i}", "label": "a"} for i in range(20)]
        + [{"id": "b0", "text": "beta 0", "label": "b"}],
        "validation": [{"id": "v0", "text": "gamma", "label": "c"}],
        "test": [{"id": "x0", "text": "alpha x", "label": "a"}],
    }
    report = validate_splits(data, "label", None)
    (imb,) = by_check(report, "label_imbalance")
    assert imb.details == {"ratio": 0.05, "smallest": "b", "largest": "a"} and ids(imb) == {("train", "b0")}
    found = {f.details["split"]: f for f in by_check(report, "labels_in_one_split")}
    assert found["validation"].details["labels"] == ["c"] and ids(found["validation"]) == {
        ("validation", "v0")
    }
    assert found["test"].details["labels"] == ["b"] and ids(found["test"]) == {("train", "b0")}
    # Not a label task: both are skipped, with a note.
    fields = {s: [{**r, "fields": {"x": r["label"]}} for r in rows] for s, rows in data.items()}
    report = validate_splits(fields, "fields", None)
    assert report.checks["label_imbalance"] == report.checks["labels_in_one_split"] == "skipped"


def test_near_duplicate_found_and_unrelated_text_not() -> None:
    text = TEXT
    near = " ".join([*WORDS[:-1], "africa"])
    middle = " ".join([*WORDS[:15], "oceania", *WORDS[16:]])  # 3 shingles changed: Jaccard 25/31 = 0.81
    unrelated = "please reset the password of my account because i forgot it after the holidays"
    data = {
        "train": [{"id": "a", "text": text, "label": "x"}, {"id": "b", "text": unrelated, "label": "y"}],
        "validation": [{"id": "m", "text": middle, "label": "x"}],
        "test": [
            {"id": "n", "text": near, "label": "x"},
            {"id": "u", "text": "the weather is nice today", "label": "y"},
        ],
    }
    report = validate_splits(data, "label", None)
    (near_f,) = by_check(report, "leakage_near")  # train<->test only: 0.81 is under the 0.9 default
    assert near_f.details == {"pair": ["train", "test"], "pairs": 1}
    assert ids(near_f) == {("train", "a"), ("test", "n")} and "0.93" in near_f.message
    assert not by_check(report, "leakage_exact")
    # A lower threshold also finds the middle edit (validation<->test differ in both: 24/32 = 0.75).
    cfg = {"leakage_near": {"severity": "warn", "threshold": 0.8}}
    pairs = {tuple(f.details["pair"]) for f in by_check(validate_splits(data, "label", cfg), "leakage_near")}
    assert pairs == {("train", "validation"), ("train", "test")}


def test_severity_off_removes_a_check_and_strict_makes_errors(tmp_path: Path) -> None:
    off = validate_splits(bad_data(), "label", {"duplicates": {"severity": "off"}})
    assert not by_check(off, "duplicates") and off.checks["duplicates"] == "off"
    assert by_check(off, "leakage_exact")  # the others still run

    strict = validate_splits(bad_data(), "label", ValidationConfig.every("error"))
    assert not strict.passed and strict.warnings == 0 and strict.errors == len(strict.findings) == 7
    assert strict.failed_checks() == ["min_size", "duplicates", "conflicting_labels", "leakage_exact"]
    with pytest.raises(DataError) as e:
        enforce(strict, tmp_path)
    assert str(e.value) == (
        "data validation failed: 7 errors (min_size, duplicates, conflicting_labels, leakage_exact); "
        f"see {tmp_path / 'validation.md'} or set validation=warn"
    )
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["passed"] is False and saved["errors"] == 7 and saved["warnings"] == 0
    assert {"split": "train", "id": "t3"} in next(
        f["rows"] for f in saved["findings"] if f["check"] == "conflicting_labels"
    )
    md = (tmp_path / "validation.md").read_text()
    assert md.startswith("# Data validation: FAILED (7 errors, 0 warnings)")
    assert "| duplicates | error | train: 2 text(s) occur more than once" in md and "train:t1, train:t2" in md

    everything_off = validate_splits(bad_data(), "label", ValidationConfig.every("off"))
    assert everything_off.findings == [] and set(everything_off.checks.values()) == {"off"}


def test_rows_listed_are_capped_and_counted() -> None:
    rows = [{"id": f"r{i}", "text": "same text", "label": "a"} for i in range(30)]
    report = validate_splits({"train": rows, "validation": [], "test": []}, "label", None)
    (dup,) = by_check(report, "duplicates")
    assert dup.n_rows == 30 and len(dup.rows) == 20 and dup.rows_text().endswith("train:r19 (+10 more)")


def test_fingerprints_are_stable_and_follow_each_split() -> None:
    a, b = split_fingerprints(bad_data()), split_fingerprints(bad_data())
    assert a == b and all(len(v) == 16 for v in a.values()) and a["train"] == a["test"]
    changed = bad_data()
    changed["test"][0]["label"] = "account"
    c = split_fingerprints(changed)
    assert c["test"] != a["test"] and c["train"] == a["train"] and c["validation"] == a["validation"]
    assert validate_splits(bad_data(), "label", None).fingerprints == a


def test_normalisation_is_casefold_and_whitespace() -> None:
    assert normalise_text("  My\tInvoice \n is  WRONG ") == "my invoice is wrong"


def test_bad_config_is_named() -> None:
    with pytest.raises(ConfigError, match=r"validation.duplicates.severity=loud is not one of"):
        validation_config({"duplicates": {"severity": "loud"}})
    with pytest.raises(ConfigError, match=r"unknown check\(s\) \['dupes'\]"):
        validation_config({"dupes": {"severity": "warn"}})
    with pytest.raises(
        ConfigError, match=r"validation.leakage_near.threshold=1.5 must be a number in \(0, 1\]"
    ):
        validation_config({"leakage_near": {"threshold": 1.5}})
    assert validation_config(None).severity == dict.fromkeys(CHECKS, "warn")


def test_config_files_set_every_check() -> None:
    import yaml

    conf = Path(__file__).resolve().parents[2] / "conf" / "validation"
    for name, severity in (("warn", "warn"), ("strict", "error"), ("off", "off")):
        cfg = validation_config(yaml.safe_load((conf / f"{name}.yaml").read_text()))
        assert cfg.severity == dict.fromkeys(CHECKS, severity), name
        assert cfg.param("leakage_near", "threshold") == 0.9 and cfg.param("min_size", "min_train") == 100


def test_schema_check_names_records_off_the_schema() -> None:
    from slmforge.tasks.extraction import ExtractionTask

    task = ExtractionTask({"vendor": {"type": "string"}, "total": {"type": "number"}})
    good = {"vendor": "ACME", "total": "12.50"}
    data = {
        "train": [
            {"id": "g", "text": "a", "fields": good},
            {"id": "bad", "text": "b", "fields": {"total": "abc"}},
        ],
        "validation": [],
        "test": [{"id": "s", "text": "c", "fields": "not a mapping"}],
    }
    report = validate_splits(data, "fields", None, task=task)
    found = {f.details["split"]: f for f in by_check(report, "schema")}
    assert ids(found["train"]) == {("train", "bad")} and "total" in found["train"].message
    assert ids(found["test"]) == {("test", "s")} and "not a mapping" in found["test"].message


def test_truncation_names_rows_cut_by_the_training_and_prediction_rules() -> None:
    import hydra

    from slmforge.build import build_tokenizer, compose_config

    cfg = compose_config("train", ["model=tiny", "task.max_length=96"])
    tokenizer = build_tokenizer(cfg)
    task = hydra.utils.instantiate(cfg.task, _convert_="all")
    long = " ".join(WORDS * 4)  # ~130 words: over 96 tokens with the prompt
    data = {
        "train": [{"id": "short", "text": "Cannot log in", "label": "account"},
                  {"id": "long", "text": long, "label": "billing"}],
        "validation": [{"id": "v", "text": "ok", "label": "account"}],
        "test": [{"id": "tl", "text": long, "label": "billing"}, {"id": "ts", "text": "fine", "label": "account"}],
    }  # fmt: skip
    task.setup(data["train"], {"validation": data["validation"], "test": data["test"]})
    task.set_length_bound(tokenizer, data["train"])
    report = validate_splits(data, "label", None, tokenizer=tokenizer, task=task)
    found = {f.details["split"]: f for f in by_check(report, "truncation")}
    assert set(found) == {"train", "test"}
    assert ids(found["train"]) == {("train", "long")} and ids(found["test"]) == {("test", "tl")}
    assert found["train"].details["max_length"] == 96
