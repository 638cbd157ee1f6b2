"""The paper's split protocol (section IV-B2), one seeded draw per run.

Normals: 80% train, 15% test, 5% validation. Anomalies: half of them are drawn for the run
and split 75% test / 25% validation; the other half is the pool that contamination and
weak labels draw from, so neither ever leaks a test or validation anomaly into training.
- contamination p: round(p * n_train_normals) pool anomalies join the training set
  unlabelled, as if they were normal;
- weak w: round(w * n_anomalies) pool anomalies join the training set labelled anomalous.
Test and validation index arrays are shuffled: no evaluation ever sees normals first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # rows the detector treats as normal (normals + contamination)
    weak: np.ndarray  # rows given to the detector labelled anomalous
    val: np.ndarray  # normals and anomalies, shuffled
    test: np.ndarray  # normals and anomalies, shuffled
    contamination: np.ndarray  # the anomalous rows hidden in `train`

    def sizes(self, y: np.ndarray) -> dict:
        def count(idx):
            return {"normal": int((y[idx] == 0).sum()), "anomalous": int((y[idx] == 1).sum())}

        return {"train": count(self.train), "weak": count(self.weak), "val": count(self.val),
                "test": count(self.test)}


def paper_split(y: np.ndarray, seed: int, contamination: float = 0.0, weak: float = 0.0) -> Split:
    y = np.asarray(y)
    if not 0.0 <= contamination < 1.0:
        raise DataError(f"contamination must be in [0, 1), got {contamination}")
    if not 0.0 <= weak < 1.0:
        raise DataError(f"weak must be in [0, 1), got {weak}")
    rng = np.random.default_rng(seed)
    normals = rng.permutation(np.flatnonzero(y == 0))
    anomalies = rng.permutation(np.flatnonzero(y == 1))
    if len(normals) < 20 or len(anomalies) < 4:
        raise DataError(f"too few rows to split: {len(normals)} normal, {len(anomalies)} anomalous")
    n_train = int(round(0.80 * len(normals)))
    n_test = int(round(0.15 * len(normals)))
    train_n, test_n, val_n = np.split(normals, [n_train, n_train + n_test])

    drawn, pool = np.split(anomalies, [len(anomalies) // 2])
    n_test_a = int(round(0.75 * len(drawn)))
    test_a, val_a = drawn[:n_test_a], drawn[n_test_a:]

    n_cont = int(round(contamination * len(train_n)))
    n_weak = int(round(weak * len(anomalies)))
    if n_cont + n_weak > len(pool):
        raise DataError(
            f"contamination {contamination} and weak {weak} need {n_cont} + {n_weak} anomalies, "
            f"but only {len(pool)} are outside the test and validation sets"
        )
    cont, weak_idx = pool[:n_cont], pool[n_cont : n_cont + n_weak]
    return Split(
        train=rng.permutation(np.concatenate([train_n, cont])),
        weak=weak_idx,
        val=rng.permutation(np.concatenate([val_n, val_a])),
        test=rng.permutation(np.concatenate([test_n, test_a])),
        contamination=cont,
    )
