"""kafka-python backend of the client layer (the default)."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from ..config import KafkaConfig
from ..errors import BrokerError
from .client import OWNED_BECAUSE, Message, check_compression, with_extra

# options arnstream sets itself; kafka.extra may not (client.with_extra)
_OWNED = {name: OWNED_BECAUSE[why] for name, why in (
    ("bootstrap_servers", "servers"), ("group_id", "group"), ("client_id", "client_id"), ("acks", "acks"),
    ("compression_type", "compression"), ("linger_ms", "linger"), ("session_timeout_ms", "session"),
    ("enable_auto_commit", "commits"), ("auto_offset_reset", "offset_reset"))}
_OWNED["max_in_flight_requests_per_connection"] = "must stay 1: retries must not reorder a partition"

log = logging.getLogger(__name__)


class _CloseRaceFilter(logging.Filter):
    """Drops one log record of kafka-python 3.0.x that every close can race into.

    A client closed from our thread sets its transport's socket to None while the library's IO
    thread may be between "the socket is readable" and its `recv`; that thread then logs
    "Error receiving network data closing socket" at ERROR, with a traceback ending in
    `AttributeError: 'NoneType' object has no attribute 'recv'` (seen once in seven demo runs,
    at shutdown). Nothing else sets that socket to None, and the connection was being closed
    on purpose: the record says nothing a user can act on. Every other record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, AttributeError) and "'NoneType' object has no attribute 'recv'" in str(exc))


logging.getLogger("kafka.net.transport").addFilter(_CloseRaceFilter())


def _security(cfg: KafkaConfig) -> dict:
    out = {"security_protocol": cfg.security_protocol}
    for ours, theirs in (("sasl_mechanism", "sasl_mechanism"), ("sasl_username", "sasl_plain_username"),
                         ("sasl_password", "sasl_plain_password"), ("ssl_cafile", "ssl_cafile"),
                         ("ssl_certfile", "ssl_certfile"), ("ssl_keyfile", "ssl_keyfile")):
        if getattr(cfg, ours) is not None:
            out[theirs] = getattr(cfg, ours)
    return out


def _connect(factory, cfg: KafkaConfig, role: str | None, **kwargs):
    options = with_extra({**_security(cfg), **kwargs}, cfg, role, _OWNED)
    try:
        return factory(bootstrap_servers=cfg.bootstrap_servers.split(","), **options)
    except KafkaTimeoutError as exc:
        raise BrokerError(f"no Kafka broker reachable at {cfg.bootstrap_servers} "
                          f"(kafka.bootstrap_servers): {exc}") from exc
    except KafkaError as exc:
        raise BrokerError(f"cannot connect to {cfg.bootstrap_servers}: {exc}") from exc


class Consumer:
    def __init__(self, cfg: KafkaConfig, topics, group, *, from_beginning=True, partitions=None,
                 client_id="arnstream"):
        session = cfg.session_timeout_ms
        self._consumer = _connect(
            KafkaConsumer, cfg, "consumer", group_id=group, client_id=client_id, enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            session_timeout_ms=session, heartbeat_interval_ms=max(100, session // 4),
            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20,
        )
        self._from_beginning = from_beginning
        self._topic_ids: dict[str, object] = {}  # topic -> the id its positions belong to
        if partitions is not None:
            tps = [TopicPartition(t, p) for t, p in partitions]
            self._consumer.assign(tps)
            if from_beginning:
                self._consumer.seek_to_beginning(*tps)
        else:
            self._consumer.subscribe(topics)

    def poll_batch(self, max_records: int, timeout_ms: int) -> list[Message]:
        self._reset_recreated_topics()
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise BrokerError(f"poll failed: {exc}") from exc
        out = []
        for records in polled.values():
            out.extend(Message(r.topic, r.partition, r.offset, r.value, r.key,
                               tuple((k, v) for k, v in (r.headers or ())), r.timestamp)
                       for r in records)
        return out

    def _reset_recreated_topics(self) -> None:
        """A topic deleted and created again (a broker that lost its data) leaves kafka-python
        with positions in the old log: meaningless in the new one, and when one equals the new
        log's end nothing is ever read again (seen with the embedded broker's restart). Move
        such partitions to their committed offset, else to where the reset policy starts."""
        cluster = self._consumer._client.cluster  # kafka-python keeps topic ids only there
        assigned = self._consumer.assignment()
        for topic in {tp.topic for tp in assigned}:
            topic_id = cluster.topic_id(topic)
            known = self._topic_ids.get(topic)
            if topic_id is None or topic_id == known:
                continue
            if known is not None:
                try:
                    self._reset_positions([tp for tp in assigned if tp.topic == topic])
                except KafkaError as exc:  # tried again at the next poll
                    log.warning("topic %s was recreated; resetting its positions failed: %s", topic, exc)
                    continue
            self._topic_ids[topic] = topic_id

    def _reset_positions(self, tps) -> None:
        for tp in tps:
            committed = self._consumer.committed(tp, timeout_ms=10_000)
            if committed is not None:
                self._consumer.seek(tp, committed)
                where = f"committed offset {committed}"
            elif self._from_beginning:
                self._consumer.seek_to_beginning(tp)
                where = "its beginning"
            else:
                self._consumer.seek_to_end(tp)
                where = "its end"
            log.warning("topic %s was recreated: partition %d starts again at %s", tp.topic, tp.partition, where)

    def commit(self, offsets):
        if not offsets:
            return
        try:
            self._consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                   for (t, p), o in offsets.items()})
        except KafkaError as exc:
            raise BrokerError(f"offset commit failed: {exc}") from exc

    def seek(self, offsets):
        for (t, p), o in offsets.items():
            tp = TopicPartition(t, p)
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, o)

    def assignment(self):
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def high_watermarks(self):
        out = {}
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is not None:
                out[(tp.topic, tp.partition)] = hw
        return out

    def close(self):
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:  # closing a consumer whose broker is gone must not raise
            log.warning("consumer close: %s", exc)


class Producer:
    def __init__(self, cfg: KafkaConfig, client_id="arnstream"):
        self._producer = _connect(
            KafkaProducer, cfg, "producer", client_id=client_id, acks=_acks(cfg.acks),
            linger_ms=cfg.linger_ms, compression_type=check_compression(cfg),
            batch_size=1 << 20, max_request_size=16 << 20, retries=5,
            max_in_flight_requests_per_connection=1,  # retries must not reorder a partition
        )
        self._pending = []

    def send(self, topic, value, key=None, headers=None):
        try:
            self._pending.append(self._producer.send(topic, value=value, key=key, headers=headers or None))
        except KafkaError as exc:
            raise BrokerError(f"send to {topic} failed: {exc}") from exc

    def send_many(self, topic, values, keys):
        for value, key in zip(values, keys):
            self.send(topic, value, key)

    def flush(self, timeout_s=30.0):
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise BrokerError(f"flush failed: {exc}") from exc
        failed = [f for f in pending if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise BrokerError(f"{len(failed)} of {len(pending)} records were not written: {first}")

    def close(self):
        try:
            self._producer.close(timeout=5)
        except KafkaError as exc:
            # kafka-python's close() raises from its flush before it stops the sender thread,
            # which then retries forever; if the broker lost its state and hands this producer's
            # id to the next one, those retries land and the successor's records are dropped
            # as duplicates. Kill the sender: its unsent records are failed, never written.
            log.warning("producer close: %s; dropping its unacknowledged records", exc)
            sender = self._producer._sender
            sender.force_close()
            sender.join(5)
            if sender.is_alive():
                log.error("the producer's sender thread did not stop within 5 s")


def _acks(value: str):
    return "all" if value in ("all", "-1") else int(value)


def ensure_topics(cfg: KafkaConfig, names, partitions):
    admin = _connect(KafkaAdminClient, cfg, None, client_id="arnstream-admin")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics {names}: {exc}") from exc
    finally:
        admin.close()


def list_partitions(cfg: KafkaConfig, topic):
    consumer = _connect(KafkaConsumer, cfg, "consumer", client_id="arnstream-meta")
    try:
        parts = consumer.partitions_for_topic(topic)
        return sorted(parts or ())
    finally:
        consumer.close()
