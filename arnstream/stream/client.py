"""A thin client layer: the processing code sees `Consumer`/`Producer`, never a Kafka library.

Two backends implement it: kafka-python (the default, pure Python; needs `crc32c` for speed)
and confluent-kafka (librdkafka; the `confluent` extra). Both commit offsets explicitly,
never automatically, so a batch's offsets are committed only after its output is written.
"""

from __future__ import annotations

import logging
from operator import attrgetter
from typing import NamedTuple, Protocol

from ..config import KafkaConfig
from ..errors import BrokerError, ConfigError

CLIENTS = ("kafka-python", "confluent")

log = logging.getLogger(__name__)


class Message(NamedTuple):
    """One consumed record. A NamedTuple: built once per record on the hot path, it costs
    a fifth of a frozen dataclass."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


_topic, _partition, _offset = attrgetter("topic"), attrgetter("partition"), attrgetter("offset")


class Consumer(Protocol):
    def poll_batch(self, max_records: int, timeout_ms: int) -> list[Message]: ...

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit `next offset to read` per (topic, partition)."""

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Rewind to these offsets (used to re-read a batch whose output failed)."""

    def assignment(self) -> set[tuple[str, int]]: ...

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        """The broker's end offsets as last reported (may lag; never required)."""

    def close(self) -> None: ...


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None: ...

    def send_many(self, topic: str, values: list[bytes], keys: list[bytes | None]) -> None:
        """`send` for each (value, key) pair, without headers: serve's scores, one per record."""

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every send; raise BrokerError if any was not acknowledged."""

    def close(self) -> None: ...


def open_consumer(cfg: KafkaConfig, topics: list[str] | None, group: str | None, *,
                  from_beginning: bool = True, partitions: list[tuple[str, int]] | None = None,
                  client_id: str = "arnstream") -> Consumer:
    """A consumer subscribed to `topics` in `group`, or assigned `partitions` (no group)."""
    return _backend(cfg).Consumer(cfg, topics, group, from_beginning=from_beginning,
                                  partitions=partitions, client_id=client_id)


def open_reader(cfg: KafkaConfig, topic: str, client_id: str = "arnstream-reader") -> Consumer:
    """Every partition of `topic` from its beginning, without a group (nothing is committed)."""
    partitions = list_partitions(cfg, topic)
    if not partitions:
        raise BrokerError(f"topic '{topic}' does not exist on {cfg.bootstrap_servers}")
    return open_consumer(cfg, None, None, partitions=[(topic, p) for p in partitions], client_id=client_id)


def open_producer(cfg: KafkaConfig, client_id: str = "arnstream") -> Producer:
    return _backend(cfg).Producer(cfg, client_id=client_id)


def ensure_topics(cfg: KafkaConfig, names: list[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    _backend(cfg).ensure_topics(cfg, names, partitions)


def list_partitions(cfg: KafkaConfig, topic: str) -> list[int]:
    return _backend(cfg).list_partitions(cfg, topic)


def validate(cfg: KafkaConfig) -> None:
    """Fail at start-up, naming the key, rather than when the first batch needs the client."""
    _backend(cfg)
    check_compression(cfg)
    if cfg.acks not in ("all", "-1", "0", "1"):
        raise ConfigError("kafka.acks", f"expected all, 1 or 0, got {cfg.acks!r}")
    if not cfg.bootstrap_servers.strip():
        raise ConfigError("kafka.bootstrap_servers", "must name at least one host:port")


def _backend(cfg: KafkaConfig):
    if cfg.client == "kafka-python":
        from . import _kafka_python as backend
    elif cfg.client == "confluent":
        try:
            from . import _confluent as backend
        except ImportError as exc:
            raise ConfigError("kafka.client", "confluent needs the confluent-kafka package: "
                              "pip install 'arnstream[confluent]'") from exc
    else:
        raise ConfigError("kafka.client", f"expected one of {CLIENTS}, got {cfg.client!r}")
    return backend


def check_compression(cfg: KafkaConfig) -> str | None:
    value = (cfg.compression or "none").lower()
    if value not in ("none", "gzip", "snappy", "lz4", "zstd"):
        raise ConfigError("kafka.compression", f"expected none, gzip, snappy, lz4 or zstd, got {cfg.compression!r}")
    return None if value == "none" else value


def renew_producer(cfg: KafkaConfig, failed: Producer, stop, client_id: str) -> Producer | None:
    """Replace a producer whose output was not acknowledged (an idempotent producer whose
    broker lost its state is fenced for good). Retries until it connects or `stop` is set."""
    try:
        failed.close()
    except Exception as exc:  # a broken producer may fail to close; it is dropped anyway
        log.debug("closing the failed producer: %s", exc)
    while not stop.is_set():
        try:
            return open_producer(cfg, client_id=client_id)
        except BrokerError as exc:
            log.warning("cannot reconnect the producer: %s; retrying", exc)
            stop.wait(2.0)
    return None


# why arnstream sets an option itself (from its own config key, or because "lose nothing"
# needs it); each backend maps its client's option names onto these
OWNED_BECAUSE = {
    "servers": "set kafka.bootstrap_servers instead", "group": "set kafka.group instead",
    "client_id": "arnstream names each client by its role", "acks": "set kafka.acks instead",
    "compression": "set kafka.compression instead", "linger": "set kafka.linger_ms instead",
    "session": "set kafka.session_timeout_ms instead",
    "commits": "arnstream commits offsets itself, after the output is written",
    "offset_reset": "arnstream chooses where a new group starts reading",
}


def with_extra(options: dict, cfg: KafkaConfig, role: str | None, owned: dict[str, str]) -> dict:
    """A client's options with the user's verbatim ones on top (`kafka.extra`, then
    `kafka.<role>_extra`): they override arnstream's tuning defaults (batch, queue and fetch
    sizes). A key in `owned` (key -> why) is one arnstream sets itself, from its own config
    or for at-least-once delivery, and is refused with its name."""
    sources = [("kafka.extra", cfg.extra)]
    if role is not None:
        sources.append((f"kafka.{role}_extra", getattr(cfg, f"{role}_extra")))
    merged = dict(options)
    for where, extra in sources:
        for key, value in (extra or {}).items():
            if key in owned:
                raise ConfigError(f"{where}.{key}", owned[key])
            merged[key] = value
    return merged


def next_offsets(messages: list[Message]) -> dict[tuple[str, int], int]:
    """What to commit after `messages`: the next offset per (topic, partition), from the last
    message of each partition. A poll returns each partition in offset order, so the last is
    the highest; in a list that is not, an earlier offset is committed and records are read
    again, never skipped. (C-level: a max() per message cost ~1 us of serve's main thread.)"""
    last = dict(zip(zip(map(_topic, messages), map(_partition, messages)), map(_offset, messages)))
    return {key: offset + 1 for key, offset in last.items()}


def first_offsets(messages: list[Message]) -> dict[tuple[str, int], int]:
    """Where to seek to read `messages` again."""
    out: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        out[key] = min(out.get(key, m.offset), m.offset)
    return out


__all__ = ["BrokerError", "CLIENTS", "Consumer", "Message", "Producer", "ensure_topics", "first_offsets",
           "list_partitions", "next_offsets", "open_consumer", "open_producer", "open_reader", "renew_producer"]
