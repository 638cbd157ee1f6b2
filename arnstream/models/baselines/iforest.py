"""Isolation Forest baseline: scikit-learn fits the trees; scoring runs on exported arrays.

Scoring from plain arrays (children, feature, threshold, node sizes) is what lets the
fitted forest be saved as safetensors + JSON instead of a pickle; it reproduces
scikit-learn's score_samples exactly (a unit test checks it).
"""

from __future__ import annotations

import numpy as np

from ..base import Detector

EULER_GAMMA = 0.5772156649015329


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean path length of an unsuccessful BST search among n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForest(Detector):
    name = "iforest"

    def __init__(self, n_estimators: int = 100, max_samples: int = 256, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.seed = seed

    @classmethod
    def _unit_test_params(cls):
        return {"n_estimators": 30}

    def _fit(self, X, y, X_val, y_val) -> None:
        from sklearn.ensemble import IsolationForest as SkIsolationForest

        normal = X if y is None else X[y != 1]
        forest = SkIsolationForest(n_estimators=self.n_estimators,
                                   max_samples=min(self.max_samples, len(normal)),
                                   random_state=self.seed).fit(normal)
        self.max_samples_ = int(forest.max_samples_)
        trees = []
        for est, feats in zip(forest.estimators_, forest.estimators_features_):
            t = est.tree_
            feature = np.where(t.feature >= 0, np.asarray(feats)[np.maximum(t.feature, 0)], -1)
            trees.append((t.children_left.astype(np.int32), t.children_right.astype(np.int32),
                          feature.astype(np.int32), t.threshold.astype(np.float64),
                          t.n_node_samples.astype(np.int64)))
        self._pack(trees)

    def _pack(self, trees) -> None:
        """All trees into flat arrays with per-tree offsets (what gets saved)."""
        self.offsets_ = np.cumsum([0] + [len(t[0]) for t in trees]).astype(np.int64)
        self.left_, self.right_, self.feature_, self.threshold_nodes_, self.n_node_samples_ = (
            np.concatenate([t[i] for t in trees]) for i in range(5))
        self.depth_ = np.concatenate([_node_depths(t[0], t[1]) for t in trees])

    def _score(self, X: np.ndarray) -> np.ndarray:
        X = X.astype(np.float32)  # trees were grown on float32 thresholds
        n = len(X)
        total = np.zeros(n)
        rows = np.arange(n)
        for t in range(len(self.offsets_) - 1):
            base = self.offsets_[t]
            node = np.full(n, base, dtype=np.int64)
            while True:
                left = self.left_[node]
                internal = left >= 0
                if not internal.any():
                    break
                f = np.where(internal, self.feature_[node], 0)
                go_left = X[rows, f] <= self.threshold_nodes_[node]
                child = np.where(go_left, left, self.right_[node]) + base
                node = np.where(internal, child, node)
            total += self.depth_[node] + average_path_length(self.n_node_samples_[node])
        mean_depth = total / (len(self.offsets_) - 1)
        return 2.0 ** (-mean_depth / average_path_length(np.array([self.max_samples_]))[0])

    def _get_state(self):
        arrays = {"offsets": self.offsets_, "left": self.left_, "right": self.right_,
                  "feature": self.feature_, "threshold": self.threshold_nodes_,
                  "n_node_samples": self.n_node_samples_, "depth": self.depth_}
        return arrays, {"max_samples": self.max_samples_}

    def _set_state(self, arrays, meta) -> None:
        self.offsets_ = arrays["offsets"]
        self.left_, self.right_ = arrays["left"], arrays["right"]
        self.feature_, self.threshold_nodes_ = arrays["feature"], arrays["threshold"]
        self.n_node_samples_, self.depth_ = arrays["n_node_samples"], arrays["depth"]
        self.max_samples_ = int(meta["max_samples"])


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    depth = np.zeros(len(left), dtype=np.float64)
    for node in range(len(left)):  # children always come after their parent in sklearn trees
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return depth
