"""The thin client layer against the real embedded broker, where the clients themselves misbehave."""

from __future__ import annotations

import time

import pytest

from arnstream.config import load_config
from arnstream.errors import ConfigError
from arnstream.stream.broker import EmbeddedBroker
from arnstream.stream.client import BrokerError, ensure_topics, open_producer, open_reader

from .conftest import CLIENTS


def _read_all(cfg, topic: str, quiet_s: float = 3.0) -> list[bytes]:
    reader = open_reader(cfg.kafka, topic)
    values: list[bytes] = []
    try:
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            batch = reader.poll_batch(1000, 200)
            if batch:
                values.extend(m.value for m in batch)
                quiet_until = time.monotonic() + quiet_s
    finally:
        reader.close()
    return values


@pytest.mark.parametrize("client", CLIENTS)
def test_a_closed_producer_never_writes_under_an_id_the_broker_hands_out_again(client):
    """A broker that lost its state hands producer ids out again. A producer closed while its
    records were still unacknowledged must be dead: were it to keep retrying, its writes would
    land under the id its successor gets, and the successor's own records (same id, same
    sequence numbers) would be acknowledged as duplicates and dropped: serve would commit
    output that was never written."""
    with EmbeddedBroker() as own:
        cfg = load_config(None, {}, {"kafka.bootstrap_servers": own.bootstrap, "kafka.client": client})
        ensure_topics(cfg.kafka, ["before"])
        holders = [open_producer(cfg.kafka) for _ in range(2)]  # ids 1 and 2 on this broker
        for p in holders:
            p.send("before", b"x")
            p.flush(10)
        holders[0].close()
        stale = holders[1]
        own.restart()  # memory storage: producer ids are handed out from 1 again
        ensure_topics(cfg.kafka, ["after"])
        first = open_producer(cfg.kafka)  # takes id 1 again
        first.send("after", b"first")
        first.flush(10)
        first.close()
        for i in range(10):
            stale.send("after", b"stale-%d" % i)
        try:
            stale.flush(3)
        except BrokerError:
            pass  # what serve sees: the batch was not written, the producer gets replaced
        stale.close()
        successor = open_producer(cfg.kafka)  # may take id 2, the stale producer's
        time.sleep(4)  # room for a stale producer that is still alive to retry under that id
        for i in range(20):
            successor.send("after", b"new-%d" % i)
        successor.flush(10)
        successor.close()
        written = _read_all(cfg, "after")
    assert {b"new-%d" % i for i in range(20)} <= set(written), written


@pytest.mark.parametrize("client", CLIENTS)
def test_send_many_writes_every_record_in_order_even_when_the_local_queue_fills(broker, client):
    # confluent with a local queue of 50 records (kafka.producer_extra): send_many meets
    # BufferError and waits for room
    tuning = {"queue.buffering.max.messages": 50} if client == "confluent" else {"batch_size": 4096}
    cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap, "kafka.client": client,
                                 "kafka.producer_extra": tuning})
    topic = f"many-{client}"
    ensure_topics(cfg.kafka, [topic], partitions=1)
    producer = open_producer(cfg.kafka)
    if client == "kafka-python":  # the user's tuning replaced arnstream's default (1 MiB)
        assert producer._producer.config["batch_size"] == 4096
    values = [b"v%d" % i for i in range(2000)]
    producer.send_many(topic, values, [b"k%d" % i for i in range(2000)])
    producer.flush(30)
    producer.close()
    assert _read_all(cfg, topic) == values


@pytest.mark.parametrize("client,key", [("kafka-python", "enable_auto_commit"), ("kafka-python", "linger_ms"),
                                        ("confluent", "enable.auto.commit"), ("confluent", "linger.ms")])
def test_extra_options_that_arnstream_owns_are_refused_by_name(broker, client, key):
    cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap, "kafka.client": client,
                                 "kafka.extra": {key: 5}})
    with pytest.raises(ConfigError, match=f"kafka.extra.{key}"):
        open_producer(cfg.kafka) if "linger" in key else open_reader(cfg.kafka, "any")
