"""Classification / routing: pick one label from a fixed set.

Local models never parse free text here: they score every allowed label (see
``slmforge.prediction.label_scoring``). ``parse`` exists for API models that can only generate.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from slmforge.metrics.classification import ClassificationMetrics
from slmforge.records import PredictionRow
from slmforge.tasks.base import PredictionProtocol, Task, TaskError

log = logging.getLogger("slmforge")

LABEL_VARIANT_POLICIES = ("warn", "merge", "keep")


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

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:
        self._label_variants({"train": train, **others})
        train_labels = sorted({ex["label"] for ex in train})
        if not self.labels:
            self.labels = train_labels
        if len(self.labels) < 2:
            raise TaskError(f"classification needs at least 2 labels; the training split has {train_labels}")
        allowed = set(self.labels)
        for split, rows in {"train": train, **others}.items():
            unknown = sorted({ex["label"] for ex in rows} - allowed)
            if unknown:
                raise TaskError(
                    f"{split} split has label(s) {unknown[:10]} that are not among the {len(allowed)} "
                    f"{'training' if split != 'train' else 'configured'} labels; a model cannot predict a "
                    f"label it never saw. Add them to the training data, drop those rows, or list all "
                    f"labels in task.labels=[...]"
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
                listing = "\n".join(f"- {lab}: {self.label_descriptions.get(lab, '')}" for lab in self.labels)
            else:
                listing = ", ".join(self.labels)
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

    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        if not rows:
            return {"n": 0}
        metric = ClassificationMetrics(self.labels)
        metric.update(torch.tensor([self.probs_for(r) for r in rows]), [r.gold for r in rows])
        out = metric.compute()
        # Predictions that map to no label (unparseable API replies) are wrong whatever the probs say.
        invalid = sum(r.pred not in self.labels for r in rows)
        if invalid:
            correct = sum(r.pred == r.gold for r in rows)
            out["accuracy"] = correct / len(rows)
            out.update(_f1_from_strings(rows, self.labels))
        out["invalid_rate"] = invalid / len(rows)
        return out

    output_format = "label"

    def protocol(self) -> PredictionProtocol:
        return replace(super().protocol(), labels=tuple(self.labels) or None)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "label_mapping": self.label_mapping,
            "labels": self.labels,
            "n_labels": len(self.labels),
        }


def _f1_from_strings(rows: Sequence[PredictionRow], labels: list[str]) -> dict[str, Any]:
    per = {}
    for lab in labels:
        tp = sum(r.pred == lab and r.gold == lab for r in rows)
        fp = sum(r.pred == lab and r.gold != lab for r in rows)
        fn = sum(r.pred != lab and r.gold == lab for r in rows)
        per[lab] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {"per_class_f1": per, "macro_f1": sum(per.values()) / len(per)}
