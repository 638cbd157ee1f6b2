import numpy as np
import orjson
import pytest

from arnstream.config import load_config
from arnstream.features import RecordEncoder
from arnstream.feedback import FeedbackStore, make_label, retrain, retrain_due
from arnstream.feedback.gate import run_gate
from arnstream.feedback.retrain import HELD_OUT_MAX, RetrainLock, split_labels, split_recent
from arnstream.feedback.store import LabelledRecord
from arnstream.registry import Registry
from arnstream.schema import FlowSchema
from arnstream.stream.simulator import FlowSimulator
from arnstream.trainer import train_on_records


def _cfg(tmp_path, **extra):
    return load_config(None, {}, {"model.name": "iforest", "model.params": {"n_estimators": 50},
                                  "registry.dir": str(tmp_path / "registry"),
                                  "feedback.store": str(tmp_path / "store.sqlite3"), **extra})


def _train(cfg, records, promote=True) -> str:
    return train_on_records(records, FlowSchema.load("flowsim"), cfg, dict(cfg.model.params),
                            registry=Registry(cfg.registry.dir), source={}, promote=promote).version


def test_labels_split_by_record_id_stably_and_each_class_gives_the_gate_one():
    labelled = [LabelledRecord(f"r{i}", i % 2, {}, 0.0) for i in range(40)]
    train, gate = split_labels(labelled, 0.3)
    assert len(train) + len(gate) == 40 and {0, 1} <= {x.y for x in gate}
    more = labelled + [LabelledRecord(f"s{i}", 1, {}, 0.0) for i in range(20)]
    _, gate_more = split_labels(more, 0.3)
    assert {x.record_id for x in gate} <= {x.record_id for x in gate_more}, "a held-out label stays held out"
    _, tiny_gate = split_labels([LabelledRecord("a", 1, {}, 0.0), LabelledRecord("b", 1, {}, 0.0)], 0.01)
    assert len(tiny_gate) == 1


def _in_order(shares):
    return [[r["i"] for r in share] for share in shares]


def test_recent_traffic_splits_into_disjoint_gate_calibration_and_training_shares():
    recent = [(f"r{i}", {"i": i}) for i in range(5000)]
    gate, calibration, train = split_recent(recent, normal_window=2000)
    ids = [{r["i"] for r in share} for share in (gate, calibration, train)]
    assert 850 < len(gate) < 1150 and 850 < len(calibration) < 1150 and len(train) == 2000
    assert not ids[0] & ids[1] and not (ids[0] | ids[1]) & ids[2]
    # newest first in: the training cap keeps the newest, every record left out comes later in `recent`
    left_out = set(range(5000)) - ids[0] - ids[1] - ids[2]
    assert min(left_out) > max(ids[2])
    # a record's share follows from its id, not from the order the store returned it in
    again = split_recent(recent[:3000][::-1] + recent[3000:], normal_window=2000)
    assert _in_order(again) == _in_order((gate, calibration, train))
    big_gate, big_cal, big_train = split_recent([(f"r{i}", {}) for i in range(40000)], normal_window=40000)
    assert len(big_gate) == len(big_cal) == HELD_OUT_MAX and 29000 < len(big_train) < 31000


def test_the_policy_retrains_after_k_labels_or_on_the_timer(tmp_path):
    store = FeedbackStore(tmp_path / "s.sqlite3")
    store.put_scored([(f"r{i}", "v0001", 0.1, False, b"{}") for i in range(5)], now=1.0)
    cfg = _cfg(tmp_path, **{"retrain.after_labels": 3, "retrain.every_s": None})
    assert retrain_due(cfg, store, now=100.0) is None  # the clock starts now
    for i in range(2):
        store.add_label(make_label(f"r{i}", "anomaly", "ana"), now=101.0)
    assert retrain_due(cfg, store, now=102.0) is None
    store.add_label(make_label("r2", "anomaly", "ana"), now=103.0)
    assert retrain_due(cfg, store, now=104.0) == "labels"
    timer = _cfg(tmp_path, **{"retrain.after_labels": None, "retrain.every_s": 50.0})
    assert retrain_due(timer, store, now=120.0) is None
    assert retrain_due(timer, store, now=151.0) == "timer"


@pytest.fixture
def served(tmp_path):
    """A promoted model and a store of records it scored, with the scan attacks labelled."""
    cfg = _cfg(tmp_path, **{"retrain.min_anomaly_labels": 2})
    train, _ = FlowSimulator(seed=0, prefix="train").batch(3000)
    first = _train(cfg, train)
    live, truth = FlowSimulator(seed=1, attacks=("scan",), attack_fraction=0.05, prefix="live").batch(3000)
    store = FeedbackStore(cfg.feedback.store)
    store.put_scored([(r["flow_id"], first, 0.1, False, orjson.dumps(r)) for r in live])
    yield cfg, store, first, live, truth
    store.close()


def test_retraining_is_skipped_without_enough_labelled_anomalies_and_says_why(served):
    cfg, store, first, _, _ = served
    outcome = retrain(cfg, store, Registry(cfg.registry.dir))
    assert outcome.outcome == "skipped" and "retrain.min_anomaly_labels" in outcome.detail
    [event] = [e for e in Registry(cfg.registry.dir).history() if e["event"] == "retrain"]
    assert event["outcome"] == "skipped" and event["counts"]["labelled_anomalies"] == 0


def test_a_second_retraining_is_skipped_while_one_holds_the_lock(served):
    cfg, store, _, _, _ = served
    registry = Registry(cfg.registry.dir)
    lock = RetrainLock(registry)
    assert lock.acquire()
    try:
        outcome = retrain(cfg, store, registry)
        assert outcome.outcome == "skipped" and "holds" in outcome.detail
    finally:
        lock.release()


def test_a_candidate_is_registered_gated_and_the_decision_kept_in_history(served):
    cfg, store, first, live, truth = served
    scans = [r["flow_id"] for r, t in zip(live, truth) if t == "scan"][:10]
    for rid in scans:
        store.add_label(make_label(rid, "anomaly", "ana"))
    registry = Registry(cfg.registry.dir)
    outcome = retrain(cfg, store, registry)
    assert outcome.outcome in ("promoted", "rejected") and outcome.candidate == "v0002"
    assert outcome.counts["labelled_anomalies"] + outcome.counts["gate_anomalies"] == 10
    assert outcome.gate.n_positive == outcome.counts["gate_anomalies"] >= 1
    event = [e for e in registry.history() if e["event"] == "retrain"][-1]
    assert event["candidate"] == "v0002" and event["gate"]["candidate"]["auc"] == outcome.gate.candidate["auc"]
    card = registry.list()[-1].card
    assert card["retrained_from"] == first
    # the threshold is calibrated on the held-out share of recent traffic, none of which trained
    assert card["holdout_rows"] == outcome.counts["calibration_normals"] > 0
    assert card["training_rows"] == outcome.counts["recent_normals"] + 10 * outcome.counts["confirmed_normals"]
    assert (registry.current() == "v0002") == (outcome.outcome == "promoted")


def _clean_and_contaminated(tmp_path, attack: str):
    """A model trained on clean traffic (promoted) and one whose training traffic was 30% `attack`."""
    cfg = _cfg(tmp_path)
    clean, _ = FlowSimulator(seed=0, prefix="clean").batch(3000)
    mixed, _ = FlowSimulator(seed=2, attacks=(attack,), attack_fraction=0.3, prefix="mixed").batch(3000)
    registry = Registry(cfg.registry.dir)
    return registry.load(_train(cfg, clean)), registry.load(_train(cfg, mixed, promote=False))


def test_the_gate_rejects_a_candidate_that_ranks_labelled_anomalies_worse(tmp_path):
    good, bad = _clean_and_contaminated(tmp_path, "scan")
    probe, truth = FlowSimulator(seed=3, attacks=("scan",), attack_fraction=0.2, prefix="probe").batch(2000)
    positives = [r for r, t in zip(probe, truth) if t == "scan"][:20]
    negatives = [r for r, t in zip(probe, truth) if t == "normal"]
    kwargs = dict(auc_tolerance=0.01, fpr_tolerance=0.005, target_fpr=0.001)
    report = run_gate(bad, good, positives, negatives[:50], negatives[50:], **kwargs)
    assert not report.passed and any("AUC" in r for r in report.reasons)
    assert report.candidate["auc"] < report.current["auc"]
    assert run_gate(good, good, positives, negatives[:50], negatives[50:], **kwargs).passed


def test_a_retraining_cancelled_between_epochs_registers_nothing(served):
    from arnstream.feedback.retrain import RetrainCancelled

    cfg, store, first, live, truth = served
    for r in [r for r, t in zip(live, truth) if t == "scan"][:6]:
        store.add_label(make_label(r["flow_id"], "anomaly", "ana"))
    arn = load_config(None, {}, {"model.name": "arn-n", "retrain.epochs": 3, "training.batch_size": 256,
                                 "runtime.device": "cpu", "registry.dir": cfg.registry.dir,
                                 "retrain.min_anomaly_labels": 2})

    def stop_after_first(record):
        raise RetrainCancelled(f"stopping after epoch {record.epoch}")

    registry = Registry(cfg.registry.dir)
    outcome = retrain(arn, store, registry, progress=stop_after_first)
    assert outcome.outcome == "cancelled" and "epoch 1" in outcome.detail
    assert [v.name for v in registry.list()] == [first] and registry.current() == first
    lock = RetrainLock(registry)
    assert lock.acquire(), "the lock is released after a cancellation"
    lock.release()


def test_the_gate_rejects_a_candidate_that_stops_raising_the_current_models_alerts(tmp_path):
    current, forgetful = _clean_and_contaminated(tmp_path, "synflood")
    probe, truth = FlowSimulator(seed=3, attacks=("scan", "synflood"), attack_fraction=0.3, prefix="p").batch(3000)
    scans = [r for r, t in zip(probe, truth) if t == "scan"][:20]  # the labelled, held-out evidence
    floods = [r for r, t in zip(probe, truth) if t == "synflood"]  # what the current model alerts on
    normals = [r for r, t in zip(probe, truth) if t == "normal"]
    kwargs = dict(auc_tolerance=1.0, fpr_tolerance=1.0, target_fpr=0.001, min_alert_recall=0.9)
    report = run_gate(forgetful, current, scans, normals[:50], normals[50:], alerts=floods, **kwargs)
    assert report.current["alert_recall"] > 0.9 > report.candidate["alert_recall"]
    assert not report.passed and any("recent alerts" in r for r in report.reasons)
    assert run_gate(current, current, scans, normals[:50], normals[50:], alerts=floods, **kwargs).passed


def test_a_warm_start_continues_from_the_current_model_and_leaves_it_untouched(tmp_path):
    cfg = load_config(None, {}, {"model.name": "arn-n", "training.epochs": 2, "training.batch_size": 256,
                                 "runtime.device": "cpu", "registry.dir": str(tmp_path / "registry"),
                                 "retrain.warm_start": True, "retrain.epochs": 1, "retrain.min_anomaly_labels": 1})
    train, _ = FlowSimulator(seed=0, prefix="train").batch(2000)
    first = _train_arn(cfg, train)
    live, truth = FlowSimulator(seed=1, attacks=("beacon",), attack_fraction=0.05, prefix="live").batch(2000)
    store = FeedbackStore(tmp_path / "store.sqlite3")
    store.put_scored([(r["flow_id"], first, 0.1, False, orjson.dumps(r)) for r in live])
    for r in [r for r, t in zip(live, truth) if t == "beacon"][:8]:
        store.add_label(make_label(r["flow_id"], "anomaly", "ana"))
    registry = Registry(cfg.registry.dir)
    before = registry.load(first).detector.score(np.zeros((1, registry.load(first).detector.n_features_in_)))
    outcome = retrain(cfg, store, registry)
    store.close()
    candidate, current = registry.load(outcome.candidate), registry.load(first)
    assert candidate.encoder_state == current.encoder_state  # the same input layout, so the same weights fit
    assert current.detector.score(np.zeros((1, current.detector.n_features_in_))) == pytest.approx(before)
    # for contrast: a retraining from scratch would fit its encoder to the new window
    assert RecordEncoder(FlowSchema.load("flowsim")).fit(live).to_dict() != current.encoder_state


def _train_arn(cfg, records) -> str:
    from arnstream.trainer import detector_params

    return train_on_records(records, FlowSchema.load("flowsim"), cfg, detector_params(cfg),
                            registry=Registry(cfg.registry.dir), source={}).version
