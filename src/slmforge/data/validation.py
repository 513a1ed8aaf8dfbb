"""Checks of the canonical examples before anything trains on them, and the report they make.

A run on five training rows with a duplicate, two labels for the same text and a test split equal to the
training split used to finish with exit code 0 and a test score that meant nothing. Each check here names
the rows at fault (split and id, the first :data:`ROWS_LISTED` and a count) and has a severity from the
``validation`` config group: ``error`` stops ``slmforge-train`` (and makes ``slmforge-validate`` exit 1),
``warn`` reports and goes on, ``off`` skips the check.

Texts are compared after :func:`normalise_text` (casefold, whitespace collapsed, stripped): a row that
differs from another only by case or spacing is the same example to a model. Near-duplicates across splits
are found by MinHash LSH (``datasketch``) over word 3-shingles as candidates, each candidate pair then
confirmed by its exact Jaccard similarity, so the LSH only decides what is compared, never what is reported.

Pure functions over the rows :func:`~slmforge.data.sources.load_splits` returns; the task and tokenizer are
only needed by ``truncation`` (the training cut, :func:`~slmforge.training.batching.encode_example`, and the
prediction cut, :func:`~slmforge.prompting.count_truncated`) and ``schema`` (the task's own target rule).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from slmforge.data.sources import DatasetSplits
    from slmforge.tasks.base import Task

log = logging.getLogger("slmforge")

SPLITS = ("train", "validation", "test")
SEVERITIES = ("error", "warn", "off")
# Check name -> its thresholds and their defaults (conf/validation/*.yaml says what each one trades).
CHECKS: dict[str, dict[str, Any]] = {
    "min_size": {"min_train": 100, "min_per_label": 10},
    "duplicates": {},
    "conflicting_labels": {},
    "leakage_exact": {},
    "leakage_near": {"threshold": 0.9, "num_perm": 128, "shingle_words": 3},
    "label_imbalance": {"min_class_ratio": 0.1},
    "labels_in_one_split": {},
    "truncation": {},
    "schema": {},
}
ROWS_LISTED = 20  # rows named per finding; the finding's n_rows counts them all
VALIDATION_JSON = "validation.json"
VALIDATION_MD = "validation.md"


# ---- config ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationConfig:
    """Per check: its severity and its thresholds (``CHECKS`` defaults where the config is silent)."""

    severity: dict[str, str]
    params: dict[str, dict[str, Any]]

    def on(self, check: str) -> bool:
        return self.severity[check] != "off"

    def param(self, check: str, key: str) -> Any:
        return self.params[check][key]

    @classmethod
    def every(cls, severity: str) -> ValidationConfig:
        """Every check at ``severity``, default thresholds."""
        return validation_config({c: {"severity": severity} for c in CHECKS})


def validation_config(section: Any) -> ValidationConfig:
    """The ``validation`` config group as a :class:`ValidationConfig`; an unknown check, key or severity, or
    a threshold out of range, is a :class:`ConfigError` naming the override. ``None`` (a config saved
    before the group existed) means every check at ``warn``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    section = dict(section or {})
    unknown = sorted(set(section) - set(CHECKS))
    if unknown:
        raise ConfigError(f"validation has unknown check(s) {unknown}; the checks are {list(CHECKS)}")
    severity: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for check, defaults in CHECKS.items():
        given = section.get(check) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(
                f"validation.{check}={given!r} must be a mapping, e.g. validation.{check}.severity=off"
            )
        bad = sorted(set(given) - {"severity", *defaults})
        if bad:
            problems.append(f"validation.{check} has unknown key(s) {bad} (known: {['severity', *defaults]})")
        sev = given.get("severity", "warn")
        sev = "off" if sev is False else str(sev)  # YAML 1.1 (OmegaConf's) reads a bare `off` as false
        if sev not in SEVERITIES:
            problems.append(f"validation.{check}.severity={sev} is not one of {list(SEVERITIES)}")
        severity[check] = sev
        params[check] = {k: given.get(k, v) for k, v in defaults.items()}
    p = params
    for key, value, ok, say in (
        ("min_size.min_train", p["min_size"]["min_train"], lambda x: x >= 0, ">= 0"),
        ("min_size.min_per_label", p["min_size"]["min_per_label"], lambda x: x >= 0, ">= 0"),
        ("leakage_near.threshold", p["leakage_near"]["threshold"], lambda x: 0 < x <= 1, "in (0, 1]"),
        ("leakage_near.num_perm", p["leakage_near"]["num_perm"], lambda x: x >= 16, ">= 16"),
        ("leakage_near.shingle_words", p["leakage_near"]["shingle_words"], lambda x: x >= 1, ">= 1"),
        ("label_imbalance.min_class_ratio", p["label_imbalance"]["min_class_ratio"],
         lambda x: 0 <= x <= 1, "in [0, 1]"),
    ):  # fmt: skip
        try:
            if isinstance(value, bool) or not ok(float(value)):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"validation.{key}={value!r} must be a number {say}")
    if problems:
        raise ConfigError("; ".join(problems))
    return ValidationConfig(severity=severity, params=params)


# ---- the report -----------------------------------------------------------------------------------------


@dataclass
class Finding:
    """One problem: which check, how severe, what (one line), the rows (first ``ROWS_LISTED``) and how many."""

    check: str
    severity: str
    message: str
    rows: list[dict[str, str]]
    n_rows: int
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One log line: check, message and the first rows."""
        return f"{self.check}: {self.message}" + (f" [{self.rows_text(5)}]" if self.rows else "")

    def rows_text(self, limit: int = ROWS_LISTED) -> str:
        shown = ", ".join(f"{r['split']}:{r['id']}" for r in self.rows[:limit])
        more = self.n_rows - min(limit, len(self.rows))
        return shown + (f" (+{more} more)" if more > 0 else "")


@dataclass
class ValidationReport:
    """Every finding, each check's outcome (ok | warn | error | off | skipped), notes on what was not checked,
    split sizes and per-split content fingerprints (the data version a record carries)."""

    findings: list[Finding]
    checks: dict[str, str]
    notes: list[str]
    fingerprints: dict[str, str]
    sizes: dict[str, int]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warn" for f in self.findings)

    @property
    def passed(self) -> bool:
        return self.errors == 0

    def failed_checks(self) -> list[str]:
        return list(dict.fromkeys(f.check for f in self.findings if f.severity == "error"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "errors": self.errors,
            "warnings": self.warnings,
            "checks": self.checks,
            "findings": [asdict(f) for f in self.findings],
            "notes": self.notes,
            "fingerprints": self.fingerprints,
            "sizes": self.sizes,
        }

    def summary(self) -> dict[str, Any]:
        """The counts for a tracker's run summary."""
        return {"data_validation/errors": self.errors, "data_validation/warnings": self.warnings,
                "data_validation/passed": self.passed}  # fmt: skip

    def markdown(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"# Data validation: {verdict} ({self.errors} errors, {self.warnings} warnings)",
            "",
            "| split | rows | fingerprint |",
            "| --- | ---: | --- |",
            *(f"| {s} | {self.sizes.get(s, 0)} | `{self.fingerprints.get(s, '')}` |" for s in SPLITS),
            "",
        ]
        if self.findings:
            lines += ["| check | severity | finding | rows |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {f.check} | {f.severity} | {_md(f.message)} | {_md(f.rows_text())} |"
                for f in self.findings
            ]
        else:
            lines.append("No findings.")
        lines += [
            "",
            "| check | outcome |",
            "| --- | --- |",
            *(f"| {c} | {o} |" for c, o in self.checks.items()),
        ]
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        """``validation.json`` and ``validation.md`` into ``folder``; returns the markdown's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / VALIDATION_JSON).write_text(json.dumps(self.to_dict(), indent=2, default=str))
        md = folder / VALIDATION_MD
        md.write_text(self.markdown())
        return md

    def error_message(self, md_path: Path | str) -> str:
        """The one ``error:`` line of a failed validation."""
        n = self.errors
        return (
            f"data validation failed: {n} error{'s' if n != 1 else ''} ({', '.join(self.failed_checks())}); "
            f"see {md_path} or set validation=warn"
        )


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---- fingerprints ---------------------------------------------------------------------------------------


def split_fingerprints(splits: DatasetSplits | Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, str]:
    """Per split: :func:`~slmforge.data.sources.rows_fingerprint` of its canonical rows. The whole-data
    fingerprint changes when any split does; these say which one changed."""
    from slmforge.data.sources import rows_fingerprint

    return {
        split: rows_fingerprint(splits[split] if isinstance(splits, Mapping) else splits.get(split))
        for split in SPLITS
    }


# ---- the checks -----------------------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """What makes two texts the same example: casefolded, whitespace runs collapsed, stripped."""
    return " ".join(str(text).casefold().split())


def _target_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


Ref = tuple[str, int]  # (split, row index)


class _Checker:
    def __init__(
        self,
        rows: dict[str, Sequence[dict[str, Any]]],
        target_key: str,
        config: ValidationConfig,
    ) -> None:
        self.rows = rows
        self.target_key = target_key
        self.config = config
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.norm = {s: [normalise_text(ex["text"]) for ex in rows[s]] for s in SPLITS}

    def add(self, check: str, message: str, refs: Iterable[Ref], **details: Any) -> None:
        refs = list(dict.fromkeys(refs))
        listed = [
            {"split": s, "id": str(self.rows[s][i].get("id", f"{s}-{i}"))} for s, i in refs[:ROWS_LISTED]
        ]
        self.findings.append(Finding(check, self.config.severity[check], message, listed, len(refs), details))

    def by_text(self, split: str) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(self.norm[split]):
            groups[t].append(i)
        return groups

    # -- sizes and labels

    def min_size(self) -> None:
        n, need = len(self.rows["train"]), int(self.config.param("min_size", "min_train"))
        if n < need:
            self.add("min_size", f"train has {n} rows, fewer than min_train={need}", [], train_rows=n)
        if self.target_key != "label":
            return
        per = int(self.config.param("min_size", "min_per_label"))
        counts = Counter(ex["label"] for ex in self.rows["train"])
        small = {lab: c for lab, c in sorted(counts.items()) if c < per}
        if small:
            shown = ", ".join(f"{lab!r}: {c}" for lab, c in list(small.items())[:10])
            refs = [("train", i) for i, ex in enumerate(self.rows["train"]) if ex["label"] in small]
            self.add(
                "min_size",
                f"{len(small)} of {len(counts)} labels have fewer than min_per_label={per} train rows ({shown})",
                refs, labels=small,
            )  # fmt: skip

    def label_imbalance(self) -> None:
        counts = Counter(ex["label"] for ex in self.rows["train"])
        if len(counts) < 2:
            return
        (big, n_big), (small, n_small) = counts.most_common()[0], counts.most_common()[-1]
        ratio = n_small / n_big
        limit = float(self.config.param("label_imbalance", "min_class_ratio"))
        if ratio < limit:
            refs = [("train", i) for i, ex in enumerate(self.rows["train"]) if ex["label"] == small]
            self.add(
                "label_imbalance",
                f"train's smallest class {small!r} has {n_small} rows, {ratio:.3f} of the largest {big!r} "
                f"({n_big}); below min_class_ratio={limit}",
                refs, ratio=round(ratio, 4), smallest=small, largest=big,
            )  # fmt: skip
        else:
            self.notes.append(
                f"label_imbalance: smallest/largest class ratio {ratio:.3f} ({small!r} / {big!r})"
            )

    def labels_in_one_split(self) -> None:
        labels = {s: {ex["label"] for ex in self.rows[s]} for s in SPLITS}
        for split in ("validation", "test"):
            unseen = sorted(labels[split] - labels["train"])
            if unseen:
                refs = [(split, i) for i, ex in enumerate(self.rows[split]) if ex["label"] in unseen]
                self.add(
                    "labels_in_one_split",
                    f"{split} has {len(unseen)} label(s) train never has ({_list(unseen)}): a model cannot "
                    f"predict a label it never saw",
                    refs, labels=unseen, split=split,
                )  # fmt: skip
        missing = sorted(labels["train"] - labels["test"])
        if missing and self.rows["test"]:
            refs = [("train", i) for i, ex in enumerate(self.rows["train"]) if ex["label"] in missing]
            self.add(
                "labels_in_one_split",
                f"{len(missing)} train label(s) never occur in test ({_list(missing)}): the test score says "
                f"nothing about them",
                refs, labels=missing, split="test",
            )  # fmt: skip

    # -- texts

    def duplicates(self) -> None:
        for split in SPLITS:
            groups = [idx for idx in self.by_text(split).values() if len(idx) > 1]
            if groups:
                refs = [(split, i) for idx in groups for i in idx]
                self.add(
                    "duplicates",
                    f"{split}: {len(groups)} text(s) occur more than once ({len(refs)} rows, "
                    f"{len(refs) - len(groups)} of them repeats)",
                    refs, split=split, groups=len(groups),
                )  # fmt: skip

    def conflicting_labels(self) -> None:
        """Within a split: one text, several targets (the model is taught both). Across splits: each split
        consistent, but they disagree (the test split grades the model against the other answer)."""
        targets: dict[str, dict[str, list[Ref]]] = defaultdict(lambda: defaultdict(list))
        for split in SPLITS:
            for i, (t, ex) in enumerate(zip(self.norm[split], self.rows[split], strict=True)):
                targets[t][_target_text(ex[self.target_key])].append((split, i))
        within: dict[str, list[list[Ref]]] = defaultdict(list)
        across: list[list[Ref]] = []
        for by_target in targets.values():
            if len(by_target) < 2:
                continue
            refs = [r for group in by_target.values() for r in group]
            split_conflicts = False
            for split in SPLITS:
                mine = [tgt for tgt, group in by_target.items() if any(s == split for s, _ in group)]
                if len(mine) > 1:
                    within[split].append([r for r in refs if r[0] == split])
                    split_conflicts = True
            if not split_conflicts:
                across.append(refs)
        what = "labels" if self.target_key == "label" else f"'{self.target_key}' targets"
        for split, groups in within.items():
            self.add(
                "conflicting_labels",
                f"{split}: {len(groups)} text(s) appear with different {what} (first: {self.example(groups[0])})",
                [r for refs in groups for r in refs], texts=len(groups), where=split,
            )  # fmt: skip
        if across:
            self.add(
                "conflicting_labels",
                f"{len(across)} text(s) have one {what[:-1]} in one split and another in another "
                f"(first: {self.example(across[0])})",
                [r for refs in across for r in refs], texts=len(across), where="across splits",
            )  # fmt: skip

    def example(self, refs: list[Ref]) -> str:
        s, i = refs[0]
        seen = dict.fromkeys(_target_text(self.rows[sp][j][self.target_key]) for sp, j in refs)
        text = self.rows[s][i]["text"]
        return f"{text[:40]!r}{'...' if len(text) > 40 else ''} -> {_list(list(seen), 60)}"

    def leakage_exact(self) -> None:
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            in_b = self.by_text(b)
            shared = [t for t in dict.fromkeys(self.norm[a]) if t in in_b]
            if not shared:
                continue
            in_a = self.by_text(a)
            refs = [(a, i) for t in shared for i in in_a[t]] + [(b, i) for t in shared for i in in_b[t]]
            share = sum(len(in_b[t]) for t in shared) / max(1, len(self.rows[b]))
            self.add(
                "leakage_exact",
                f"{a}<->{b}: {len(shared)} text(s) are in both ({share:.1%} of {b}'s rows)",
                refs, pair=[a, b], texts=len(shared), share_of_second=round(share, 4),
            )  # fmt: skip

    def leakage_near(self) -> None:
        from datasketch import MinHash, MinHashLSH

        threshold = float(self.config.param("leakage_near", "threshold"))
        num_perm = int(self.config.param("leakage_near", "num_perm"))
        k = int(self.config.param("leakage_near", "shingle_words"))
        shingles = {s: [_shingles(t, k) for t in self.norm[s]] for s in SPLITS}
        # LSH only proposes candidates: below the threshold (so a pair just over it is not missed by chance),
        # each candidate then judged by its exact Jaccard similarity.
        lsh = MinHashLSH(threshold=max(0.05, threshold - 0.2), num_perm=num_perm)
        hashes: dict[Ref, Any] = {}
        for split in SPLITS:
            for i, sh in enumerate(shingles[split]):
                m = MinHash(num_perm=num_perm, seed=1)
                m.update_batch([x.encode() for x in sh])
                hashes[(split, i)] = m
                lsh.insert(f"{split}\x00{i}", m)
        order = {s: n for n, s in enumerate(SPLITS)}
        pairs: dict[tuple[str, str], list[tuple[Ref, Ref, float]]] = defaultdict(list)
        for (split, i), m in hashes.items():
            for key in lsh.query(m):
                other, j = key.split("\x00")
                j = int(j)
                if order[other] <= order[split] or self.norm[split][i] == self.norm[other][j]:
                    continue  # each pair of splits once; exact copies are leakage_exact's
                a, b = shingles[split][i], shingles[other][j]
                sim = len(a & b) / len(a | b)
                if sim >= threshold:
                    pairs[(split, other)].append(((split, i), (other, j), sim))
        for (a, b), found in pairs.items():
            refs = [r for x, y, _ in found for r in (x, y)]
            (x, y, sim) = found[0]
            self.add(
                "leakage_near",
                f"{a}<->{b}: {len(found)} pair(s) of texts with word-{k}-shingle Jaccard >= {threshold} "
                f"(first: {a}:{self.rows[a][x[1]].get('id')} ~ {b}:{self.rows[b][y[1]].get('id')}, {sim:.2f})",
                refs, pair=[a, b], pairs=len(found),
            )  # fmt: skip

    # -- task and tokenizer

    def schema(self, task: Task) -> None:
        from slmforge.errors import TaskError

        for split in SPLITS:
            bad: list[int] = []
            first = ""
            for i, ex in enumerate(self.rows[split]):
                problem = None
                if not isinstance(ex.get(self.target_key), Mapping):
                    problem = (
                        f"'{self.target_key}' is a {type(ex.get(self.target_key)).__name__}, not a mapping"
                    )
                else:
                    try:
                        task.target(ex)  # the task's own rule: the canonical JSON of the schema
                    except (TaskError, ValueError) as e:
                        problem = str(e)
                if problem:
                    bad.append(i)
                    first = first or problem
            if bad:
                self.add(
                    "schema",
                    f"{split}: {len(bad)} target(s) do not fit task.schema (first: {first[:160]})",
                    [(split, i) for i in bad], split=split,
                )  # fmt: skip

    def truncation(self, task: Task, tokenizer: Any) -> None:
        from slmforge.errors import TaskError
        from slmforge.prompting import count_truncated
        from slmforge.training.batching import encode_example

        for split in SPLITS:
            cut: list[int] = []
            for i, ex in enumerate(self.rows[split]):
                try:
                    if split == "train":  # the training cut: prompt + answer + EOS fit max_length
                        hit = encode_example(task, tokenizer, ex, task.max_length).truncated
                    else:  # the prediction cut: max_length less the longest training answer
                        hit = count_truncated(tokenizer, task, [ex], ()) > 0
                except (TaskError, ValueError):
                    continue  # a target the task cannot render: the schema check names it
                if hit:
                    cut.append(i)
            if cut:
                self.add(
                    "truncation",
                    f"{split}: {len(cut)} of {len(self.rows[split])} prompts are longer than task.max_length="
                    f"{task.max_length} allows and will be cut in the middle",
                    [(split, i) for i in cut], split=split, max_length=task.max_length,
                )  # fmt: skip


def _list(items: Sequence[Any], width: int = 80) -> str:
    text = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items)
    return text if len(text) <= width else text[: width - 3] + "..."


def _shingles(text: str, k: int) -> frozenset[str]:
    words = text.split()
    if len(words) <= k:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))


def validate_splits(
    splits: DatasetSplits | Mapping[str, Sequence[dict[str, Any]]],
    target_key: str,
    config: ValidationConfig | Any = None,
    tokenizer: Any = None,
    task: Task | None = None,
    task_error: str | None = None,
) -> ValidationReport:
    """Run every check that is not ``off`` over ``splits`` (a :class:`DatasetSplits` or a mapping of split ->
    canonical rows) whose target is ``target_key`` (``label`` | ``fields`` | ``output``). ``config``: a
    :class:`ValidationConfig` or the ``validation`` config section (None: every check at ``warn``).
    ``truncation`` needs ``task`` (set up, with its length bound) and ``tokenizer``; ``schema`` needs a
    task with a schema; each is skipped with a note without them. ``task_error``: why the task could not be
    set up on this data (a finding of check ``task``, always an error: training would stop on it)."""
    if not isinstance(config, ValidationConfig):
        config = validation_config(config)
    rows = {s: list(splits[s] if isinstance(splits, Mapping) else splits.get(s)) for s in SPLITS}
    checker = _Checker(rows, target_key, config)
    outcome: dict[str, str] = {}
    if task_error:
        message = f"the task cannot be set up on this data: {task_error}"
        checker.findings.append(Finding("task", "error", message, [], 0))
        outcome["task"] = "error"
    label_only = {"label_imbalance", "labels_in_one_split"}
    # Only extraction tasks have a schema (their target is ``fields``); asked only of them, since a task
    # that could not be set up may not answer protocol().
    has_schema = task is not None and target_key == "fields" and task.protocol().schema is not None
    for check in CHECKS:
        if not config.on(check):
            outcome[check] = "off"
            continue
        before = len(checker.findings)
        if check in label_only and target_key != "label":
            outcome[check] = "skipped"
            checker.notes.append(f"{check}: skipped, the target is '{target_key}', not a label")
            continue
        if check == "schema":
            if not has_schema:
                outcome[check] = "skipped"
                checker.notes.append("schema: skipped, the task has no output schema")
                continue
            checker.schema(task)  # type: ignore[arg-type]
        elif check == "truncation":
            if task is None or tokenizer is None or task_error:
                outcome[check] = "skipped"
                why = "the task could not be set up" if task_error else "no tokenizer was given"
                checker.notes.append(f"truncation: skipped, {why}")
                continue
            checker.truncation(task, tokenizer)
        else:
            getattr(checker, check)()
        outcome[check] = config.severity[check] if len(checker.findings) > before else "ok"
    return ValidationReport(
        findings=checker.findings,
        checks=outcome,
        notes=checker.notes,
        fingerprints=split_fingerprints(rows),
        sizes={s: len(rows[s]) for s in SPLITS},
    )


def enforce(report: ValidationReport, folder: Path) -> Path:
    """Write the report into ``folder``, log each warning as one line, and raise :class:`DataError` (the
    commands' one ``error:`` line) when a finding has severity ``error``. Returns the markdown's path."""
    md = report.write(folder)
    for f in report.findings:  # warnings first; then the errors, right above the error line
        if f.severity == "warn":
            log.warning("data validation: %s", f.line())
    for f in report.findings:
        if f.severity == "error":
            log.error("data validation: %s", f.line())
    if not report.passed:
        raise DataError(report.error_message(md))
    return md
