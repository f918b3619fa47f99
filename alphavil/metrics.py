"""Task metrics from predictions (accuracy for classification; GLUE's extra metrics live
in one place here so every setting reports the same format)."""

from __future__ import annotations

import torch


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if logits.shape[-1] == 1:
        from scipy.stats import pearsonr, spearmanr

        pred = logits.squeeze(-1).double().numpy()
        gold = labels.double().numpy()
        return {"pearson": float(pearsonr(pred, gold)[0]),
                "spearman": float(spearmanr(pred, gold)[0])}
    pred = logits.argmax(-1)
    return {"acc": float((pred == labels).double().mean())}
