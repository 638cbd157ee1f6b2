"""Train a detector on a window of normal flow records and add it to the registry.

The same path serves `arnstream train --topic` (records read from Kafka) and `--data FILE`:
fit the encoder on the training part only, fit the detector, calibrate the alert threshold
on held-out normal records to the configured false-positive rate, save with the encoder,
the feature profile (for serve's "most atypical fields") and a model card.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .config import Config
from .errors import ConfigError, DataError
from .features import RecordEncoder
from .features.pipeline import derive
from .models import make_detector
from .models.arn import SCORE_MODES
from .models.base import MIN_EXCEEDANCES
from .registry import Registry
from .schema import FlowSchema

log = logging.getLogger(__name__)

MIN_RECORDS = 200
REFERENCE_MAX = 10_000  # declared-normal records kept per version: a 0.1% quantile of them sits on ten
HOLDOUT_SHARE = 0.1  # of a window, held out to calibrate the threshold: at least this ...
HOLDOUT_MAX_SHARE = 1 / 3  # ... and up to this where the false-positive rate wants more records


def holdout_share(n_records: int, fpr: float) -> float:
    """The share of a window to calibrate on: 10%, or, where that is too few records for the
    false-positive rate to leave MIN_EXCEEDANCES of them above the threshold with a tenth to
    spare (a window under 110,000 records at 0.1%), enough for that, up to a third."""
    wanted = 1.1 * MIN_EXCEEDANCES / (fpr * max(n_records, 1))
    return min(max(HOLDOUT_SHARE, wanted), HOLDOUT_MAX_SHARE)


@dataclass
class TrainResult:
    version: str
    promoted: bool
    n_train: int
    n_holdout: int
    n_rejected: int
    threshold: float
    holdout_fpr: float
    seconds: float


def train_on_records(records: Sequence[dict], schema: FlowSchema, cfg: Config, params: dict, *,
                     registry: Registry, source: dict, seed: int = 0, holdout: float | None = None,
                     promote: bool = True, progress: Callable | None = None,
                     anomalies: Sequence[dict] = (), derived: bool = False,
                     card_extra: dict | None = None, warm_start=None,
                     calibration: Sequence[dict] | None = None,
                     reference: Sequence[dict] | None = None) -> TrainResult:
    """Fit encoder + detector on `records` (normal traffic) and register the result.

    holdout: the share of `records` held out to calibrate the threshold (None: holdout_share).
    anomalies: analyst-labelled anomalous records, used as eq. 4 prescribes (the encoder is
    still fitted on normals only, and the threshold calibrated on held-out normals).
    derived: the records already carry their window features (the feedback store keeps them
    so); otherwise the schema's traffic windows are replayed over them in timestamp order.
    warm_start: a loaded artifact to continue training from (its encoder and weights), with
    `params` applied to it; without it, a fresh encoder and model.
    calibration: held-out normal records chosen by the caller (needs derived=True); the
    threshold is calibrated on them and no random share of `records` is held out.
    reference: the declared-normal records the version keeps (Registry.add; at most
    REFERENCE_MAX). By default the held-out share when `records` are declared normal (no
    `calibration`), and none when the caller chose the calibration records (retraining
    passes the model in use's reference on).
    """
    started = time.monotonic()
    if derived:
        records, not_windowed = [r for r in records if isinstance(r, dict)], []
    else:
        records, not_windowed = derive(_ordered(records, schema), schema)  # traffic windows, if any
    if len(records) < MIN_RECORDS:
        raise DataError(f"only {len(records)} training records; at least {MIN_RECORDS} are needed")
    if calibration is not None:
        if not derived:
            raise ValueError("calibration records must carry their window features (derived=True)")
        train, held = list(records), [r for r in calibration if isinstance(r, dict)]
    else:
        share = holdout_share(len(records), cfg.training.target_fpr) if holdout is None else holdout
        is_holdout = np.random.default_rng(seed).random(len(records)) < share
        train = [r for r, h in zip(records, is_holdout) if not h]
        held = [r for r, h in zip(records, is_holdout) if h]
    if not held:
        raise DataError("no held-out normal records to calibrate the alert threshold on")
    encoder = (RecordEncoder.from_dict(warm_start.encoder_state) if warm_start is not None
               else RecordEncoder(schema).fit(train))
    batch = encoder.transform_batch(train)
    held_batch = encoder.transform_batch(held)
    n_rejected = len(batch.rejected) + len(held_batch.rejected) + len(not_windowed)
    if n_rejected:
        first = (batch.rejected or held_batch.rejected or [not_windowed[0]])[0]
        log.warning("%d training records were invalid and skipped; first: %s", n_rejected, first)
    X, X_hold = batch.X, held_batch.X
    X_anom = encoder.transform_batch(list(anomalies)).X if len(anomalies) else X[:0]
    if warm_start is not None:
        detector = warm_start.detector
        kept = getattr(detector, "shape_params", ())
        for name, value in {"seed": seed, **params}.items():
            if name not in kept:
                setattr(detector, name, value)
            elif getattr(detector, name) != value:  # its weights have the model in use's shape
                log.info("warm start keeps the model in use's %s=%r (the config asks %r); "
                         "retrain.warm_start: false trains a new one", name, getattr(detector, name), value)
        detector.warm_start = True
    else:
        detector = make_detector(cfg.model.name, **{"seed": seed, **params})
    if progress is not None and hasattr(detector, "progress"):
        detector.progress = progress
    groups = [(g.start, g.stop) for g in encoder.categorical_groups_]
    y = np.r_[np.zeros(len(X)), np.ones(len(X_anom))].astype(np.int8) if len(X_anom) else None
    detector.fit(np.vstack([X, X_anom]) if len(X_anom) else X, y, feature_groups=groups, X_val=X_hold)
    threshold = detector.calibrate(X_hold, fpr=cfg.training.target_fpr)
    holdout_fpr = float((detector.score(X_hold) > threshold).mean())
    metadata = {"model": cfg.model.name, "schema": schema.name, "seed": seed, "source": source,
                "training_rows": int(len(X)), "holdout_rows": int(len(X_hold)),
                "feature_profile": {"mean": X.mean(axis=0).tolist(), "std": X.std(axis=0).tolist()}}
    card = {"model": cfg.model.name, "schema": schema.name, "source": source,
            "training_rows": int(len(X)), "holdout_rows": int(len(X_hold)), "threshold": threshold,
            "target_fpr": cfg.training.target_fpr, "holdout_fpr": holdout_fpr,
            "labelled_anomalies": int(len(X_anom)), "seconds": round(time.monotonic() - started, 2),
            **(card_extra or {})}
    if reference is None:
        reference = [held[i] for i in held_batch.rows] if calibration is None else ()
    version = registry.add(detector, encoder_state=encoder.to_dict(), metadata=metadata, card=card,
                           reference=evenly(list(reference), REFERENCE_MAX))
    if promote:
        registry.promote(version)
    return TrainResult(version, promote, len(X), len(X_hold), n_rejected, threshold, holdout_fpr,
                       time.monotonic() - started)


def evenly(items: list, most: int) -> list:
    """At most `most` of the items, spread evenly over them (not their first part). Exactly
    `most` where there are more: every other one of 11,000 would keep 5,500, too few for the
    retraining to calibrate a 0.1% threshold on."""
    if len(items) <= most:
        return items
    return [items[i * len(items) // most] for i in range(most)]


def model_param_names(cfg: Config) -> list[str]:
    """The constructor arguments of the configured model (none for an unknown name)."""
    from .models import PRESETS, detector_class

    return detector_class(PRESETS[cfg.model.name][0]).param_names() if cfg.model.name in PRESETS else []


def detector_params(cfg: Config) -> dict:
    """Constructor overrides from the config: model.params plus the training section."""
    params = dict(cfg.model.params)
    takes = model_param_names(cfg)
    for name, value in (("epochs", cfg.training.epochs), ("batch_size", cfg.training.batch_size),
                        ("device", cfg.runtime.device)):
        if name in takes:
            params.setdefault(name, value)
    return params


def alerting_params(cfg: Config) -> dict:
    """detector_params for a model that will raise alerts (train, fit, the demo, retraining):
    training.score_mode and training.discriminator_width too, unless model.params sets them.
    `evaluate` uses detector_params: the paper's protocol keeps the model's own defaults."""
    params = detector_params(cfg)
    # checked for every model: a typo must not pass silently because this model ignores the key
    if cfg.training.score_mode not in SCORE_MODES:
        raise ConfigError("training.score_mode", f"expected one of {SCORE_MODES}, got {cfg.training.score_mode!r}")
    takes = model_param_names(cfg)
    if "score_mode" in takes:
        params.setdefault("score_mode", cfg.training.score_mode)
    if "d_width" in takes and cfg.training.discriminator_width is not None:
        params.setdefault("d_width", cfg.training.discriminator_width)
    return params


def _ordered(records: Sequence[dict], schema: FlowSchema) -> list[dict]:
    """Timestamp order where the schema has a timestamp (windowed features need it)."""
    ts = schema.of_kind("timestamp")
    records = [r for r in records if isinstance(r, dict)]
    if ts is None:
        return list(records)
    return sorted(records, key=lambda r: _as_float(r.get(ts.name)))


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")
