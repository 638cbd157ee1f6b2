"""Integration fixtures: a real embedded broker on loopback, a really trained model.

One broker serves the session; each test uses its own topic names and consumer group, so
tests never see each other's records. Tests that restart the broker start their own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from arnstream.config import load_config
from arnstream.registry import Registry
from arnstream.stream.broker import EmbeddedBroker
from arnstream.stream.client import ensure_topics, open_producer
from arnstream.stream.simulator import FlowSimulator, produce
from arnstream.stream.tail import TopicTail

CLIENTS = ["kafka-python", "confluent"]


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory) -> Path:
    """A registry with one promoted ARN, trained for real on simulated normal traffic as
    `arnstream train` trains it (alerting on training.score_mode)."""
    from arnstream.schema import FlowSchema
    from arnstream.trainer import alerting_params, train_on_records

    root = tmp_path_factory.mktemp("registry")
    cfg = load_config(None, {}, {"training.epochs": 6, "training.batch_size": 256, "runtime.device": "cpu"})
    records, _ = FlowSimulator(seed=0, prefix="train").batch(6000)
    train_on_records(records, FlowSchema.load("flowsim"), cfg, alerting_params(cfg), registry=Registry(root),
                     source={"test": "integration"}, seed=0)
    return root


def make_config(bootstrap: str, client: str, registry: Path, extra: dict | None = None, **serve):
    """A config with topics, group and feedback store private to one test (extra: more keys)."""
    tag = uuid.uuid4().hex[:8]
    overrides = {"kafka.bootstrap_servers": bootstrap, "kafka.client": client,
                 "kafka.group": f"serve-{tag}", "kafka.session_timeout_ms": 6000,
                 "registry.dir": str(registry), "serve.metrics_address": None,
                 "serve.reload_interval_s": 1.0, "serve.batch_size": 2000,
                 "feedback.store": str(Path(registry).parent / f"feedback-{tag}.sqlite3")}
    for name in ("normal", "live", "scores", "alerts", "deadletter", "labels"):
        overrides[f"topics.{name}"] = f"flows-{name}-{tag}"
    overrides.update({f"serve.{k}": v for k, v in serve.items()})
    overrides.update(extra or {})
    return load_config(None, {}, overrides)


def create_topics(cfg, live_partitions: int = 2) -> None:
    t = cfg.topics
    ensure_topics(cfg.kafka, [t.scores, t.alerts, t.deadletter, t.labels])
    ensure_topics(cfg.kafka, [t.live], partitions=live_partitions)


def produce_flows(cfg, n: int, *, seed: int = 1, attacks=(), prefix: str = "rec") -> list[str]:
    """n simulated records into the live topic; returns their ids in order."""
    sim = FlowSimulator(seed=seed, attacks=tuple(attacks), prefix=prefix)
    producer = open_producer(cfg.kafka)
    ids: list[str] = []
    try:
        produce(producer, cfg.topics.live, sim, total=n,
                on_batch=lambda records, _: ids.extend(r["flow_id"] for r in records))
    finally:
        producer.close()
    return ids


def produce_raw(cfg, values: list[bytes]) -> None:
    producer = open_producer(cfg.kafka)
    try:
        for v in values:
            producer.send(cfg.topics.live, v)
        producer.flush()
    finally:
        producer.close()


class Collected:
    """Every message of a topic, decoded, gathered in the background."""

    def __init__(self, cfg, topic: str, decode=True):
        self.messages = []
        self._lock = threading.Lock()

        def on_message(msg):
            with self._lock:
                self.messages.append(orjson.loads(msg.value) if decode else msg)

        self.tail = TopicTail(cfg.kafka, topic, on_message).start()

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self.messages):
                    return list(self.messages)
            time.sleep(0.2)
        with self._lock:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} ({len(self.messages)} messages)")

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def stop(self):
        self.tail.stop()


class ServeThread:
    """`Service.run` in a thread of this process (as `arnstream serve` runs it)."""

    def __init__(self, cfg):
        from arnstream.observability import ServeMetrics
        from arnstream.stream.serve import Service

        self.stop_event = threading.Event()
        self.metrics = ServeMetrics()
        self.service = Service(cfg, Registry(cfg.registry.dir), self.metrics, stop=self.stop_event)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.service.run()
        except BaseException as exc:  # surfaced by the test through .error, and logged now
            self.error = exc
            logging.getLogger(__name__).exception("serve died")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "serve did not stop within 30 s of its stop event"


def serve_env(cfg) -> dict:
    """The same config as environment variables, for `arnstream serve` in a subprocess."""
    env = dict(os.environ)
    flat = dataclasses.asdict(cfg)
    for section in ("kafka", "topics", "serve", "registry", "feedback", "retrain"):
        for key, value in flat[section].items():
            if isinstance(value, dict):
                continue
            env[f"ARNSTREAM_{section.upper()}__{key.upper()}"] = "" if value is None else str(value)
    return env


def start_serve_process(cfg, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "arnstream.cli", "serve"], env=serve_env(cfg),
                            stdout=log, stderr=subprocess.STDOUT)
