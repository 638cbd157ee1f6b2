"""serve against the real embedded broker: nothing lost, bad input routed, restarts survived."""

from __future__ import annotations

import collections
import gc
import os
import signal
import time

import numpy as np
import orjson
import pytest

from arnstream.config import MAX_RECORD_BYTES
from arnstream.registry import Registry
from arnstream.stream.broker import EmbeddedBroker
from arnstream.stream.scoring import REASON_HEADER, SIZE_HEADER, ScoringModel
from arnstream.stream.serve import GC_THRESHOLDS
from arnstream.stream.simulator import FlowSimulator

from .conftest import (
    CLIENTS,
    Collected,
    ServeThread,
    create_topics,
    make_config,
    produce_flows,
    produce_raw,
    start_serve_process,
)


@pytest.mark.parametrize("client", CLIENTS)
def test_every_record_of_20000_is_scored(broker, model_registry, client):
    cfg = make_config(broker.bootstrap, client, model_registry)
    create_topics(cfg)
    ids = produce_flows(cfg, 20000, attacks=("scan", "synflood"))
    scores = Collected(cfg, cfg.topics.scores)
    collector_before = gc.get_threshold()
    try:
        with ServeThread(cfg) as serve:
            got = scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 120, "20000 scores")
            collector_serving = gc.get_threshold()
        assert serve.error is None
        # serve's collector thresholds hold while it runs, and are given back when it stops
        assert collector_serving == GC_THRESHOLDS != collector_before == gc.get_threshold()
    finally:
        scores.stop()
    doc = got[0]
    assert set(doc) >= {"id", "score", "threshold", "is_anomaly", "model_version", "top_features"}
    assert doc["model_version"] == Registry(model_registry).current()
    assert len(doc["top_features"]) == 3
    assert serve.service.stats.scored >= 20000


@pytest.mark.parametrize("client", CLIENTS)
def test_malformed_records_go_to_the_dead_letter_topic_and_serving_goes_on(broker, model_registry, client):
    cfg = make_config(broker.bootstrap, client, model_registry)
    create_topics(cfg)
    kinds = [b"not json", b'{"flow_id": "m", "duration": NaN}', b'[1, 2, 3]', b"",
             b'{"flow_id": "m", "protocol": "tcp"}',  # missing fields
             b'{"flow_id": "m", "protocol": "tcp", "service": "http", "flag": "SF", "duration": -5, '
             b'"src_bytes": 1, "dst_bytes": 1, "packets": 1, "count": 1, "srv_count": 1, "serror_rate": 0, '
             b'"rerror_rate": 0, "same_srv_rate": 1, "failed_logins": 0}',  # absurd: negative duration
             b'{"flow_id": "m", "protocol": "tcp", "service": "http", "flag": "SF", "duration": "long", '
             b'"src_bytes": 1, "dst_bytes": 1, "packets": 1, "count": 1, "srv_count": 1, "serror_rate": 0, '
             b'"rerror_rate": 0, "same_srv_rate": 1, "failed_logins": 0}',  # wrong type
             b'{"flow_id": "m", "protocol": "tcp", "service": "http", "flag": "SF", "duration": 1, '
             b'"src_bytes": 1e300, "dst_bytes": 1, "packets": 1, "count": 1, "srv_count": 1, "serror_rate": 0, '
             b'"rerror_rate": 0, "same_srv_rate": 1, "failed_logins": 0}']  # absurd: beyond the model's float32
    bad = [kinds[i % len(kinds)] for i in range(1000)]
    scores = Collected(cfg, cfg.topics.scores)
    dead = Collected(cfg, cfg.topics.deadletter, decode=False)
    try:
        with ServeThread(cfg) as serve:
            good = produce_flows(cfg, 5000, prefix="a")
            produce_raw(cfg, bad)
            good += produce_flows(cfg, 5000, seed=2, prefix="b")
            scores.wait_for(lambda m: {d["id"] for d in m} >= set(good), 120, "10000 good records scored")
            letters = dead.wait_for(lambda m: len(m) >= 1000, 60, "1000 dead letters")
            assert serve.thread.is_alive(), "serve stopped on bad input"
        assert serve.error is None
    finally:
        scores.stop()
        dead.stop()
    assert len(letters) == 1000
    assert collections.Counter(m.value for m in letters) == collections.Counter(bad)  # original bytes
    reasons = {m.value: m.header(REASON_HEADER).decode() for m in letters}
    assert "JSON" in reasons[b"not json"]
    assert "NaN" in reasons[kinds[1]] or "not valid JSON" in reasons[kinds[1]]
    assert "not an object" in reasons[b"[1, 2, 3]"]
    assert "missing" in reasons[kinds[4]]
    assert "below the minimum" in reasons[kinds[5]]
    assert "not a number" in reasons[kinds[6]]
    assert "out of range" in reasons[kinds[7]]
    produced_at = [m.timestamp_ms for m in letters]  # the record's Kafka timestamp comes through
    assert all(isinstance(t, int) and abs(t / 1000 - time.time()) < 600 for t in produced_at)
    assert sum(serve.metrics.rejected.labels(r)._value.get()
               for r in ("not_json", "not_object", "missing_field", "out_of_range", "wrong_type",
                         "not_finite", "empty", "invalid")) == 1000


def _padded(record: dict, size: int) -> bytes:
    """A record grown to `size` bytes by a field the schema does not name (serve ignores it)."""
    base = orjson.dumps(dict(record, pad=""))
    return base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')


@pytest.mark.parametrize("client", CLIENTS)
def test_records_too_large_to_pass_on_are_dead_letters_and_serving_goes_on(broker, model_registry, client):
    # before serve.max_record_bytes, a 999,950-byte message made a dead letter over librdkafka's
    # 1,000,000-byte limit: the batch was re-read and failed again, forever
    cfg = make_config(broker.bootstrap, client, model_registry)
    create_topics(cfg)
    floods, _ = FlowSimulator(seed=9, attacks=("synflood",), attack_fraction=1.0, prefix="big").batch(5)
    large = [_padded(r, 200_000) for r in floods]  # under the limit: scored, and alerts carry them whole
    too_large = [b"x" * 999_950, _padded(floods[0], MAX_RECORD_BYTES + 1)]
    scores = Collected(cfg, cfg.topics.scores)
    alerts = Collected(cfg, cfg.topics.alerts)
    dead = Collected(cfg, cfg.topics.deadletter, decode=False)
    try:
        with ServeThread(cfg) as serve:
            good = produce_flows(cfg, 500, prefix="a")
            produce_raw(cfg, too_large + large)
            good += produce_flows(cfg, 500, seed=2, prefix="b")
            wanted = set(good) | {r["flow_id"] for r in floods}
            got = scores.wait_for(lambda m: {d["id"] for d in m} >= wanted, 90, "every record under the limit scored")
            letters = dead.wait_for(lambda m: len(m) >= 2, 30, "2 dead letters")
            flagged = {d["id"] for d in got if d["is_anomaly"] and d["id"].startswith("big")}
            assert flagged, "no SYN flood flagged"
            raised = alerts.wait_for(lambda m: {a["id"] for a in m} >= flagged, 30, "the large records' alerts")
            assert serve.thread.is_alive() and serve.metrics.output_failures._value.get() == 0
        assert serve.error is None
    finally:
        for c in (scores, alerts, dead):
            c.stop()
    assert sorted(len(m.value) for m in letters) == [MAX_RECORD_BYTES] * 2
    assert sorted(int(m.header(SIZE_HEADER)) for m in letters) == sorted(map(len, too_large))
    assert all(b"too large" in m.header(REASON_HEADER) for m in letters)
    assert serve.metrics.rejected.labels("too_large")._value.get() == 2
    sent = {r["flow_id"]: orjson.loads(v) for r, v in zip(floods, large)}
    assert {a["id"]: a["record"] for a in raised if a["id"] in flagged} == {i: sent[i] for i in flagged}


@pytest.mark.parametrize("client", CLIENTS)
def test_kill_9_mid_stream_loses_nothing_and_duplicates_stay_within_one_batch(
        broker, model_registry, client, tmp_path):
    cfg = make_config(broker.bootstrap, client, model_registry, batch_size=500)
    create_topics(cfg)
    ids = produce_flows(cfg, 20000)
    scores = Collected(cfg, cfg.topics.scores)
    try:
        proc = start_serve_process(cfg, tmp_path / "serve.log")
        scores.wait_for(lambda m: len(m) >= 8000, 120, "the first 8000 scores")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        at_kill = len(scores.snapshot())
        assert at_kill < 20000, "serve finished before it was killed: the test proves nothing"
        log = tmp_path / "serve.log"
        proc = start_serve_process(cfg, log)
        got = scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 180, "every id after the restart")
        deadline = time.monotonic() + 60  # SIGTERM the restarted process once it is serving
        while log.read_text().count("serving ") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        scores.stop()
        if proc.poll() is None:
            proc.kill()
    counts = collections.Counter(d["id"] for d in got)
    duplicates = sum(c - 1 for c in counts.values())
    # one uncommitted batch per partition at most (2 partitions, batches of at most 500)
    assert duplicates <= 2 * 500, (duplicates, (tmp_path / "serve.log").read_text()[-2000:])


@pytest.mark.parametrize("client", CLIENTS)
def test_serve_reconnects_after_a_broker_restart(model_registry, client):
    with EmbeddedBroker() as own:
        cfg = make_config(own.bootstrap, client, model_registry)
        create_topics(cfg, live_partitions=1)
        with ServeThread(cfg) as serve:
            first = produce_flows(cfg, 2000, prefix="before")
            scores = Collected(cfg, cfg.topics.scores)
            scores.wait_for(lambda m: {d["id"] for d in m} >= set(first), 90, "scores before the restart")
            scores.stop()
            own.restart()  # memory storage: topics and offsets are gone
            create_topics(cfg, live_partitions=1)
            second = produce_flows(cfg, 2000, seed=3, prefix="after")
            scores = Collected(cfg, cfg.topics.scores)
            try:
                scores.wait_for(lambda m: {d["id"] for d in m} >= set(second), 150,
                                "scores of records produced after the restart")
            finally:
                scores.stop()
            assert serve.thread.is_alive()
        assert serve.error is None


@pytest.mark.parametrize("client", CLIENTS)
def test_two_serve_processes_split_the_partitions(broker, model_registry, tmp_path, client):
    cfg = make_config(broker.bootstrap, client, model_registry, batch_size=500)
    create_topics(cfg, live_partitions=4)
    procs = [start_serve_process(cfg, tmp_path / f"serve{i}.log") for i in range(2)]
    scores = Collected(cfg, cfg.topics.scores)
    try:
        time.sleep(8)  # both members join before records arrive, so the group is split from the start
        ids = produce_flows(cfg, 10000)
        scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 150, "every record scored")
    finally:
        scores.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
    assert codes == [0, 0]
    served = []
    for i in range(2):
        last = (tmp_path / f"serve{i}.log").read_text().strip().splitlines()[-1]
        assert last.startswith("served "), last
        served.append(int(last.split()[1]))
    assert all(n > 0 for n in served), f"one process got no partition: {served}"
    assert sum(served) >= 10000


@pytest.mark.parametrize("client", CLIENTS)
def test_a_promoted_model_is_picked_up_without_restart_or_loss(broker, model_registry, tmp_path, client):
    import shutil

    registry_dir = tmp_path / "registry"
    shutil.copytree(model_registry, registry_dir)
    cfg = make_config(broker.bootstrap, client, registry_dir)
    create_topics(cfg)
    registry = Registry(registry_dir)
    first = registry.current()
    scores = Collected(cfg, cfg.topics.scores)
    try:
        with ServeThread(cfg) as serve:
            ids = produce_flows(cfg, 3000, prefix="one")
            scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 90, "scores of the first model")
            # a second version: same artifact, registered and promoted while serving
            second = registry.add(registry.load(first).detector,
                                  encoder_state=registry.load(first).encoder_state,
                                  metadata=registry.load(first).metadata, card={"note": "test"})
            registry.promote(second)
            time.sleep(2.5)  # > serve.reload_interval_s
            ids2 = produce_flows(cfg, 3000, seed=5, prefix="two")
            got = scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids2), 90, "scores after promotion")
        assert serve.error is None
    finally:
        scores.stop()
    versions = {d["id"]: d["model_version"] for d in got}
    assert {versions[i] for i in ids} == {first}
    assert {versions[i] for i in ids2} == {second}
    assert serve.metrics.model_reloads._value.get() == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_offline_replay_gives_the_same_vectors_and_scores_as_serving(broker, model_registry, client):
    from arnstream.stream.window import read_window

    cfg = make_config(broker.bootstrap, client, model_registry)
    create_topics(cfg)
    ids = produce_flows(cfg, 3000, attacks=("scan", "bruteforce"))
    scores = Collected(cfg, cfg.topics.scores)
    try:
        with ServeThread(cfg):
            got = scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 90, "served scores")
    finally:
        scores.stop()
    served = {d["id"]: d["score"] for d in got}
    registry = Registry(model_registry)
    model = ScoringModel.from_artifact(registry.current(), registry.load(registry.current()))
    window = read_window(cfg.kafka, cfg.topics.live, idle_timeout_s=2.0)
    assert len(window.records) == 3000
    X = model.encoder.transform(window.records)
    offline = model.detector.score(X)
    online = np.array([served[r["flow_id"]] for r in window.records])
    np.testing.assert_allclose(offline, online, rtol=0, atol=1e-6)


@pytest.mark.parametrize("client", CLIENTS)
def test_metrics_endpoint_reports_what_serve_did(broker, model_registry, client):
    import urllib.request

    from arnstream.observability import start_exporter
    from arnstream.stream.broker import free_port

    cfg = make_config(broker.bootstrap, client, model_registry)
    create_topics(cfg)
    scores = Collected(cfg, cfg.topics.scores)
    address = f"127.0.0.1:{free_port()}"
    try:
        with ServeThread(cfg) as serve:
            server = start_exporter(address, serve.metrics.registry)
            ids = produce_flows(cfg, 2000, attacks=("synflood",))
            produce_raw(cfg, [b"garbage"] * 7)
            scores.wait_for(lambda m: {d["id"] for d in m} >= set(ids), 90, "scores")
            time.sleep(1.0)
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
            server.shutdown()
    finally:
        scores.stop()
    lines = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))
    live = cfg.topics.live
    assert float(lines[f'arnstream_records_consumed_total{{topic="{live}"}}']) == 2007
    assert float(lines[f'arnstream_records_scored_total{{topic="{live}"}}']) == 2000
    assert float(lines['arnstream_records_rejected_total{reason="not_json"}']) == 7
    assert float(lines["arnstream_anomaly_score_count"]) == 2000
    assert float(lines[f'arnstream_anomalies_total{{topic="{live}"}}']) > 0
    assert float(lines["arnstream_model_version"]) == 1
    assert float(lines["arnstream_serve_up"]) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_netflow_windows_give_the_same_vectors_and_scores_offline_and_online(broker, tmp_path, client):
    """Raw flows: the traffic windows computed while serving equal a replay of the topic."""
    from arnstream.config import load_config
    from arnstream.features.pipeline import FeaturePipeline
    from arnstream.schema import FlowSchema
    from arnstream.stream.client import open_producer
    from arnstream.stream.netflow_sim import NetflowSimulator
    from arnstream.stream.window import read_window
    from arnstream.trainer import detector_params, train_on_records

    registry = Registry(tmp_path / "registry")
    train_cfg = load_config(None, {}, {"training.epochs": 3, "training.batch_size": 256, "runtime.device": "cpu"})
    normal, _ = NetflowSimulator(seed=0, start=1e9).batch(5000)
    train_on_records(normal, FlowSchema.load("netflow"), train_cfg, detector_params(train_cfg),
                     registry=registry, source={"test": "netflow"})
    cfg = make_config(broker.bootstrap, client, registry.root, batch_size=700)
    create_topics(cfg, live_partitions=1)
    live, _ = NetflowSimulator(seed=1, attacks=("scan", "synflood", "bruteforce"), start=1e9 + 100).batch(4000)
    online = []
    scores = Collected(cfg, cfg.topics.scores)
    try:
        with ServeThread(cfg) as serve:
            deadline = time.monotonic() + 30
            while serve.service.model is None and time.monotonic() < deadline:
                time.sleep(0.1)
            features = serve.service.model.features
            transform = features.transform_with_records

            def watched(records):  # observe the vectors serve computes, batch by batch
                batch, seen = transform(records)
                online.append(batch.X.copy())
                return batch, seen

            features.transform_with_records = watched
            producer = open_producer(cfg.kafka)
            for rec in live:
                producer.send(cfg.topics.live, orjson.dumps(rec), rec["flow_id"].encode())
            producer.flush()
            producer.close()
            got = scores.wait_for(lambda m: len({d["id"] for d in m}) >= 4000, 90, "4000 netflow scores")
    finally:
        scores.stop()
    assert len(online) > 1, "served in one batch: windows across batches are not exercised"
    window = read_window(cfg.kafka, cfg.topics.live, idle_timeout_s=2.0)
    model = ScoringModel.from_artifact(registry.current(), registry.load(registry.current()))
    replay = FeaturePipeline(model.encoder).transform_batch(window.records)
    np.testing.assert_array_equal(replay.X, np.concatenate(online))
    served = {d["id"]: d["score"] for d in got}
    np.testing.assert_allclose(model.detector.score(replay.X),
                               [served[r["flow_id"]] for r in window.records], rtol=0, atol=1e-6)
    host_count = model.encoder.feature_names_.index("host_count")
    assert replay.X[:, host_count].max() > replay.X[:, host_count].min()  # the windows really vary
