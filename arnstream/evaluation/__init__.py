"""Metrics and the paper's multi-run evaluation protocol."""

from .metrics import detection_metrics, mean_std
from .protocol import EvaluationSpec, RunResult, evaluate

__all__ = ["EvaluationSpec", "RunResult", "detection_metrics", "evaluate", "mean_std"]
