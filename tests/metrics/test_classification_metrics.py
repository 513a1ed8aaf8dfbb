"""Classification metrics against scikit-learn, a hand ECE, and torchmetrics' calibration error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from torchmetrics.classification import MulticlassCalibrationError

from slmforge.metrics.classification import ClassificationMetrics, classification_metrics

LABELS = ["billing", "tech", "account", "other", "spam"]


def random_batch(n: int, c: int, seed: int, absent: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random probabilities/targets; class ``absent`` never occurs as target nor as argmax."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    target = torch.randint(0, c, (n,), generator=g)
    if absent is not None:
        logits[:, absent] = -20.0
        target[target == absent] = (absent + 1) % c
    return logits.softmax(dim=1), target


def sklearn_reference(probs: torch.Tensor, target: torch.Tensor, c: int) -> dict:
    y, p = target.numpy(), probs.argmax(dim=1).numpy()
    labels = list(range(c))
    return {
        "accuracy": accuracy_score(y, p),
        "macro_f1": f1_score(y, p, labels=labels, average="macro", zero_division=0),
        "per_class_f1": f1_score(y, p, labels=labels, average=None, zero_division=0).tolist(),
        "confusion_matrix": confusion_matrix(y, p, labels=labels).tolist(),
    }


def hand_ece(probs: list[list[float]], target: list[int], n_bins: int) -> float:
    """Top-label ECE with bins [k/n, (k+1)/n): sum over bins of |accuracy - confidence| * share."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for row, y in zip(probs, target, strict=True):
        conf = max(row)
        correct = float(row.index(conf) == y)
        bins.setdefault(min(int(conf * n_bins), n_bins - 1), []).append((conf, correct))
    total = len(target)
    return sum(
        abs(sum(c for _, c in b) / len(b) - sum(p for p, _ in b) / len(b)) * len(b) / total
        for b in bins.values()
    )


@pytest.mark.parametrize("absent", [None, 4])
def test_matches_sklearn_on_random_data(absent: int | None) -> None:
    probs, target = random_batch(300, len(LABELS), seed=0, absent=absent)
    m = ClassificationMetrics(LABELS)
    m.update(probs, target)
    out = m.compute()
    ref = sklearn_reference(probs, target, len(LABELS))
    assert out["n"] == 300
    assert out["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-9)
    # With an absent class, sklearn (zero_division=0) averages a 0 for it; so do we.
    assert out["macro_f1"] == pytest.approx(ref["macro_f1"], abs=1e-9)
    assert list(out["per_class_f1"]) == LABELS
    assert list(out["per_class_f1"].values()) == pytest.approx(ref["per_class_f1"], abs=1e-9)
    assert out["confusion_matrix"] == ref["confusion_matrix"]
    if absent is not None:
        assert out["per_class_f1"][LABELS[absent]] == 0.0


def test_ece_against_hand_implementation() -> None:
    # Confidences 0.9, 0.8, 0.55, 0.7, 0.95, 0.6 in bins of width 1/3 (n_bins=3):
    #   [1/3, 2/3): 0.55 (right), 0.6 (wrong)          -> |1/2 - 0.575| * 2/6 = 0.025
    #   [2/3, 1):   0.9 (right), 0.8 (wrong), 0.7 (right), 0.95 (right) -> |3/4 - 0.8375| * 4/6 = 0.058333...
    probs = [
        [0.9, 0.05, 0.05],
        [0.1, 0.8, 0.1],
        [0.2, 0.25, 0.55],
        [0.7, 0.2, 0.1],
        [0.025, 0.95, 0.025],
        [0.6, 0.3, 0.1],
    ]
    target = [0, 2, 2, 0, 1, 1]
    m = ClassificationMetrics(["a", "b", "c"], n_bins=3)
    m.update(torch.tensor(probs), torch.tensor(target))
    expected = 0.025 + 0.0875 * 4 / 6
    assert hand_ece(probs, target, 3) == pytest.approx(expected)
    assert m.compute()["ece"] == pytest.approx(expected, abs=1e-6)

    # Default 15 bins, same fixture.
    m15 = ClassificationMetrics(["a", "b", "c"])
    m15.update(torch.tensor(probs), torch.tensor(target))
    assert m15.compute()["ece"] == pytest.approx(hand_ece(probs, target, 15), abs=1e-6)


def test_ece_brier_nll_match_references() -> None:
    probs, target = random_batch(400, 4, seed=1)
    probs[:25] = torch.nn.functional.one_hot(target[:25], 4).float()  # confidence exactly 1.0
    probs[25:35] = torch.nn.functional.one_hot((target[25:35] + 1) % 4, 4).float()  # confidently wrong
    m = ClassificationMetrics(["a", "b", "c", "d"])
    m.update(probs, target)
    out = m.compute()
    tm_ece = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(probs, target)
    assert out["ece"] == pytest.approx(float(tm_ece), abs=1e-6)

    p, y = probs.double().numpy(), target.numpy()
    onehot = np.eye(4)[y]
    assert out["brier"] == pytest.approx(((p - onehot) ** 2).sum(axis=1).mean(), abs=1e-6)
    nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()
    assert out["nll"] == pytest.approx(nll, rel=1e-5)


def test_small_hand_brier_nll() -> None:
    m = ClassificationMetrics(["yes", "no"])
    m.update(torch.tensor([[0.8, 0.2], [0.4, 0.6]]), ["yes", "yes"])  # string targets
    out = m.compute()
    # Brier: (0.2^2 + 0.2^2 + 0.6^2 + 0.6^2) / 2 = 0.4 ; NLL: -(ln 0.8 + ln 0.4) / 2
    assert out["brier"] == pytest.approx(0.4, abs=1e-6)
    assert out["nll"] == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2, abs=1e-6)
    assert out["accuracy"] == 0.5
    assert out["confusion_matrix"] == [[1, 1], [0, 0]]  # rows true, columns predicted


def test_accumulation_equals_single_update() -> None:
    probs, target = random_batch(250, len(LABELS), seed=2)
    once = ClassificationMetrics(LABELS)
    once.update(probs, target)
    chunked = ClassificationMetrics(LABELS)
    for start in range(0, 250, 60):
        chunked.update(probs[start : start + 60], target[start : start + 60])
    a, b = once.compute(), chunked.compute()
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["per_class_f1"] == b["per_class_f1"]
    for k in ("accuracy", "macro_f1", "ece", "brier", "nll"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def test_two_instances_reset_and_clone_with_prefix() -> None:
    probs, target = random_batch(50, 3, seed=3)
    val = ClassificationMetrics(["a", "b", "c"], prefix="val_")
    test = val.clone(prefix="test_")
    val.update(probs, target)
    assert test.compute()["test_n"] == 0  # independent state
    assert math.isnan(test.compute()["test_accuracy"])
    assert val.compute()["val_n"] == 50
    val.reset()
    assert val.compute()["val_n"] == 0


def test_from_logits_equals_softmax_probs() -> None:
    g = torch.Generator().manual_seed(4)
    logits, target = torch.randn(40, 3, generator=g) * 3, torch.randint(0, 3, (40,), generator=g)
    a = ClassificationMetrics(["a", "b", "c"], from_logits=True)
    a.update(logits, target)
    b = ClassificationMetrics(["a", "b", "c"])
    b.update(logits.softmax(dim=1), target)
    for k in ("accuracy", "macro_f1", "ece", "brier", "nll"):
        assert a.compute()[k] == pytest.approx(b.compute()[k], abs=1e-5), k


@pytest.mark.parametrize(
    ("probs", "target", "needle"),
    [
        (torch.rand(4, 2), torch.zeros(4, dtype=torch.long), r"shape \[N, 3\]"),
        (torch.randn(4, 3) * 5, torch.zeros(4, dtype=torch.long), "from_logits"),
        (torch.full((4, 3), 0.5), torch.zeros(4, dtype=torch.long), "sum to 1"),
        (torch.full((4, 3), 1 / 3), torch.tensor([0, 1, 2, 3]), "target indices"),
        (torch.full((4, 3), 1 / 3), torch.zeros(3, dtype=torch.long), "4 probability rows but 3"),
        (torch.full((2, 3), 1 / 3), ["a", "zzz"], "unknown label"),
    ],
)
def test_bad_inputs_raise_clear_errors(probs: torch.Tensor, target: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ClassificationMetrics(["a", "b", "c"]).update(probs, target)


def test_bad_labels_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ClassificationMetrics(["only"])
    with pytest.raises(ValueError, match="duplicate"):
        ClassificationMetrics(["a", "a"])


def test_collection_agrees_with_metric_and_sklearn() -> None:
    probs, target = random_batch(200, len(LABELS), seed=5, absent=2)
    coll = classification_metrics(LABELS)
    coll.update(probs[:120], target[:120])
    coll.update(probs[120:], target[120:])
    got = coll.compute()
    ref = sklearn_reference(probs, target, len(LABELS))
    single = ClassificationMetrics(LABELS)
    single.update(probs, target)
    ours = single.compute()
    assert float(got["accuracy"]) == pytest.approx(ref["accuracy"], abs=1e-6)
    assert float(got["macro_f1"]) == pytest.approx(ref["macro_f1"], abs=1e-6)  # absent class counts as 0
    assert got["per_class_f1"].tolist() == pytest.approx(ref["per_class_f1"], abs=1e-6)
    assert got["confusion_matrix"].tolist() == ref["confusion_matrix"]
    assert float(got["ece"]) == pytest.approx(ours["ece"], abs=1e-6)
    val = coll.clone(prefix="val_")
    assert "val_accuracy" in val.compute()
