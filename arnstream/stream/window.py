"""Read a training window of records from a topic (no consumer group, nothing committed).

The window ends at `max_records`, past `to_ts`, or when the topic has been quiet for
`idle_timeout_s` (the end of what was there: a broker's end offsets are not trusted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from ..config import KafkaConfig
from ..errors import ConfigError
from .client import open_reader

log = logging.getLogger(__name__)


@dataclass
class Window:
    records: list[dict] = field(default_factory=list)
    read: int = 0
    undecodable: int = 0
    outside: int = 0  # outside the --from/--to range


def parse_time(text: str | None, flag: str) -> float | None:
    """Epoch seconds or an ISO-8601 time (UTC unless it carries an offset)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(flag, f"expected epoch seconds or an ISO-8601 time, got {text!r}") from exc
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def read_window(cfg: KafkaConfig, topic: str, *, max_records: int | None = None,
                from_ts: float | None = None, to_ts: float | None = None, timestamp_field: str | None = None,
                idle_timeout_s: float = 5.0, on_progress: Callable[[Window], None] | None = None) -> Window:
    consumer = open_reader(cfg, topic, client_id="arnstream-train")
    window = Window()
    last_data = time.monotonic()
    try:
        while max_records is None or len(window.records) < max_records:
            messages = consumer.poll_batch(10000, 500)
            if not messages:
                if time.monotonic() - last_data >= idle_timeout_s:
                    break
                continue
            last_data = time.monotonic()
            past_end = False
            for msg in messages:
                window.read += 1
                try:
                    record = orjson.loads(msg.value or b"")
                except orjson.JSONDecodeError:
                    window.undecodable += 1
                    continue
                if not isinstance(record, dict):
                    window.undecodable += 1
                    continue
                ts = _timestamp(record, timestamp_field, msg.timestamp_ms)
                if (from_ts is not None and ts is not None and ts < from_ts):
                    window.outside += 1
                    continue
                if to_ts is not None and ts is not None and ts > to_ts:
                    window.outside += 1
                    past_end = True
                    continue
                window.records.append(record)
                if max_records is not None and len(window.records) >= max_records:
                    break
            if on_progress is not None:
                on_progress(window)
            if past_end and window.outside > 10000:
                break  # well past the window's end in every partition we read
    finally:
        consumer.close()
    return window


def _timestamp(record: dict, name: str | None, message_ms: int | None) -> float | None:
    if name is not None:
        try:
            return float(record[name])
        except (KeyError, TypeError, ValueError):
            pass
    return message_ms / 1000 if message_ms else None
