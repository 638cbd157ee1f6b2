"""The feedback loop on the real embedded broker: labels in, retraining, the validation gate.

The first model is trained on normal traffic only; live traffic carries `beacon` attacks
(small fixed-size HTTPS check-ins, every value inside normal ranges), which it ranks below
normal traffic. Analysts label 14 beacons and triage the false alarms; the policy retrains;
the candidate must pass the gate, be picked up by serve, and rank beacons far better on
fresh traffic; a candidate trained on inverted labels must be rejected; `models rollback`
must bring the first model back into serve.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import orjson

from arnstream.config import MAX_RECORD_BYTES
from arnstream.feedback import FeedbackStore, make_label, retrain
from arnstream.feedback.gate import score_records
from arnstream.registry import Registry
from arnstream.stream.client import open_producer
from arnstream.stream.scoring import FIELD_HEADER, REASON_HEADER
from arnstream.stream.simulator import FlowSimulator, produce

from .conftest import Collected, ServeThread, create_topics, make_config

# "far better": the labels remove at least two thirds of the beacons' ranking error (1 - AUC)
# and reach 0.9. Measured: 0.38 -> 0.94 with one discriminator, 0.71 -> 0.93 with the ensemble;
# since 2026-11-30 (reference calibration, combined score for both models) 0.598 -> 0.915; with
# the `either` score (the default since that evening) 0.594 -> 0.950; with its label head 0.594 -> 0.999
# (recall at the threshold still 0: ~600 reference records put it at their top two; docs/feedback.md)
ERROR_SHARE_LEFT = 1 / 3
MIN_AUC_AFTER = 0.9
FPR_TOLERANCE = 0.005


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def _fresh_beacon_quality(artifact) -> tuple[float, float, float]:
    """AUC of beacons against normals, the false-positive rate and beacon recall, on traffic no
    model saw (20,000 records: at a 0.001 target a few thousand normals cannot tell 0.002 from 0.005)."""
    records, truth = FlowSimulator(seed=99, attacks=("beacon",), attack_fraction=0.1, prefix="fresh").batch(20000)
    y = np.array([t == "beacon" for t in truth])
    scores = score_records(artifact, records)
    alerts = scores > artifact.detector.threshold_
    return _auc(y, scores), float(alerts[~y].mean()), float(alerts[y].mean())


def _send(cfg, topic: str, values: list[bytes]) -> None:
    producer = open_producer(cfg.kafka)
    try:
        for v in values:
            producer.send(topic, v)
        producer.flush()
    finally:
        producer.close()


def _produce_live(cfg, n: int, seed: int, prefix: str) -> tuple[list[str], list[str]]:
    ids, truth = [], []

    def keep(records, labels):
        ids.extend(r["flow_id"] for r in records)
        truth.extend(labels)

    producer = open_producer(cfg.kafka)
    try:
        produce(producer, cfg.topics.live,
                FlowSimulator(seed=seed, attacks=("beacon",), attack_fraction=0.01, prefix=prefix),
                total=n, on_batch=keep)
    finally:
        producer.close()
    return ids, truth


def test_labels_retrain_a_better_model_and_the_gate_rejects_a_bad_one(broker, model_registry, tmp_path):
    registry_dir = tmp_path / "registry"
    shutil.copytree(model_registry, registry_dir)  # this test promotes: keep the shared registry as is
    cfg = make_config(broker.bootstrap, "kafka-python", registry_dir, extra={
        "retrain.after_labels": 20, "retrain.epochs": 16, "retrain.min_anomaly_labels": 1,
        "retrain.fpr_tolerance": FPR_TOLERANCE, "training.batch_size": 256, "runtime.device": "cpu",
        "feedback.maintain_interval_s": 1.0})
    create_topics(cfg)
    registry = Registry(registry_dir)
    first = registry.current()
    scores = Collected(cfg, cfg.topics.scores)
    dead = Collected(cfg, cfg.topics.deadletter, decode=False)
    try:
        with ServeThread(cfg) as serve:
            ids, truth = _produce_live(cfg, 8000, seed=5, prefix="live")
            scores.wait_for(lambda ms: len({m["id"] for m in ms}) >= len(ids), 120, "8000 scored records")

            # bad labels: dead letters with their reasons; the service goes on
            bad = [b"not json", b"[1, 2]",
                   make_label("no-such-record", "anomaly", "ana").to_json(),
                   orjson.dumps({"record_id": ids[0], "label": "maybe", "analyst": "ana", "at": 1.0}),
                   orjson.dumps({"record_id": ids[0], "label": ["anomaly"], "analyst": "ana", "at": 1.0}),
                   b"x" * (MAX_RECORD_BYTES + 1)]  # whole, its dead letter could break Kafka's message limit
            _send(cfg, cfg.topics.labels, bad)
            letters = dead.wait_for(lambda ms: len(ms) >= len(bad), 60, "dead letters of the bad labels")
            reasons = {m.value: m.header(REASON_HEADER).decode() for m in letters}
            assert "not valid JSON" in reasons[b"not json"]
            assert "JSON object" in reasons[b"[1, 2]"]
            assert "unknown record id" in reasons[bad[2]]
            assert dict(letters[3].headers)[FIELD_HEADER] == b"label"
            assert dict(letters[4].headers)[FIELD_HEADER] == b"label"  # a list as label stopped the thread
            assert letters[5].value == bad[5][:MAX_RECORD_BYTES] and "too large" in reasons[letters[5].value]
            assert serve.thread.is_alive() and serve.service.feedback.is_alive()

            # analysts hunt and triage: 14 beacons caught by hand, and the first model's false
            # alarms confirmed normal (at least 6 normal labels in all). Untriaged, those false
            # alarms would be the "recent alerts" the gate holds the candidate to, and
            # repeating another model's false alarms is no virtue (docs/feedback.md)
            beacons = [i for i, t in zip(ids, truth) if t == "beacon"][:14]
            normal_ids = {i for i, t in zip(ids, truth) if t == "normal"}
            alarms = sorted({m["id"] for m in scores.snapshot() if m["is_anomaly"] and m["id"] in normal_ids})
            normals = alarms + sorted(normal_ids - set(alarms))[:max(0, 6 - len(alarms))]
            labels = [make_label(i, "anomaly", "ana") for i in beacons]
            labels += [make_label(i, "normal", "bob") for i in normals]
            _send(cfg, cfg.topics.labels, [x.to_json() for x in labels] + [labels[0].to_json()])  # one twice

            deadline = time.monotonic() + 300
            while not serve.service.feedback.outcomes and time.monotonic() < deadline:
                time.sleep(1.0)
            assert serve.service.feedback.outcomes, "no retraining within 300 s of the labels"
            outcome = serve.service.feedback.outcomes[0]
            assert outcome.trigger == "labels" and outcome.outcome == "promoted", outcome.detail
            second = registry.current()
            assert second != first

            m = serve.metrics
            assert m.labels.labels("new")._value.get() == len(labels)
            assert m.labels.labels("duplicate")._value.get() == 1  # the same label twice counts once
            assert m.labels.labels("rejected")._value.get() == len(bad)
            assert m.retrain.labels("promoted")._value.get() == 1

            auc_before, fpr_before, recall_before = _fresh_beacon_quality(registry.load(first))
            auc_after, fpr_after, recall_after = _fresh_beacon_quality(registry.load(second))
            print(f"beacon AUC {auc_before:.3f} -> {auc_after:.3f}, recall {recall_before:.3f} -> {recall_after:.3f}, "
                  f"FPR {fpr_before:.4f} -> {fpr_after:.4f}; gate: {outcome.detail}")
            assert 1 - auc_after <= ERROR_SHARE_LEFT * (1 - auc_before) and auc_after >= MIN_AUC_AFTER
            # the gate's promise: no more than tolerance above the current rate or the target, the larger
            assert fpr_after <= max(fpr_before, cfg.training.target_fpr) + FPR_TOLERANCE

            # serve picks the promoted model up between batches, then later records carry it
            deadline = time.monotonic() + 30
            while serve.service.model.version != second and time.monotonic() < deadline:
                time.sleep(0.2)
            assert serve.service.model.version == second
            later, _ = _produce_live(cfg, 500, seed=6, prefix="later")
            got = scores.wait_for(lambda ms: later[-1] in {x["id"] for x in ms}, 60, "later records scored")
            assert {x["model_version"] for x in got if x["id"] in set(later[-100:])} == {second}

            # a deliberately bad candidate (trained on inverted labels) is rejected; serving keeps `second`
            store = FeedbackStore(cfg.feedback.store)
            try:
                bad_outcome = retrain(cfg, store, registry, invert_labels=True)
            finally:
                store.close()
            assert bad_outcome.outcome == "rejected", bad_outcome.detail
            assert registry.current() == second
            events = [e for e in registry.history() if e["event"] == "retrain"]
            assert [e["outcome"] for e in events] == ["promoted", "rejected"]
            assert events[1]["gate"]["candidate"]["auc"] < events[1]["gate"]["current"]["auc"]
            after_bad, _ = _produce_live(cfg, 300, seed=7, prefix="after-bad")
            got = scores.wait_for(lambda ms: after_bad[-1] in {x["id"] for x in ms}, 60, "records after the rejection")
            assert {x["model_version"] for x in got if x["id"] in set(after_bad)} == {second}

            # `arnstream models rollback` restores the first model; serve picks it up by itself
            subprocess.run([sys.executable, "-c", "import sys; from arnstream.cli import main; sys.exit(main())",
                            "models", "rollback", "--registry", str(registry_dir)], check=True, capture_output=True)
            assert registry.current() == first
            deadline = time.monotonic() + 30
            while serve.service.model.version != first and time.monotonic() < deadline:
                time.sleep(0.2)
            rolled, _ = _produce_live(cfg, 300, seed=8, prefix="rolled-back")
            got = scores.wait_for(lambda ms: rolled[-1] in {x["id"] for x in ms}, 60, "records after the rollback")
            assert {x["model_version"] for x in got if x["id"] in set(rolled[-100:])} == {first}
            assert serve.error is None and serve.service.feedback.error is None
    finally:
        scores.stop()
        dead.stop()
