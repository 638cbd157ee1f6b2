"""Detectors behind one contract. No Kafka, no Prometheus, no registry files in here."""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from .arn import ARN
from .base import Detector
from .baselines import AutoEncoder, IsolationForest

DETECTOR_CLASSES: dict[str, type[Detector]] = {c.name: c for c in (ARN, AutoEncoder, IsolationForest)}

# preset name -> (class name, constructor arguments)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "arn-n": ("arn", {"head": "numeric"}),
    "arn-g": ("arn", {"head": "gumbel"}),
    "arn-ge": ("arn", {"head": "gumbel", "objective": "elbo"}),
    "arn-n-nokl": ("arn", {"head": "numeric", "kl_weight": 0.0}),
    "arn-g-nokl": ("arn", {"head": "gumbel", "kl_weight": 0.0}),
    "ae": ("ae", {}),
    "iforest": ("iforest", {}),
}


def detector_class(name: str) -> type[Detector]:
    if name not in DETECTOR_CLASSES:
        raise ModelError(f"unknown detector class '{name}'; known: {sorted(DETECTOR_CLASSES)}")
    return DETECTOR_CLASSES[name]


def registry_name(detector: Detector) -> str:
    return type(detector).name


def make_detector(preset: str, **overrides: Any) -> Detector:
    """A detector from a preset name (`arn-n`, `iforest`, ...) with argument overrides."""
    if preset not in PRESETS:
        raise ModelError(f"unknown model '{preset}'; known: {', '.join(PRESETS)}")
    cls_name, args = PRESETS[preset]
    cls = detector_class(cls_name)
    params = {**args, **overrides}
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise ModelError(f"model '{preset}' has no parameter(s) {sorted(unknown)}; "
                         f"it takes {cls.param_names()}")
    return cls(**params)


__all__ = ["ARN", "AutoEncoder", "DETECTOR_CLASSES", "Detector", "IsolationForest", "PRESETS",
           "detector_class", "make_detector", "registry_name"]
