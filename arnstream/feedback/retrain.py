"""Retraining with analyst feedback: build the training set, train a candidate, gate it.

Training set: the most recent records the serving model did not flag and no analyst
labelled (`retrain.normal_window`), less those it found suspect (_clearly_normal), plus
analyst-confirmed normals (false positives, the most valuable normals: counted
`confirmed_normal_repeat` times), plus the labelled anomalies, which the detector uses as
eq. 4 prescribes (weighted by `weak_weight`).

Labels are split by record id into training and gate shares (in hash order: see
split_labels). Recent traffic is split too, by record-id hash (split_recent): a share for
the gate, the rest trains. The candidate's alert threshold is calibrated on the model in
use's declared-normal reference records (kept with each version since a window declared
normal trained its ancestor: Registry.add), and the gate cross-fits the false-positive
rate that calibration gives on them (gate.cross_fitted_fpr). Not on recent traffic: that
holds every attack nobody labelled, above all unlabelled instances of the very class the
labels teach, and a 0.1% quantile of it lands among them (measured: a candidate ranking
every attack at AUC 0.999-1.000 alerted on none; docs/feedback.md). Only a model in use
without reference records (or none at all) has its candidate calibrated on a share of
recent traffic instead. The gate also judges with the model's recent unlabelled alerts
(which never train anything).
The candidate is registered unpromoted, the gate (gate.py) decides, and the decision with
its numbers goes to the log, the registry's history and the caller (which counts it in
`arnstream_retrain_total{outcome}`).

One retraining at a time per registry: an exclusive lock file in the registry directory, so
serve replicas (and an on-demand `arnstream retrain`) never train into it concurrently.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..errors import ArnstreamError
from ..features import RecordEncoder
from ..registry import Registry
from ..schema import FlowSchema
from ..trainer import alerting_params, model_param_names, train_on_records
from .gate import GateReport, run_gate, score_records
from .store import FeedbackStore, LabelledRecord

log = logging.getLogger(__name__)

LOCK_FILE = ".retrain.lock"
LAST_RETRAIN = "last_retrain_at"
HELD_OUT_EVERY = 5  # one recent record in five (by id hash) goes to the gate (one more to calibration
# when the model in use keeps no reference records)
HELD_OUT_MAX = 5000  # per held-out share
CLEAR_NORMAL_QUANTILE = 0.99  # training normals: recent records the model in use scores below this
# quantile of its scores on the reference (suspects near its threshold, e.g. missed floods, do not train)
MIN_REFERENCE = 100  # fewer reference records than this cannot place a threshold


class RetrainCancelled(ArnstreamError):
    """Raised from the progress callback to stop a retraining between epochs (shutdown)."""


@dataclass
class RetrainOutcome:
    outcome: str  # promoted | rejected | skipped | cancelled | failed
    trigger: str
    detail: str
    candidate: str | None = None
    current: str | None = None
    gate: GateReport | None = None
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0


class RetrainLock:
    """An exclusive, non-blocking flock on <registry>/.retrain.lock (released by the OS if we die)."""

    def __init__(self, registry: Registry):
        registry.root.mkdir(parents=True, exist_ok=True)
        self.path = registry.root / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def retrain_due(cfg: Config, store: FeedbackStore, now: float | None = None) -> str | None:
    """The policy: "labels" after `after_labels` new or changed labels, "timer" every `every_s`."""
    now = time.time() if now is None else now
    last = store.get_meta(LAST_RETRAIN)
    if last is None:  # the clock starts when feedback starts, not at the epoch
        store.set_meta(LAST_RETRAIN, repr(now))
        last = now
    last = float(last)
    r = cfg.retrain
    if r.after_labels and store.labels_since(last) >= r.after_labels:
        return "labels"
    if r.every_s and now - last >= r.every_s:
        return "timer"
    return None


def split_labels(labelled: list[LabelledRecord], gate_fraction: float) -> tuple[list, list]:
    """(train, gate) per class, in the order of a hash of the record id.

    The gate takes every label whose hash falls below `gate_fraction` (so such a label stays
    held out as labels accumulate) and, if that is short of the fraction, the next ones in
    hash order; each class with two or more labels gives it at least one and keeps one.
    """
    train, gate = [], []
    for y in (0, 1):
        group = sorted((r for r in labelled if r.y == y), key=lambda r: _unit_hash(r.record_id))
        below = sum(1 for r in group if _unit_hash(r.record_id) < gate_fraction)
        n_held = max(below, math.ceil(gate_fraction * len(group))) if gate_fraction > 0 else 0
        n_held = min(n_held, len(group) - 1) if len(group) >= 2 else 0
        gate += group[:n_held]
        train += group[n_held:]
    return train, gate


def split_recent(recent: list[tuple[str, dict]], normal_window: int,
                 calibrate: bool = True) -> tuple[list, list, list]:
    """(gate, calibration, training) shares of recent unflagged (record id, record) pairs,
    newest first; each share is returned in record-id hash order.

    A record's share follows from a hash of its id (one in HELD_OUT_EVERY to the gate, one to
    threshold calibration unless `calibrate` is false, up to HELD_OUT_MAX each, beyond which
    they train; the rest train, at most `normal_window`), not from its position: the shares,
    and so the candidate, do not depend on the order in which partitions happened to reach
    the store (measured: split by position, five runs of the integration test on the same
    traffic gave fresh-traffic rates of either 0.0000-0.0001 or 0.0055-0.0056, as its two
    partitions happened to interleave), and a record held out once stays held out when the
    next retraining's window overlaps.
    The calibration share (used only when the model in use keeps no reference records) is
    recent traffic only (no repeated confirmed normals) and large: the threshold sits at the
    1 - target_fpr quantile, which a few hundred rows cannot place (measured: with a random
    10% of ~6,400 the rate on fresh traffic reached 0.0093 against a 0.001 target;
    docs/feedback.md).
    """
    shares: tuple[list, list, list] = ([], [], [])
    caps = (HELD_OUT_MAX, HELD_OUT_MAX, normal_window)
    for record_id, record in recent:
        h = _unit_hash(record_id)
        slot = min(int(h * HELD_OUT_EVERY), 2)  # 0 gate, 1 calibration, 2.. training
        if slot == 1 and not calibrate:
            slot = 2
        if slot < 2 and len(shares[slot]) >= caps[slot]:
            slot = 2  # a full held-out share: the record trains
        if len(shares[slot]) < caps[slot]:
            shares[slot].append((h, record))
    gate, calibration, train = ([record for _, record in sorted(share, key=lambda x: x[0])] for share in shares)
    return gate, calibration, train


def _clearly_normal(current, records: list[dict], reference: list[dict]) -> tuple[list[dict], int]:
    """The records the model in use scores below its CLEAR_NORMAL_QUANTILE on clean reference
    traffic, and how many were left out. Unflagged is not normal: an attack the model in use
    scored just under its threshold would otherwise train the candidate to call it normal."""
    cut = float(np.nanquantile(score_records(current, reference), CLEAR_NORMAL_QUANTILE))
    scores = score_records(current, records)
    keep = [r for r, s in zip(records, scores) if s <= cut]  # NaN (unreadable for it) left out too
    return keep, len(records) - len(keep)


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def retrain(cfg: Config, store: FeedbackStore, registry: Registry, *, trigger: str = "manual",
            seed: int = 0, progress: Callable | None = None, invert_labels: bool = False) -> RetrainOutcome:
    """Train a candidate from feedback and promote it only if it passes the gate.

    invert_labels flips every analyst label the candidate trains on (not those the gate holds
    out): a deliberately bad candidate, for drills and for the test that proves the gate
    rejects one.
    """
    started = time.monotonic()
    lock = RetrainLock(registry)
    if not lock.acquire():
        return RetrainOutcome("skipped", trigger, f"another retraining holds {lock.path}")
    try:
        store.set_meta(LAST_RETRAIN, repr(time.time()))
        outcome = _retrain_locked(cfg, store, registry, trigger, seed, progress, invert_labels)
    except RetrainCancelled as exc:
        outcome = RetrainOutcome("cancelled", trigger, str(exc))
    except ArnstreamError as exc:
        outcome = RetrainOutcome("failed", trigger, str(exc))
    except Exception as exc:  # noqa: BLE001  a crash in training must not end serve's feedback thread
        log.exception("retraining crashed")
        outcome = RetrainOutcome("failed", trigger, f"{type(exc).__name__}: {exc}")
    finally:
        lock.release()
    outcome.seconds = round(time.monotonic() - started, 2)
    registry.log_event({"event": "retrain", "outcome": outcome.outcome, "trigger": trigger,
                        "candidate": outcome.candidate, "current": outcome.current, "detail": outcome.detail,
                        "counts": outcome.counts, "gate": outcome.gate.as_dict() if outcome.gate else None,
                        "seconds": outcome.seconds})
    level = logging.INFO if outcome.outcome in ("promoted", "skipped") else logging.WARNING
    log.log(level, "retrain (%s): %s: %s", trigger, outcome.outcome, outcome.detail)
    return outcome


def _retrain_locked(cfg, store, registry, trigger, seed, progress, invert_labels) -> RetrainOutcome:
    r = cfg.retrain
    current_name = registry.current()
    current = registry.load(current_name) if current_name else None
    train_labels, gate_labels = split_labels(store.labelled(), r.gate_fraction)
    if invert_labels:  # training only: the gate still judges against the analysts' labels
        train_labels = [LabelledRecord(x.record_id, 1 - x.y, x.record, x.received_at) for x in train_labels]
    anomalies = [x.record for x in train_labels if x.y == 1]
    confirmed = [x.record for x in train_labels if x.y == 0]
    reference = registry.reference(current_name) if current_name else []
    calibrate_on_recent = len(reference) < MIN_REFERENCE
    if calibrate_on_recent:
        log.warning("model %s keeps %d declared-normal reference records (fewer than %d): the candidate's "
                    "threshold is calibrated on recent unflagged traffic, which holds the attacks nobody "
                    "labelled; train a model on a normal window (`arnstream train`) to fix that",
                    current_name or "(none in use)", len(reference), MIN_REFERENCE)
        reference = []
    held_out = 2 if calibrate_on_recent else 1  # recent shares held out of training: gate (+ calibration)
    # enough for normal_window training rows once the held-out shares are taken
    wanted = min(r.normal_window * HELD_OUT_EVERY // (HELD_OUT_EVERY - held_out),
                 r.normal_window + held_out * HELD_OUT_MAX)
    gate_recent, calibration, train_recent = split_recent(store.recent_unflagged(wanted), r.normal_window,
                                                          calibrate=calibrate_on_recent)
    if not calibrate_on_recent:
        calibration = reference
    n_suspect = 0
    if reference:
        train_recent, n_suspect = _clearly_normal(current, train_recent, reference)
    gate_alerts = [record for _, record in store.recent_flagged(HELD_OUT_MAX)]  # never train: all judge
    alert_span = store.alert_span(HELD_OUT_MAX)  # now: serve goes on scoring while the candidate trains
    counts = {"recent_normals": len(train_recent), "suspect_normals_left_out": n_suspect,
              "calibration_normals": len(calibration),
              "calibrated_on": "recent" if calibrate_on_recent else "reference",
              "confirmed_normals": len(confirmed),
              "labelled_anomalies": len(anomalies), "gate_anomalies": sum(x.y for x in gate_labels),
              "gate_normals": sum(1 - x.y for x in gate_labels), "gate_recent": len(gate_recent),
              "gate_alerts": len(gate_alerts)}
    base = RetrainOutcome("skipped", trigger, "", current=current_name, counts=counts)
    if len(anomalies) < r.min_anomaly_labels:
        base.detail = (f"{len(anomalies)} labelled anomalies for training; at least "
                       f"{r.min_anomaly_labels} are needed (retrain.min_anomaly_labels)")
        return base
    schema = (RecordEncoder.from_dict(current.encoder_state).schema if current is not None
              else FlowSchema.load(cfg.serve.schema))
    params = alerting_params(cfg)
    if r.epochs:
        params["epochs"] = r.epochs
    if "weak_weight" in model_param_names(cfg):
        params["weak_weight"] = r.weak_weight
    params.update(r.params)
    result = train_on_records(train_recent + confirmed * r.confirmed_normal_repeat, schema, cfg, params,
                              registry=registry, seed=seed, promote=False, progress=progress,
                              anomalies=anomalies, derived=True, calibration=calibration, reference=reference,
                              # a second copy: training it must not change the `current` the gate judges by
                              warm_start=registry.load(current_name) if r.warm_start and current else None,
                              source={"kind": "feedback", "trigger": trigger, **counts},
                              card_extra={"retrained_from": current_name})
    candidate = registry.load(result.version)
    report = run_gate(candidate, current, [x.record for x in gate_labels if x.y == 1],
                      [x.record for x in gate_labels if x.y == 0], gate_recent,
                      auc_tolerance=r.auc_tolerance, fpr_tolerance=r.fpr_tolerance,
                      target_fpr=cfg.training.target_fpr, max_new_alert_rate=r.max_new_alert_rate,
                      alerts=gate_alerts, min_alert_recall=r.min_alert_recall, reference=reference,
                      alert_span=alert_span)
    base.candidate, base.gate = result.version, report
    if report.passed:
        registry.promote(result.version)
        base.outcome, base.detail = "promoted", f"{result.version} promoted: {report.summary()}"
    else:
        base.outcome = "rejected"
        base.detail = (f"{result.version} rejected ({'; '.join(report.reasons)}), {current_name} stays: "
                       f"{report.summary()}")
    return base
