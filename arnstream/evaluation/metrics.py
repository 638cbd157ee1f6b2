"""Detection metrics and their summaries."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def detection_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC and AUPRC (anomaly = positive class) of one scored test set."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) != 2:
        raise ValueError("the test set needs both normal and anomalous rows")
    return {"auc": float(roc_auc_score(y_true, scores)),
            "auprc": float(average_precision_score(y_true, scores))}


def mean_std(values) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    v = np.asarray(list(values), dtype=np.float64)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()) if len(v) else math.nan, "std": std, "n": int(len(v))}
