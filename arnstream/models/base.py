"""The one detector contract every model follows (river/PyOD habits).

- The constructor stores hyper-parameters only, under the same names.
- `fit(X, y=None) -> self` learns; rows with y == 1 are labelled anomalies (weak supervision),
  every other row is treated as normal. Fitted state ends with `_`.
- `score(X) -> ndarray` is pure and higher means more anomalous; a record's score never
  depends on the other rows of its batch.
- Threshold logic lives here, once: `calibrate` picks the alert threshold on normal data
  for a target false-positive rate, `predict` applies it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ModelError

log = logging.getLogger(__name__)

# Normal rows above the threshold that calibration should see: with k of them the threshold's
# rate on fresh traffic is a Beta(k, n + 1 - k) draw, about +-1/sqrt(k) of the target (k = 1:
# below a tenth of its mean or above twice it, each about one time in ten)
MIN_EXCEEDANCES = 10


class Detector:
    name: ClassVar[str] = ""

    # ------------------------------------------------------------------ params
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names()}

    @classmethod
    def params_from_artifact(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments saved with an artifact, completed for parameters added since
        (their value then was not today's default)."""
        return params

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Cheap settings for the contract test suite."""
        return {}

    # --------------------------------------------------------------- contract
    def fit(self, X, y=None, *, feature_groups=None, X_val=None, y_val=None) -> "Detector":
        """Learn from X (normal rows, plus labelled anomalies where y == 1).

        feature_groups: (start, stop) column ranges of one-hot categorical fields.
        X_val/y_val: optional validation data. Without y_val, model selection never sees a
        labelled anomaly; with y_val, detectors that select checkpoints may use it.
        """
        X = self._check_matrix(X, "X")
        if y is not None:
            y = np.asarray(y).astype(np.int8).ravel()
            if len(y) != len(X):
                raise ModelError(f"y has {len(y)} labels for {len(X)} rows")
        if X_val is not None:
            X_val = self._check_matrix(X_val, "X_val", n_features=X.shape[1])
        groups = tuple((int(a), int(b)) for a, b in (feature_groups or ()))
        for a, b in groups:
            if not 0 <= a < b <= X.shape[1]:
                raise ModelError(f"feature group ({a}, {b}) is outside 0..{X.shape[1]}")
        self.n_features_in_ = X.shape[1]
        self.feature_groups_ = groups
        self._fit(X, y, X_val, None if y_val is None else np.asarray(y_val).astype(np.int8))
        return self

    def score(self, X) -> np.ndarray:
        self._check_fitted()
        X = self._check_matrix(X, "X", n_features=self.n_features_in_)
        return np.asarray(self._score(X), dtype=np.float64)

    def serving_scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function equal to `score` for a service's hot loop (subclasses may compile it)."""
        self._check_fitted()
        return self.score

    def alternative_scores(self, X) -> dict[str, np.ndarray]:
        """Other scorings of the same fitted model, for ablations (none by default)."""
        return {}

    def calibrate(self, X_normal, fpr: float = 0.001) -> float:
        """Set threshold_ so that a fraction `fpr` of these normal rows would alert."""
        if not 0.0 < fpr < 1.0:
            raise ModelError(f"target false-positive rate must be in (0, 1), got {fpr}")
        scores = self.score(X_normal)
        self.threshold_ = float(np.quantile(scores, 1.0 - fpr, method="higher"))
        self.threshold_fpr_ = float(fpr)
        if len(scores) * fpr < MIN_EXCEEDANCES:
            log.warning("alert threshold for a %g false-positive rate set on %d normal records, %d of them above it: "
                        "its rate on fresh traffic can be off by a factor of two or more (%d records give %d above); "
                        "calibrate on more normal traffic or raise training.target_fpr", fpr, len(scores),
                        int((scores > self.threshold_).sum()), int(np.ceil(MIN_EXCEEDANCES / fpr)), MIN_EXCEEDANCES)
        return self.threshold_

    def predict(self, X) -> np.ndarray:
        """True where the score exceeds the calibrated threshold."""
        if getattr(self, "threshold_", None) is None:
            raise ModelError(f"{type(self).__name__} has no threshold: call calibrate() first")
        return self.score(X) > self.threshold_

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, encoder_state: dict | None = None,
             metadata: dict | None = None) -> Path:
        from .serialization import save_detector

        self._check_fitted()
        return save_detector(self, Path(path), encoder_state=encoder_state, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        from .serialization import load_detector

        detector = load_detector(Path(path)).detector
        if not isinstance(detector, cls):
            raise ModelError(f"{path} holds a {type(detector).__name__}, not a {cls.__name__}")
        return detector

    # ------------------------------------------------------ subclass hooks
    def _fit(self, X: np.ndarray, y, X_val, y_val) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Fitted state as (arrays for safetensors, JSON-able dict)."""
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() first")

    @staticmethod
    def _check_matrix(X, what: str, n_features: int | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ModelError(f"{what} must be a 2-D matrix, got shape {X.shape}")
        if n_features is not None and X.shape[1] != n_features:
            raise ModelError(f"{what} has {X.shape[1]} features, the detector expects {n_features}")
        if len(X) and not np.isfinite(X).all():
            row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
            raise ModelError(f"{what} row {row} holds NaN or infinity")
        return X
