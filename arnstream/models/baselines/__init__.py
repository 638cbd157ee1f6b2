"""Baselines behind the same detector contract as ARN."""

from .ae import AutoEncoder
from .iforest import IsolationForest

__all__ = ["AutoEncoder", "IsolationForest"]
