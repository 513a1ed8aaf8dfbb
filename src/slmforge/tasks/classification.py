"""Classification / routing: pick one label from a fixed set.

Local models never parse free text here: they score every allowed label (see
``slmforge.prediction.label_scoring``). ``parse`` exists for API models that can only generate.

Out of scope and abstention: ``out_of_scope_label`` names the label meaning "none of these" (it must be
one of the labels); ``abstain`` turns predictions below a confidence threshold into that label (or the
:data:`ABSTAIN` marker when there is none), the threshold chosen on validation predictions as the lowest
whose covered rows reach ``target_accuracy`` (a fixed float skips the choice). The raw prediction stays in
the row (``details.raw_pred``). With either set, the metrics add in-scope accuracy, out-of-scope
precision/recall/F1/AUROC (with an out-of-scope label), coverage and selective accuracy (with
abstention), and the coverage-accuracy curve (a side file).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from slmforge.metrics.classification import (
    ABSTAIN_RULES,
    ClassificationMetrics,
    accuracy_coverage_auc,
    choose_threshold,
    coverage_accuracy_curve,
    out_of_scope_metrics,
)
from slmforge.records import PredictionRow
from slmforge.tasks.base import PredictionProtocol, Task, TaskError, options_from_config

log = logging.getLogger("slmforge")

LABEL_VARIANT_POLICIES = ("warn", "merge", "keep")
PRIMARY_METRICS = ("auto", "accuracy", "macro_f1")
# Classes are imbalanced when the label distribution's normalised entropy (1 = even) is under
# IMBALANCE_ENTROPY (sms_spam's 13% spam: 0.55; a 60/34/6 three-class set: 0.77; banking77: 0.99) or the
# smallest class has under IMBALANCE_MEDIAN_SHARE of the median class's rows (banking77 with some intents
# cut to 5%; its natural smallest intent has 0.27 of the median). Accuracy then rewards never predicting the
# small classes, so ``primary_metric=auto`` picks macro-F1.
IMBALANCE_ENTROPY = 0.9
IMBALANCE_MEDIAN_SHARE = 0.2
# The prediction of an abstained row when the task has no out-of-scope label (never a valid label: counted
# wrong by accuracy, and as not covered).
ABSTAIN = "abstain"


@dataclass(frozen=True)
class AbstainOptions:
    """``task.abstain``: answer only above a confidence threshold.

    enabled: abstain at all. threshold: ``auto`` (chosen on the validation predictions, which the
    evaluation then predicts first) or a fixed float in [0, 1]. target_accuracy: what ``auto`` asks of the
    validation rows under ``rule``: ``selective_accuracy`` (the answered rows' accuracy; higher answers fewer
    rows) or ``answered_accuracy`` (the share of all rows answered and right: the most abstention that keeps
    in-scope accuracy at the target, the rule for catching out-of-scope traffic). See
    :func:`~slmforge.metrics.classification.choose_threshold`.
    """

    enabled: bool = False
    threshold: float | str = "auto"
    target_accuracy: float = 0.9
    rule: str = "selective_accuracy"

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, str):
            if t != "auto":
                raise ValueError(f"task.abstain.threshold={t!r} must be auto or a number in [0, 1]")
        elif not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"task.abstain.threshold={t} must be auto or a number in [0, 1]")
        if not 0.0 < float(self.target_accuracy) <= 1.0:
            raise ValueError(f"task.abstain.target_accuracy={self.target_accuracy} must be in (0, 1]")
        if self.rule not in ABSTAIN_RULES:
            raise ValueError(f"task.abstain.rule={self.rule} is not one of {list(ABSTAIN_RULES)}")


class ClassificationTask(Task):
    """Prompt = instruction (+ label list) + text; target = the label string.

    labels: the allowed labels; ``None`` infers them (sorted) from the training split.
    label_list_in_prompt: list the labels in the prompt. Costs prompt tokens (77 banking labels ≈ 600
    tokens), helps zero-shot a lot and a fine-tuned model little.
    """

    name = "classification"
    decoding = "scoring"
    target_key = "label"

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        label_list_in_prompt: bool = True,
        system_prompt: str | None = None,
        instruction: str = "Classify the text. Answer with the label only.",
        label_descriptions: dict[str, str] | None = None,
        label_variants: str = "warn",
        max_length: int = 512,
        out_of_scope_label: str | None = None,
        abstain: AbstainOptions | dict[str, Any] | None = None,
        primary_metric: str = "auto",
    ) -> None:
        super().__init__(system_prompt=system_prompt, instruction=instruction, max_length=max_length)
        if label_variants not in LABEL_VARIANT_POLICIES:
            raise TaskError(
                f"task.label_variants={label_variants} is not one of {list(LABEL_VARIANT_POLICIES)}"
            )
        self.label_variants = label_variants
        self.label_mapping: dict[str, str] = {}
        self.labels: list[str] = [str(x) for x in labels] if labels else []
        self.label_list_in_prompt = label_list_in_prompt
        self.label_descriptions = dict(label_descriptions or {})
        self.out_of_scope_label = None if out_of_scope_label is None else str(out_of_scope_label)
        self.abstain = options_from_config(AbstainOptions, abstain, "abstain")
        if primary_metric not in PRIMARY_METRICS:
            raise TaskError(f"task.primary_metric={primary_metric} is not one of {list(PRIMARY_METRICS)}")
        self.primary_metric_choice = primary_metric
        self._primary = "accuracy" if primary_metric == "auto" else primary_metric
        # Labels the model is never asked to score: an out-of-scope label with no training rows, reached only
        # by abstaining (set in setup).
        self.unscored_labels: set[str] = set()

    @property
    def primary_metric(self) -> str:
        return self._primary

    @property
    def scored_labels(self) -> list[str]:
        """The labels predictors choose among (all labels but an untrained out-of-scope one)."""
        return [lab for lab in self.labels if lab not in self.unscored_labels]

    @property
    def selective(self) -> bool:
        """Whether out-of-scope / abstention metrics apply (an out-of-scope label or abstention is set)."""
        return self.out_of_scope_label is not None or self.abstain.enabled

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:
        self._label_variants({"train": train, **others})
        train_labels = sorted({ex["label"] for ex in train})
        oos = self.out_of_scope_label
        if not self.labels:
            self.labels = train_labels
            if oos is not None and oos not in train_labels:
                # Out-of-scope traffic the model was never trained on: only abstention can answer it.
                if not self.abstain.enabled:
                    shown = ", ".join(train_labels[:10]) + (", ..." if len(train_labels) > 10 else "")
                    raise TaskError(
                        f"task.out_of_scope_label={oos!r} is not one of the {len(train_labels)} training labels "
                        f"({shown}), so the model can never predict it: name the label that means 'none of "
                        f"these', set task.out_of_scope_label=null, or turn on task.abstain.enabled=true "
                        f"(low-confidence answers become {oos!r})"
                    )
                log.info("task.out_of_scope_label=%r has no training rows: only abstention answers it", oos)
                self.labels = [*train_labels, oos]
                self.unscored_labels = {oos}
        if len(self.labels) < 2:
            raise TaskError(f"classification needs at least 2 labels; the training split has {train_labels}")
        allowed = set(self.labels)
        if self.out_of_scope_label is not None and self.out_of_scope_label not in allowed:
            shown = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
            raise TaskError(
                f"task.out_of_scope_label={self.out_of_scope_label!r} is not one of the {len(self.labels)} labels "
                f"({shown}); name the label that means 'none of these', or task.out_of_scope_label=null"
            )
        if self.abstain.enabled and self.out_of_scope_label is None and ABSTAIN in allowed:
            raise TaskError(
                f"task.abstain is enabled without an out-of-scope label, so abstentions would be predicted as "
                f"{ABSTAIN!r}, which is already a label; set task.out_of_scope_label={ABSTAIN}"
            )
        for split, rows in {"train": train, **others}.items():
            unknown = sorted({ex["label"] for ex in rows} - allowed)
            if unknown:
                raise TaskError(
                    f"{split} split has label(s) {unknown[:10]} that are not among the {len(allowed)} "
                    f"{'training' if split != 'train' else 'configured'} labels; a model cannot predict a "
                    f"label it never saw. Add them to the training data, drop those rows, or list all "
                    f"labels in task.labels=[...]"
                )

        if self.primary_metric_choice == "auto":
            self._primary = "macro_f1" if imbalanced(Counter(ex["label"] for ex in train)) else "accuracy"
            if self._primary == "macro_f1":
                log.info(
                    "the training labels are imbalanced: the primary metric is macro_f1 "
                    "(task.primary_metric=accuracy keeps accuracy)"
                )

    def _label_variants(self, splits: dict[str, Sequence[dict[str, Any]]]) -> None:
        """Labels that differ only by case or surrounding whitespace (``billing``, ``Billing ``) are one class
        written two ways far more often than two classes: reported (``warn``), merged onto the most frequent
        spelling with the mapping printed (``merge``), or left alone (``keep``)."""
        counts = Counter(ex["label"] for rows in splits.values() for ex in rows)
        groups: dict[str, list[str]] = defaultdict(list)
        for label in counts:
            groups[label.strip().casefold()].append(label)
        in_train = Counter(ex["label"] for ex in splits.get("train", ()))
        # The canonical spelling: the most frequent in training, then overall, then the first in sort order.
        variants = {
            k: sorted(v, key=lambda x: (-in_train[x], -counts[x], x)) for k, v in groups.items() if len(v) > 1
        }
        if not variants or self.label_variants == "keep":
            return
        shown = "; ".join(" | ".join(repr(x) for x in v) for v in list(variants.values())[:5])
        if self.label_variants == "warn":
            log.warning(
                "labels that differ only by case or whitespace are separate classes: %s. Merge them with "
                "task.label_variants=merge (or task.label_variants=keep to silence this)",
                shown,
            )
            return
        self.label_mapping = {x: v[0] for v in variants.values() for x in v[1:]}
        for rows in splits.values():
            for ex in rows:
                ex["label"] = self.label_mapping.get(ex["label"], ex["label"])
        if self.labels:
            self.labels = list(dict.fromkeys(self.label_mapping.get(x, x) for x in self.labels))
        log.warning(
            "merged label variants: %s", ", ".join(f"{k!r} -> {v!r}" for k, v in self.label_mapping.items())
        )

    def user_content(self, example: dict[str, Any]) -> str:
        parts = [self.instruction]
        if self.label_list_in_prompt and self.labels:
            if self.label_descriptions:
                listing = "\n".join(
                    f"- {lab}: {self.label_descriptions.get(lab, '')}" for lab in self.scored_labels
                )
            else:
                listing = ", ".join(self.scored_labels)
            parts.append(f"Labels: {listing}")
        parts.append(f"Text: {example['text']}")
        return "\n".join(parts)

    def target(self, example: dict[str, Any]) -> str:
        return str(example["label"])

    def parse(self, raw: str) -> tuple[Any, dict[str, Any]]:
        """Map free text onto a label: exact match, then case/punctuation-insensitive, then the longest
        label mentioned. Unmatched -> ``None`` (counted wrong)."""
        text = raw.strip()
        if text in self.labels:
            return text, {"match": "exact"}

        def norm(s: str) -> str:
            return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()

        n = norm(text)
        by_norm = {norm(lab): lab for lab in self.labels}
        if n in by_norm:
            return by_norm[n], {"match": "normalised"}
        mentioned = [lab for key, lab in by_norm.items() if key and re.search(rf"\b{re.escape(key)}\b", n)]
        if mentioned:
            return max(mentioned, key=len), {"match": "mentioned"}
        return None, {"match": "none"}

    def correct(self, pred: Any, gold: Any) -> float:
        return float(pred == gold)

    def probs_for(self, row: PredictionRow) -> list[float]:
        """A probability row over ``self.labels`` for metrics: the full distribution when the predictor gave
        one; else its confidence on the prediction with the rest spread evenly."""
        n = len(self.labels)
        if row.label_probs:
            p = [float(row.label_probs.get(lab, 0.0)) for lab in self.labels]
            s = sum(p)
            return [x / s for x in p] if s > 0 else [1.0 / n] * n
        if row.pred not in self.labels:
            return [1.0 / n] * n
        conf = 1.0 if row.confidence is None else min(max(float(row.confidence), 1.0 / n), 1.0)
        rest = (1.0 - conf) / (n - 1)
        return [conf if lab == row.pred else rest for lab in self.labels]

    # ---- abstention ---------------------------------------------------------------------------------

    @property
    def abstention_needs_validation(self) -> bool:
        return self.abstain.enabled and self.abstain.threshold == "auto"

    def choose_abstention(
        self, validation_rows: Sequence[PredictionRow] | None, where: str
    ) -> dict[str, Any] | None:
        """``{"threshold", "chosen_on", ...}``: a fixed ``task.abstain.threshold``, or the lowest threshold
        whose answered ``validation_rows`` reach ``target_accuracy`` (``met_target``; ``there``: n, coverage
        and accuracy on those rows)."""
        opts = self.abstain
        if not opts.enabled:
            return None
        if opts.threshold != "auto":
            return {"threshold": float(opts.threshold), "chosen_on": "config"}
        scored = [r for r in validation_rows or () if r.confidence is not None]
        if not scored:
            raise TaskError(
                "task.abstain.threshold=auto chooses the threshold on validation predictions, but there are "
                "none with a confidence (empty validation split, or a predictor without confidences); give a "
                "number instead (task.abstain.threshold=0.5) or a validation split (data.sizes.validation)"
            )
        chosen = choose_threshold(
            [float(r.confidence) for r in scored],  # type: ignore[arg-type]
            [float(self._raw_pred(r) == r.gold) for r in scored],
            float(opts.target_accuracy),
            rule=opts.rule,
        )
        if not chosen["met_target"]:
            log.warning(
                "no abstention threshold reaches task.abstain.target_accuracy=%s (%s) on %s (chosen: accuracy "
                "%.3f, answered and right %.3f, at coverage %.3f)", opts.target_accuracy, opts.rule, where,
                chosen["accuracy"], chosen["answered_accuracy"], chosen["coverage"],
            )  # fmt: skip
        return {
            "threshold": chosen["threshold"],
            "chosen_on": where,
            "target_accuracy": chosen["target_accuracy"],
            "rule": chosen["rule"],
            "met_target": chosen["met_target"],
            # what the threshold gave where it was chosen (the evaluated split's own: metrics.coverage, ...)
            "there": {k: chosen[k] for k in ("n", "coverage", "accuracy", "answered_accuracy")},
        }

    def apply_abstention(
        self, rows: Sequence[PredictionRow], choice: dict[str, Any] | None
    ) -> list[PredictionRow]:
        """Rows under ``choice["threshold"]`` answer the out-of-scope label (or :data:`ABSTAIN`), their own
        prediction kept as ``details.raw_pred``; a row without a confidence always answers."""
        if not choice:
            return list(rows)
        t = float(choice["threshold"])
        fallback = self.out_of_scope_label if self.out_of_scope_label is not None else ABSTAIN
        out = []
        for r in rows:
            if r.confidence is None or r.confidence >= t:
                out.append(r)
                continue
            details = {**(r.details or {}), "raw_pred": r.pred, "abstained": True}
            out.append(replace(r, pred=fallback, correct=self.correct(fallback, r.gold), details=details))
        return out

    @staticmethod
    def _raw_pred(row: PredictionRow) -> Any:
        """The model's own answer (before any abstention)."""
        return (row.details or {}).get("raw_pred", row.pred)

    def _selective_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        """In-scope accuracy, out-of-scope detection, coverage and the coverage-accuracy curve."""
        oos = self.out_of_scope_label
        out: dict[str, Any] = {}
        in_scope = [r for r in rows if r.gold != oos]
        out["in_scope_accuracy"] = (
            sum(r.pred == r.gold for r in in_scope) / len(in_scope) if in_scope else math.nan
        )
        if oos is not None:
            others = [i for i, lab in enumerate(self.labels) if lab != oos]
            # The in-scope score: the most probable in-scope label's probability (max-softmax probability).
            score = [max(p[i] for i in others) for p in (self.probs_for(r) for r in rows)]
            out.update(
                out_of_scope_metrics(
                    [r.gold == oos for r in rows], [r.pred in (oos, ABSTAIN) for r in rows], score
                )
            )
            out["n_out_of_scope"] = sum(r.gold == oos for r in rows)
        if self.abstain.enabled:
            covered = [r for r in rows if not (r.details or {}).get("abstained")]
            out["coverage"] = len(covered) / len(rows)
            out["selective_accuracy"] = (
                sum(self._raw_pred(r) == r.gold for r in covered) / len(covered) if covered else math.nan
            )
        conf = [1.0 if r.confidence is None else float(r.confidence) for r in rows]
        curve = coverage_accuracy_curve(conf, [float(self._raw_pred(r) == r.gold) for r in rows])
        out["accuracy_coverage_auc"] = accuracy_coverage_auc(curve)
        out["coverage_curve"] = curve  # results.json keeps a summary; the points go to a side file
        return out

    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        if not rows:
            return {"n": 0}
        metric = ClassificationMetrics(self.labels)
        probs = torch.tensor([self.probs_for(r) for r in rows])
        final = None
        if any((r.details or {}).get("abstained") for r in rows):
            # Abstained rows answer the out-of-scope label, not their distribution's argmax.
            index = {lab: i for i, lab in enumerate(self.labels)}
            final = [index.get(r.pred, int(p.argmax())) for r, p in zip(rows, probs, strict=True)]
        metric.update(probs, [r.gold for r in rows], pred=final)
        out = metric.compute()
        # Predictions that map to no label (unparseable API replies) are wrong whatever the probs say.
        invalid = sum(r.pred not in self.labels for r in rows)
        if invalid:
            correct = sum(r.pred == r.gold for r in rows)
            out["accuracy"] = correct / len(rows)
            out.update(_f1_from_strings(rows, self.labels))
        out["invalid_rate"] = invalid / len(rows)
        if self.selective:
            out.update(self._selective_metrics(rows))
        return out

    output_format = "label"

    def protocol(self) -> PredictionProtocol:
        return replace(super().protocol(), labels=tuple(self.scored_labels) or None)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "label_mapping": self.label_mapping,
            "labels": self.labels,
            "n_labels": len(self.labels),
            **({"unscored_labels": sorted(self.unscored_labels)} if self.unscored_labels else {}),
            "primary_metric": self.primary_metric,
            **(
                {"out_of_scope_label": self.out_of_scope_label} if self.out_of_scope_label is not None else {}
            ),
            **({"abstain": vars(self.abstain)} if self.abstain.enabled else {}),
        }


def _f1_from_strings(rows: Sequence[PredictionRow], labels: list[str]) -> dict[str, Any]:
    per = {}
    for lab in labels:
        tp = sum(r.pred == lab and r.gold == lab for r in rows)
        fp = sum(r.pred == lab and r.gold != lab for r in rows)
        fn = sum(r.pred != lab and r.gold == lab for r in rows)
        per[lab] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {"per_class_f1": per, "macro_f1": sum(per.values()) / len(per)}


def imbalanced(counts: Counter) -> bool:
    """Whether a label distribution is uneven enough for macro-F1 to lead (see :data:`IMBALANCE_ENTROPY`)."""
    sizes = sorted(v for v in counts.values() if v > 0)
    total = sum(sizes)
    if len(sizes) < 2:
        return False
    entropy = -sum(v / total * math.log(v / total) for v in sizes) / math.log(len(sizes))
    return entropy < IMBALANCE_ENTROPY or sizes[0] < IMBALANCE_MEDIAN_SHARE * statistics.median(sizes)
