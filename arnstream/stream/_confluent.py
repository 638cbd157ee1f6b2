"""confluent-kafka (librdkafka) backend of the client layer: the `confluent` extra."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import KafkaConfig
from ..errors import BrokerError
from .client import OWNED_BECAUSE, Message, check_compression, with_extra

log = logging.getLogger(__name__)
_librdkafka_log = logging.getLogger("arnstream.stream.librdkafka")  # its lines go through logging

# options arnstream sets itself; kafka.extra may not (client.with_extra)
_OWNED = {name: OWNED_BECAUSE[why] for name, why in (
    ("bootstrap.servers", "servers"), ("group.id", "group"), ("client.id", "client_id"), ("acks", "acks"),
    ("compression.type", "compression"), ("linger.ms", "linger"), ("session.timeout.ms", "session"),
    ("enable.auto.commit", "commits"), ("enable.auto.offset.store", "commits"),
    ("auto.offset.reset", "offset_reset"))}
_OWNED.update({"enable.idempotence": "follows kafka.acks (on with acks=all)",
               "logger": "librdkafka's log goes through Python logging",
               "error_cb": "arnstream watches for fatal producer errors",
               "on_delivery": "arnstream counts failed deliveries before it commits"})


def _base(cfg: KafkaConfig, client_id: str) -> dict:
    out = {"bootstrap.servers": cfg.bootstrap_servers, "client.id": client_id,
           "security.protocol": cfg.security_protocol, "logger": _librdkafka_log}
    for ours, theirs in (("sasl_mechanism", "sasl.mechanism"), ("sasl_username", "sasl.username"),
                         ("sasl_password", "sasl.password"), ("ssl_cafile", "ssl.ca.location"),
                         ("ssl_certfile", "ssl.certificate.location"), ("ssl_keyfile", "ssl.key.location")):
        if getattr(cfg, ours) is not None:
            out[theirs] = getattr(cfg, ours)
    return out


_new_tuple = tuple.__new__


def _without_errors(polled: list) -> list:
    """The polled messages that are records; errors other than end-of-partition are logged."""
    out = []
    for m in polled:
        err = m.error()
        if err is None:
            out.append(m)
        elif err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer: %s", err)
    return out


def _check_reachable(client, cfg: KafkaConfig) -> None:
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker reachable at {cfg.bootstrap_servers} "
                          f"(kafka.bootstrap_servers): {exc}") from exc


class Consumer:
    def __init__(self, cfg: KafkaConfig, topics, group, *, from_beginning=True, partitions=None,
                 client_id="arnstream"):
        conf = {**_base(cfg, client_id),
                # librdkafka needs a group id even for manual assignment; it never commits there
                "group.id": group or f"arnstream-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "session.timeout.ms": cfg.session_timeout_ms,
                "heartbeat.interval.ms": max(100, cfg.session_timeout_ms // 4),
                "enable.partition.eof": False}
        self._consumer = _Consumer(with_extra(conf, cfg, "consumer", _OWNED))
        _check_reachable(self._consumer, cfg)
        if partitions is not None:
            offset = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
            self._consumer.assign([TopicPartition(t, p, offset) for t, p in partitions])
        else:
            self._consumer.subscribe(list(topics))

    def poll_batch(self, max_records, timeout_ms):
        try:
            polled = self._consumer.consume(num_messages=max_records, timeout=timeout_ms / 1000)
        except KafkaException as exc:
            raise BrokerError(f"poll failed: {exc}") from exc
        if any(m.error() is not None for m in polled):
            polled = _without_errors(polled)
        # one comprehension, tuple.__new__ rather than Message(...) (whose __new__ is Python
        # code): half the cost per record on serve's main thread (docs/streaming.md)
        return [_new_tuple(Message, (m.topic(), m.partition(), m.offset(), m.value(), m.key(),
                                     tuple(h) if (h := m.headers()) else (),
                                     ts[1] if (ts := m.timestamp())[0] else None))
                for m in polled]

    def commit(self, offsets):
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            raise BrokerError(f"offset commit failed: {exc}") from exc

    def seek(self, offsets):
        mine = self.assignment()
        for (t, p), o in offsets.items():
            if (t, p) in mine:
                try:
                    self._consumer.seek(TopicPartition(t, p, o))
                except KafkaException as exc:
                    log.warning("seek %s[%d] to %d: %s", t, p, o, exc)

    def assignment(self):
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def high_watermarks(self):
        out = {}
        for tp in self._consumer.assignment():
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                out[(tp.topic, tp.partition)] = high
        return out

    def close(self):
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close: %s", exc)


class Producer:
    def __init__(self, cfg: KafkaConfig, client_id="arnstream"):
        conf = {**_base(cfg, client_id), "acks": cfg.acks, "linger.ms": cfg.linger_ms,
                "compression.type": check_compression(cfg) or "none",
                "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000,
                "enable.idempotence": cfg.acks in ("all", "-1"),
                # callbacks for failures only: a Python call per delivered record costs ~10%
                "delivery.report.only.error": True}
        self._fatal: str | None = None
        # the delivery callback set once here, not per produce(): keyword arguments and a
        # per-record callback reference cost ~1 us of the ~2 us a produce() takes
        self._producer = _Producer({**with_extra(conf, cfg, "producer", _OWNED),
                                    "error_cb": self._on_error, "on_delivery": self._on_delivery})
        self._errors: list[str] = []
        self._sent = 0

    def _on_error(self, err):
        if err.fatal():  # e.g. an idempotent producer fenced after a broker lost its state
            self._fatal = str(err)

    def _on_delivery(self, err, msg):
        # msg's accessors raise SystemError on the fatal path: report the error alone
        if err is not None:
            self._errors.append(str(err))

    def send(self, topic, value, key=None, headers=None):
        while True:
            try:
                if headers:
                    self._producer.produce(topic, value, key, headers=headers)
                else:
                    self._producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.05)
            except (KafkaException, SystemError) as exc:
                raise BrokerError(f"send to {topic} failed: {exc}") from exc
        self._sent += 1

    def send_many(self, topic, values, keys):
        produce = self._producer.produce  # bound once: serve sends one score per record
        for i, (value, key) in enumerate(zip(values, keys)):
            try:
                produce(topic, value, key)
            except BufferError:  # local queue full: `send` waits for room, then goes on
                self._sent += i
                for value, key in zip(values[i:], keys[i:]):
                    self.send(topic, value, key)
                return
            except (KafkaException, SystemError) as exc:
                raise BrokerError(f"send to {topic} failed: {exc}") from exc
        self._sent += len(values)

    def flush(self, timeout_s=30.0):
        deadline = time.monotonic() + timeout_s
        remaining = 1
        try:
            remaining = self._producer.flush(0.5)
            while remaining and self._fatal is None and time.monotonic() < deadline:
                remaining = self._producer.flush(0.5)
        except (KafkaException, SystemError) as exc:
            # a producer in a fatal state raises here; confluent-kafka 2.16 even raises a bare
            # SystemError ("returned NULL without setting an exception") on that path
            self._fatal = self._fatal or f"{type(exc).__name__}: {exc}"
        if self._fatal is not None:
            self._errors.insert(0, f"fatal producer error: {self._fatal}")
        sent, self._sent = self._sent, 0
        errors, self._errors = self._errors, []
        if remaining or errors:
            detail = errors[0] if errors else "not acknowledged in time"
            failed = min(sent, len(errors) + remaining) if sent else len(errors) + remaining
            raise BrokerError(f"{failed} of {sent} records were not written: {detail}")

    def close(self):
        if self._fatal is not None:
            return  # a fatal producer retries nothing
        try:
            if self._producer.flush(5):
                # the instance lives until garbage-collected: records left in it must not be
                # retried later, perhaps under a producer id a broker that lost its state has
                # since handed to this producer's successor (see the kafka-python backend)
                log.warning("producer close: records not acknowledged in 5 s are dropped")
                self._producer.purge()
                self._producer.flush(0)
        except (KafkaException, SystemError) as exc:
            log.warning("producer close: %s", exc)


def ensure_topics(cfg: KafkaConfig, names, partitions):
    admin = AdminClient(with_extra(_base(cfg, "arnstream-admin"), cfg, None, _OWNED))
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker reachable at {cfg.bootstrap_servers}: {exc}") from exc
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
    if not new:
        return
    for name, future in admin.create_topics(new).items():
        try:
            future.result(15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {exc}") from exc


def list_partitions(cfg: KafkaConfig, topic):
    admin = AdminClient(with_extra(_base(cfg, "arnstream-meta"), cfg, None, _OWNED))
    try:
        meta = admin.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker reachable at {cfg.bootstrap_servers}: {exc}") from exc
    t = meta.topics.get(topic)
    return sorted(t.partitions) if t is not None and t.error is None else []
