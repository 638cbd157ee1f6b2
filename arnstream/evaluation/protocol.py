"""The paper's evaluation protocol: several seeded runs of split -> fit -> score -> metrics.

Per run: a fresh paper split (seed + run), an encoder fitted on that run's training rows
only, a detector fitted on them (with the weak labels, if any), and a test set that is
shuffled and scored in one pass. Model selection sees validation *normals* only, unless
`select_with_labels` explicitly hands it the labelled validation set.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data import Dataset, paper_split
from ..features import RecordEncoder
from ..features.columns import take
from ..models import make_detector
from .metrics import detection_metrics, mean_std

log = logging.getLogger(__name__)


@dataclass
class EvaluationSpec:
    model: str = "arn-n"
    runs: int = 3
    seed: int = 0
    contamination: float = 0.0
    weak: float = 0.0
    select_with_labels: bool = False
    params: dict = field(default_factory=dict)  # detector constructor overrides


@dataclass
class RunResult:
    run: int
    seed: int
    auc: float
    auprc: float
    val_auc: float  # on the validation split: for choosing hyper-parameters, never the test set
    fit_seconds: float
    score_seconds: float
    sizes: dict
    n_features: int
    history: list = field(default_factory=list)
    alternatives: dict = field(default_factory=dict)  # other scorings: {name: {auc, val_auc}}


def evaluate(dataset: Dataset, spec: EvaluationSpec,
             on_run: Callable[[RunResult], None] | None = None,
             on_epoch: Callable[[int, object], None] | None = None) -> dict:
    results: list[RunResult] = []
    for run in range(spec.runs):
        seed = spec.seed + run
        split = paper_split(dataset.y, seed, spec.contamination, spec.weak)
        encoder = RecordEncoder(dataset.schema).fit(take(dataset.columns, split.train))
        X_train = encoder.transform(take(dataset.columns, np.concatenate([split.train, split.weak])))
        y_train = np.concatenate([np.zeros(len(split.train)), np.ones(len(split.weak))]).astype(np.int8)
        val = split.val if spec.select_with_labels else split.val[dataset.y[split.val] == 0]
        X_val = encoder.transform(take(dataset.columns, val))
        y_val = dataset.y[val] if spec.select_with_labels else None
        X_test = encoder.transform(take(dataset.columns, split.test))
        y_test = dataset.y[split.test]

        detector = make_detector(spec.model, **{"seed": seed, **spec.params})
        if on_epoch is not None and hasattr(detector, "epochs"):
            detector.progress = lambda record, run=run: on_epoch(run, record)
        groups = [(g.start, g.stop) for g in encoder.categorical_groups_]
        started = time.perf_counter()
        detector.fit(X_train, y_train, feature_groups=groups, X_val=X_val, y_val=y_val)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        scores = detector.score(X_test)
        score_seconds = time.perf_counter() - started
        metrics = detection_metrics(y_test, scores)
        X_val_all = encoder.transform(take(dataset.columns, split.val))
        val_auc = detection_metrics(dataset.y[split.val], detector.score(X_val_all))["auc"]
        alt_val = detector.alternative_scores(X_val_all)
        alternatives = {
            name: {**detection_metrics(y_test, alt_scores),
                   "val_auc": detection_metrics(dataset.y[split.val], alt_val[name])["auc"]}
            for name, alt_scores in detector.alternative_scores(X_test).items()
        }
        result = RunResult(run=run + 1, seed=seed, auc=metrics["auc"], auprc=metrics["auprc"],
                           val_auc=val_auc,
                           fit_seconds=round(fit_seconds, 3), score_seconds=round(score_seconds, 3),
                           sizes=split.sizes(dataset.y), n_features=X_train.shape[1],
                           history=getattr(detector, "history_", []), alternatives=alternatives)
        results.append(result)
        if on_run is not None:
            on_run(result)
    return {
        "dataset": {"name": dataset.name, "rows": len(dataset), "normal": dataset.n_normal,
                    "anomalous": dataset.n_anomalous, "fingerprint": dataset.fingerprint(),
                    "sources": dataset.sources},
        "spec": asdict(spec),
        "detector_params": make_detector(spec.model, **spec.params).get_params(),
        "runs": [asdict(r) for r in results],
        "summary": {"auc": mean_std(r.auc for r in results),
                    "auprc": mean_std(r.auprc for r in results),
                    "val_auc": mean_std(r.val_auc for r in results),
                    "fit_seconds": mean_std(r.fit_seconds for r in results),
                    "alternatives": {
                        name: {k: mean_std(r.alternatives[name][k] for r in results)
                               for k in ("auc", "auprc", "val_auc")}
                        for name in (results[0].alternatives if results else {})
                    }},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
