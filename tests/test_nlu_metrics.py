"""GLUE metrics against values computed by hand, and the report's metric choice."""

import math

import pytest
import torch

from alphavil.training.metrics import score
from alphavil.report import primary_metric


def _logits(pred, classes):
    return torch.nn.functional.one_hot(torch.tensor(pred), classes).float()


def test_binary_accuracy_f1_and_matthews():
    # TP=2 (0, 4), FP=1 (1), FN=1 (3), TN=1 (2)
    s = score(_logits([1, 1, 0, 0, 1], 2), torch.tensor([1, 0, 0, 1, 1]), ("f1", "mcc"))
    assert s["acc"] == pytest.approx(3 / 5)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))           # 2TP / (2TP+FP+FN)
    assert s["mcc"] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))  # 1/6


def test_multiclass_f1_is_the_macro_average():
    # per class F1: 1, 2/3 (P=1, R=1/2), 2/3 (P=1/2, R=1)
    s = score(_logits([0, 1, 2, 2], 3), torch.tensor([0, 1, 1, 2]), ("f1", "mcc"))
    assert s["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert s["acc"] == pytest.approx(3 / 4)


def test_regression_pearson_and_spearman():
    pred = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    s = score(pred, torch.tensor([1.0, 2.0, 3.0, 5.0]))
    # deviations (-1.5, -.5, .5, 1.5) and (-1.75, -.75, .25, 2.25)
    assert s["pearson"] == pytest.approx(6.5 / math.sqrt(5 * 8.75))
    assert s["spearman"] == pytest.approx(1.0)
    s = score(pred, torch.tensor([1.0, 3.0, 2.0, 4.0]))
    assert s["spearman"] == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))  # 1 - 6Σd²/(n(n²-1))


def test_degenerate_predictions_score_zero_not_nan():
    s = score(torch.ones(4, 1), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert s == {"pearson": 0.0, "spearman": 0.0}
    s = score(_logits([1, 1, 1, 1], 2), torch.tensor([0, 1, 0, 1]), ("mcc",))
    assert s["mcc"] == 0.0


def test_vision_scores_are_unchanged_by_default():
    assert set(score(_logits([0, 1], 2), torch.tensor([0, 0]))) == {"acc"}


def test_report_uses_the_declared_metric():
    record = {"dev": {"loss": 1.0, "acc": 0.5, "f1": 0.4, "mcc": 0.1}}
    assert primary_metric(record) == "acc"
    assert primary_metric(record, "mcc") == "mcc"
    with pytest.raises(ValueError, match="pearson"):
        primary_metric(record, "pearson")
