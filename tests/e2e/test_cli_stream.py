"""The streaming commands as a user runs them: train from a file and from a topic, the registry."""

import subprocess
import sys

import orjson

from arnstream.stream.simulator import FlowSimulator


def arnstream(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "arnstream.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_train_from_a_file_then_list_promote_and_roll_back(tmp_path):
    data = tmp_path / "normal.jsonl"
    records, _ = FlowSimulator(seed=0).batch(3000)
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in records))
    registry = str(tmp_path / "registry")
    for model in ("iforest", "ae"):
        proc = arnstream("train", "--data", str(data), "--model", model, "--epochs", "2",
                         "--registry", registry, "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
        assert "promoted" in proc.stdout and "threshold" in proc.stdout
    listing = arnstream("models", "list", "--registry", registry).stdout.splitlines()
    assert [line[:7] for line in listing] == ["  v0001", "* v0002"]
    assert "iforest" in listing[0] and "normal.jsonl" in listing[0]
    proc = arnstream("models", "rollback", "--registry", registry)
    assert proc.returncode == 0 and "v0001" in proc.stdout
    assert arnstream("models", "list", "--registry", registry).stdout.startswith("* v0001")
    proc = arnstream("models", "promote", "v0003", "--registry", registry)
    assert proc.returncode == 2 and "no model version 'v0003' (known: v0001, v0002)" in proc.stderr


def test_train_from_a_topic_reads_the_window_with_progress(tmp_path):
    from arnstream.config import load_config
    from arnstream.stream.broker import EmbeddedBroker
    from arnstream.stream.client import ensure_topics, open_producer
    from arnstream.stream.simulator import produce

    with EmbeddedBroker() as broker:
        cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap})
        ensure_topics(cfg.kafka, ["flows-normal"], partitions=2)
        producer = open_producer(cfg.kafka)
        produce(producer, "flows-normal", FlowSimulator(seed=0), total=4000)
        producer.close()
        proc = arnstream("train", "--topic", "flows-normal", "--bootstrap-servers", broker.bootstrap,
                         "--max-records", "3000", "--model", "iforest", "--idle-timeout", "2",
                         "--registry", str(tmp_path / "reg"))
    assert proc.returncode == 0, proc.stderr
    assert "read 3000 records from flows-normal" in proc.stderr
    assert "model v0001 (iforest, schema flowsim)" in proc.stdout


def test_bad_stream_config_names_the_key(tmp_path):
    # checked before serve waits for a model or a broker
    proc = arnstream("serve", "--set", "kafka.client=librdkafka", "--registry", str(tmp_path),
                     "--set", "serve.metrics_address=null", timeout=60)
    assert proc.returncode == 2 and "config key 'kafka.client'" in proc.stderr
    proc = arnstream("serve", "--set", "kafka.compression=brotli", "--registry", str(tmp_path),
                     "--set", "serve.metrics_address=null", timeout=60)
    assert proc.returncode == 2 and "kafka.compression" in proc.stderr
    proc = arnstream("train", "--data", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = arnstream("serve", "--set", "serve.metrics_address=localhost", "--registry", str(tmp_path),
                     timeout=60)
    assert proc.returncode == 2 and "serve.metrics_address" in proc.stderr


def test_broker_command_listens_on_loopback_and_stops_on_sigterm():
    import signal
    import socket
    import time

    from arnstream.stream.broker import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "arnstream.cli", "broker", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the broker never listened"
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"127.0.0.1:{port}" in proc.stderr.read()
    with socket.socket() as s:  # the broker process is gone with it
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_label_sends_one_label_or_a_csv_file_to_the_labels_topic(tmp_path):
    from arnstream.config import load_config
    from arnstream.feedback import parse_label
    from arnstream.stream.broker import EmbeddedBroker
    from arnstream.stream.client import ensure_topics, open_reader

    csv = tmp_path / "labels.csv"
    csv.write_text("record_id,label,note\nr2,normal,false alarm\nr3,anomaly,\n")
    with EmbeddedBroker() as broker:
        cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap})
        ensure_topics(cfg.kafka, ["flows-labels"])
        one = arnstream("label", "r1", "--anomaly", "--note", "beacon", "--analyst", "ana",
                        "--bootstrap-servers", broker.bootstrap, timeout=120)
        many = arnstream("label", "--file", str(csv), "--analyst", "bob", "--bootstrap-servers", broker.bootstrap,
                         timeout=120)
        neither = arnstream("label", "r1", "--bootstrap-servers", broker.bootstrap, timeout=60)
        reader = open_reader(cfg.kafka, "flows-labels")
        got = []
        for _ in range(20):
            got += reader.poll_batch(100, 500)
            if len(got) >= 3:
                break
        reader.close()
    assert one.returncode == 0 and "sent 1 label(s) to flows-labels (1 anomaly, 0 normal) as ana" in one.stdout
    assert many.returncode == 0 and "(1 anomaly, 1 normal) as bob" in many.stdout
    assert neither.returncode == 2 and "exactly one of --anomaly / --normal" in neither.stderr
    labels = [parse_label(m.value) for m in got]
    assert [(x.record_id, x.label, x.analyst, x.note) for x in labels] == [
        ("r1", "anomaly", "ana", "beacon"), ("r2", "normal", "bob", "false alarm"), ("r3", "anomaly", "bob", None)]


def test_retrain_on_demand_reports_the_gate_decision(tmp_path):
    from arnstream.feedback import FeedbackStore, make_label

    records, _ = FlowSimulator(seed=0, prefix="train").batch(3000)
    data = tmp_path / "normal.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in records))
    registry, store_path = str(tmp_path / "registry"), tmp_path / "store.sqlite3"
    common = ("--registry", registry, "--set", "model.name=iforest")
    missing = arnstream("retrain", "--store", str(store_path), *common, timeout=60)
    assert missing.returncode == 2 and "no feedback store" in missing.stderr
    assert arnstream("train", "--data", str(data), *common).returncode == 0
    live, truth = FlowSimulator(seed=1, attacks=("scan",), attack_fraction=0.05, prefix="live").batch(3000)
    store = FeedbackStore(store_path)
    store.put_scored([(r["flow_id"], "v0001", 0.1, False, orjson.dumps(r)) for r in live])
    for r in [r for r, t in zip(live, truth) if t == "scan"][:12]:
        store.add_label(make_label(r["flow_id"], "anomaly", "ana"))
    store.close()
    proc = arnstream("retrain", "--store", str(store_path), *common)
    assert proc.returncode == 0, proc.stderr
    assert "12 anomaly and 0 normal labels" in proc.stderr
    assert proc.stdout.startswith("retrain: promoted: v0002 promoted") or proc.stdout.startswith("retrain: rejected")
    assert "candidate AUC" in proc.stdout


def test_a_short_demo_runs_the_whole_loop_and_reports_it(tmp_path):
    proc = arnstream("demo", "--normal-records", "6000", "--live-seconds", "25", "--rate", "600",
                     "--epochs", "4", "--analyst-after", "6", "--workdir", str(tmp_path / "demo"),
                     timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "[4/4] summary" in out and "detection AUC" in out
    scored, simulated = map(int, out.split("records scored: ")[1].split(" simulated")[0].split(" of "))
    assert scored == simulated > 10000
    assert "[analyst] labelled" in proc.stderr
    assert "retraining (labels): " in out  # promoted or rejected, with the gate's numbers
    assert "candidate AUC" in out
