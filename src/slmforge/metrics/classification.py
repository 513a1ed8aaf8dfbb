"""Classification metrics: accuracy, macro/per-class F1, calibration (ECE, Brier, NLL), confusion matrix.

Two entry points:

- :class:`ClassificationMetrics`, one :class:`torchmetrics.Metric` that takes label probabilities and
  returns everything as plain Python (ready for ``results.json``). Its state is a confusion matrix
  plus binned calibration sums, all reduced with ``sum``, so it accumulates exactly across batches
  and processes and never stores per-example tensors.
- :func:`classification_metrics`, the equivalent torchmetrics :class:`~torchmetrics.MetricCollection`
  for logging inside Lightning (``self.log_dict``).

Conventions, identical in both:

- the confusion matrix has true labels as rows and predictions as columns (sklearn's convention);
- F1 of a class is ``2tp / (2tp + fp + fn)`` and 0 when that is 0/0, and macro-F1 averages over *all*
  classes of the label list. This equals ``sklearn.metrics.f1_score(average="macro",
  labels=range(C), zero_division=0)``. Note that torchmetrics' own macro average instead drops classes
  that never occur in targets or predictions, which inflates macro-F1 on small splits;
- ECE is torchmetrics' top-label ``MulticlassCalibrationError`` (``n_bins`` equal-width bins
  ``[k/n, (k+1)/n)``; a confidence of exactly 1.0 falls in a bin of its own, as in torchmetrics);
- Brier is the multiclass Brier score, mean over examples of ``sum_c (p_c - onehot_c)^2`` (in [0, 2]);
- NLL is the mean of ``-log p_target``, with probabilities clamped at 1e-12 so a confidently wrong
  prediction costs ~27.6 nats instead of infinity.

Out-of-scope detection and abstention (selective prediction), as plain functions over per-row values:

- :func:`coverage_accuracy_curve`: for each distinct confidence ``t`` (descending), the rows answered at
  threshold ``t`` are those with confidence ``>= t``; coverage is their share and accuracy theirs. Ties
  move together (one threshold cannot separate equal confidences);
- :func:`choose_threshold`: the lowest threshold whose accuracy on the covered rows reaches a target
  (the largest coverage that meets it), else the most accurate one, flagged ``met_target=False``;
- :func:`out_of_scope_metrics`: precision, recall and F1 of "out of scope" as the positive class, and
  the AUROC of an in-scope score separating in-scope (positive) from out-of-scope gold rows
  (scikit-learn's ``roc_auc_score``: ties count one half). 0/0 precision/recall/F1 are 0, as above; an
  AUROC without both classes is NaN.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torchmetrics
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

_PROB_TOL = 1e-3  # row sums this far from 1 mean the caller passed logits or unnormalised scores
_NLL_EPS = 1e-12


def _f1_from_confmat(cm: Tensor) -> Tensor:
    tp = cm.diag().double()
    fp = cm.sum(0).double() - tp
    fn = cm.sum(1).double() - tp
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))


class SklearnMacroF1(MulticlassF1Score):
    """Multiclass macro-F1 averaged over all classes (sklearn, ``zero_division=0``), for collections."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, average=None, **kwargs)

    def compute(self) -> Tensor:
        return super().compute().mean()


def classification_metrics(labels: Sequence[str]) -> torchmetrics.MetricCollection:
    """A torchmetrics collection of the classification metrics, for logging during training.

    Update it with ``(probs[N, C], target[N])``: every member accepts probabilities (the F1/accuracy
    members take the argmax, the calibration member needs the probabilities themselves). Keys:
    ``accuracy``, ``macro_f1``, ``per_class_f1`` (tensor[C]), ``ece``, ``confusion_matrix``.
    Use ``.clone(prefix="val_")`` for a second split.
    """
    num_classes = len(labels)
    if num_classes < 2:
        raise ValueError(f"classification needs at least 2 labels, got {list(labels)}")
    return torchmetrics.MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "macro_f1": SklearnMacroF1(num_classes=num_classes),
            "per_class_f1": MulticlassF1Score(num_classes=num_classes, average=None),
            "ece": MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes=num_classes),
        }
    )


class ClassificationMetrics(torchmetrics.Metric):
    """Accuracy, macro-F1, per-class F1, ECE, Brier, NLL and the confusion matrix from probabilities.

    ``update(probs, target)``: ``probs`` is a float tensor ``[N, C]`` of label probabilities in the
    order of ``labels`` (or logits when ``from_logits=True``); ``target`` holds label indices
    (tensor or sequence of ints) or label strings. Predictions are the argmax of ``probs``.
    ``compute()`` returns plain Python (see :meth:`compute`); with ``prefix`` set, top-level keys are
    prefixed. Instantiate once per split, or ``clone(prefix="test_")``.
    """

    is_differentiable = False
    higher_is_better = None  # mixed: accuracy/F1 up, ECE/Brier/NLL down
    full_state_update = False

    confmat: Tensor
    bin_count: Tensor
    bin_confidence: Tensor
    bin_correct: Tensor
    brier_sum: Tensor
    nll_sum: Tensor

    def __init__(
        self,
        labels: Sequence[str],
        *,
        n_bins: int = 15,
        from_logits: bool = False,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise ValueError(f"classification needs at least 2 labels, got {labels}")
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"duplicate label(s) {dupes} in {labels}")
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.labels = labels
        self.num_classes = len(labels)
        self.n_bins = n_bins
        self.from_logits = from_logits
        self.prefix = prefix
        self._index = {label: i for i, label in enumerate(labels)}
        c = self.num_classes
        self.add_state("confmat", torch.zeros(c, c, dtype=torch.long), dist_reduce_fx="sum")
        # n_bins + 1 slots: torchmetrics puts confidence == 1.0 in a bin of its own; matching it keeps
        # this ECE identical to the MetricCollection's.
        for name in ("bin_count", "bin_confidence", "bin_correct"):
            self.add_state(name, torch.zeros(n_bins + 1, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("brier_sum", torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")

    def _as_target(self, target: Tensor | Sequence[int | str], device: torch.device) -> Tensor:
        if not isinstance(target, Tensor):
            items = list(target)
            if items and all(isinstance(t, str) for t in items):
                unknown = sorted({t for t in items if t not in self._index})
                if unknown:
                    raise ValueError(f"unknown label(s) {unknown}; labels are {self.labels}")
                items = [self._index[t] for t in items]
            target = torch.tensor(items, dtype=torch.long)
        target = target.to(device=device)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
        target = target.long().reshape(-1)
        if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
            raise ValueError(f"target indices must be in [0, {self.num_classes}), got {target.tolist()[:20]}")
        return target

    def update(
        self, probs: Tensor, target: Tensor | Sequence[int | str], pred: Tensor | Sequence[int] | None = None
    ) -> None:
        """``pred``: label indices of the final predictions where they are not the argmax of ``probs`` (an
        abstention replaced the answer by the out-of-scope label): the confusion matrix, accuracy and F1
        count them, while ECE, Brier and NLL stay on the model's own distribution."""
        probs = torch.as_tensor(probs)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(
                f"probs must have shape [N, {self.num_classes}] (one column per label), got {tuple(probs.shape)}"
            )
        if not probs.is_floating_point():
            raise ValueError(f"probs must be a float tensor, got dtype {probs.dtype}")
        probs = probs.detach().to(device=self.confmat.device, dtype=torch.float32)
        target = self._as_target(target, probs.device)
        if target.shape[0] != probs.shape[0]:
            raise ValueError(f"{probs.shape[0]} probability rows but {target.shape[0]} targets")
        if probs.shape[0] == 0:
            return
        if self.from_logits:
            log_probs = probs.log_softmax(dim=1)
            probs = log_probs.exp()
        else:
            if probs.min() < -_PROB_TOL or probs.max() > 1 + _PROB_TOL:
                raise ValueError("probs has values outside [0, 1]; pass from_logits=True for logits")
            if ((probs.sum(dim=1) - 1).abs() > _PROB_TOL).any():
                raise ValueError(
                    "probs rows must sum to 1; normalise them (or pass from_logits=True for logits)"
                )
            probs = probs.clamp(0.0, 1.0)
            log_probs = probs.clamp_min(_NLL_EPS).log()

        c = self.num_classes
        confidence, top = probs.max(dim=1)
        final = (
            top if pred is None else torch.as_tensor(pred, dtype=torch.long, device=top.device).reshape(-1)
        )
        if final.shape != top.shape or (final.numel() and (final.min() < 0 or final.max() >= c)):
            raise ValueError(f"pred must hold {top.numel()} label indices in [0, {c})")
        self.confmat += torch.bincount(target * c + final, minlength=c * c).reshape(c, c)

        boundaries = torch.linspace(0, 1, self.n_bins + 1, device=probs.device, dtype=probs.dtype)
        bins = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, self.n_bins)
        self.bin_count.scatter_add_(0, bins, torch.ones_like(confidence))
        self.bin_confidence.scatter_add_(0, bins, confidence)
        # calibration: the distribution's own top label, whatever the final prediction
        self.bin_correct.scatter_add_(0, bins, (top == target).to(confidence.dtype))

        onehot = torch.nn.functional.one_hot(target, c).to(probs.dtype)
        self.brier_sum += ((probs - onehot) ** 2).sum()
        self.nll_sum += -log_probs.gather(1, target[:, None]).clamp_min(math.log(_NLL_EPS)).sum()

    def compute(self) -> dict[str, Any]:
        """``{"n", "accuracy", "macro_f1", "ece", "brier", "nll", "per_class_f1": {label: f1},
        "confusion_matrix": [[int]] (rows true, columns predicted)}``; NaN scores before any update."""
        cm = self.confmat
        n = int(cm.sum())
        f1 = _f1_from_confmat(cm)
        nan = math.nan
        out: dict[str, Any] = {
            "n": n,
            "accuracy": int(cm.diag().sum()) / n if n else nan,  # exact: integer counts
            "macro_f1": float(f1.mean()) if n else nan,
            "ece": float((self.bin_correct - self.bin_confidence).abs().sum()) / n if n else nan,
            "brier": float(self.brier_sum) / n if n else nan,
            "nll": float(self.nll_sum) / n if n else nan,
            "per_class_f1": {label: (float(f1[i]) if n else nan) for i, label in enumerate(self.labels)},
            "confusion_matrix": cm.tolist(),
        }
        if self.prefix:
            out = {f"{self.prefix}{k}": v for k, v in out.items()}
        return out

    def clone(self, prefix: str | None = None) -> ClassificationMetrics:
        """A deep copy (state included), optionally with a new key ``prefix``."""
        new = copy.deepcopy(self)
        if prefix is not None:
            new.prefix = prefix
        return new


# ---- out-of-scope detection and abstention -------------------------------------------------------------


def coverage_accuracy_curve(confidence: Sequence[float], correct: Sequence[float]) -> dict[str, list[float]]:
    """``{"threshold", "coverage", "accuracy"}``, one point per distinct confidence, thresholds descending
    (coverage rising to 1): answering only rows with confidence ``>= threshold`` covers ``coverage`` of
    them with ``accuracy`` (mean of ``correct`` over the covered rows)."""
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} correctness values")
    n = len(confidence)
    order = sorted(range(n), key=lambda i: -float(confidence[i]))
    out: dict[str, list[float]] = {"threshold": [], "coverage": [], "accuracy": []}
    hits = 0.0
    for k, i in enumerate(order, 1):
        hits += float(correct[i])
        if k < n and float(confidence[order[k]]) == float(confidence[i]):
            continue  # a tie: the next row is covered at the same threshold
        out["threshold"].append(float(confidence[i]))
        out["coverage"].append(k / n)
        out["accuracy"].append(hits / k)
    return out


def accuracy_coverage_auc(curve: dict[str, list[float]]) -> float:
    """Area under the accuracy-coverage step curve (``sum accuracy_i * (coverage_i - coverage_{i-1})``): the
    mean accuracy over all coverages, 1 minus the area under the risk-coverage curve; NaN for no rows."""
    cov = [0.0, *curve["coverage"]]
    if len(cov) == 1:
        return math.nan
    return sum(a * (cov[i + 1] - cov[i]) for i, a in enumerate(curve["accuracy"]))


ABSTAIN_RULES = ("selective_accuracy", "answered_accuracy")


def choose_threshold(
    confidence: Sequence[float],
    correct: Sequence[float],
    target_accuracy: float,
    rule: str = "selective_accuracy",
) -> dict[str, Any]:
    """The abstention threshold for ``target_accuracy`` under ``rule``:

    - ``selective_accuracy``: the lowest threshold whose covered rows reach the target (the most rows
      answered at that accuracy); when none does, the most accurate point (lowest among equals).
    - ``answered_accuracy``: the highest threshold at which the rows answered *and* right still make up the
      target share of all rows (abstain as much as that allows: on in-scope validation rows this keeps
      in-scope accuracy at the target and catches the most out-of-scope traffic); when none does, answer
      everything.

    ``met_target=False`` says the target was not reached. Returns ``{"threshold", "coverage", "accuracy",
    "answered_accuracy", "met_target", "target_accuracy", "rule", "n"}`` (on these rows; ``accuracy`` is
    the selective accuracy of the covered rows)."""
    if rule not in ABSTAIN_RULES:
        raise ValueError(f"abstention rule {rule!r} is not one of {list(ABSTAIN_RULES)}")
    curve = coverage_accuracy_curve(confidence, correct)
    if not curve["threshold"]:
        raise ValueError("choose_threshold needs at least one row")
    points = list(zip(curve["threshold"], curve["coverage"], curve["accuracy"], strict=True))
    if rule == "selective_accuracy":
        meeting = [p for p in points if p[2] >= target_accuracy]
        # Thresholds descend along the curve: the last point meeting the target has the lowest threshold.
        t, cov, acc = meeting[-1] if meeting else max(reversed(points), key=lambda p: p[2])
    else:
        # answered-and-right share (coverage x selective accuracy) only grows as the threshold falls
        meeting = [p for p in points if p[1] * p[2] >= target_accuracy - 1e-12]
        t, cov, acc = meeting[0] if meeting else points[-1]
    return {
        "threshold": t,
        "coverage": cov,
        "accuracy": acc,
        "answered_accuracy": cov * acc,
        "met_target": bool(meeting),
        "target_accuracy": float(target_accuracy),
        "rule": rule,
        "n": len(confidence),
    }


def out_of_scope_metrics(
    gold_oos: Sequence[bool], pred_oos: Sequence[bool], in_scope_score: Sequence[float]
) -> dict[str, float]:
    """``oos_precision``, ``oos_recall``, ``oos_f1`` (out of scope as the positive class) and ``oos_auroc``:
    how well ``in_scope_score`` (e.g. the top in-scope label's probability) ranks in-scope gold rows above
    out-of-scope ones (NaN unless both occur)."""
    from sklearn.metrics import roc_auc_score

    if not len(gold_oos) == len(pred_oos) == len(in_scope_score):
        raise ValueError("gold_oos, pred_oos and in_scope_score must have one value per row")
    tp = sum(g and p for g, p in zip(gold_oos, pred_oos, strict=True))
    fp = sum(p and not g for g, p in zip(gold_oos, pred_oos, strict=True))
    fn = sum(g and not p for g, p in zip(gold_oos, pred_oos, strict=True))
    n_oos = sum(bool(g) for g in gold_oos)
    both = 0 < n_oos < len(gold_oos)
    auroc = (
        float(roc_auc_score([not g for g in gold_oos], [float(x) for x in in_scope_score]))
        if both
        else math.nan
    )
    return {
        "oos_precision": tp / (tp + fp) if tp + fp else 0.0,
        "oos_recall": tp / (tp + fn) if tp + fn else 0.0,
        "oos_f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
        "oos_auroc": auroc,
    }
