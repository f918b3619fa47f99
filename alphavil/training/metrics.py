"""Task metrics from predictions, as GLUE defines them (scikit-learn / scipy), in one
place so every setting reports the same format.

Classification always reports `acc`; `f1` (binary: of class 1, GLUE's MRPC/QQP; more
classes: macro average) and `mcc` (Matthews correlation, CoLA) when asked. Regression
(a one-output head) reports Pearson and Spearman correlation (STS-B).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean())


def f1(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    if num_classes == 2:
        return float(f1_score(gold, pred, average="binary", pos_label=1, zero_division=0.0))
    return float(f1_score(gold, pred, average="macro", labels=list(range(num_classes)),
                          zero_division=0.0))


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(gold, pred))


def _defined(r: float) -> float:
    # a constant prediction has no correlation; 0 (as sklearn's MCC does) keeps the
    # metrics JSON valid and ranks such a model where it belongs
    return 0.0 if r is None or math.isnan(r) else float(r)


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import pearsonr

    if np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0
    return _defined(pearsonr(pred, gold)[0])


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0
    return _defined(spearmanr(pred, gold)[0])


def score(logits: torch.Tensor, labels: torch.Tensor,
          extra: tuple[str, ...] | list[str] = ()) -> dict[str, float]:
    logits, labels = logits.cpu(), labels.cpu()  # scikit-learn and scipy read numpy
    if logits.shape[-1] == 1:
        pred = logits.squeeze(-1).double().numpy()
        gold = labels.double().numpy()
        return {"pearson": pearson(pred, gold), "spearman": spearman(pred, gold)}
    pred = logits.argmax(-1).numpy()
    gold = labels.numpy()
    out = {"acc": accuracy(pred, gold)}
    if "f1" in extra:
        out["f1"] = f1(pred, gold, logits.shape[-1])
    if "mcc" in extra:
        out["mcc"] = mcc(pred, gold)
    return out
