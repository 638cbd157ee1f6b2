"""Follow a topic from its beginning in a background thread (demo summaries, tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..config import KafkaConfig
from .client import Message, open_reader


class TopicTail:
    """Calls `on_message` for every message of `topic`, all partitions, without a group."""

    def __init__(self, cfg: KafkaConfig, topic: str, on_message: Callable[[Message], None]):
        self.cfg, self.topic, self.on_message = cfg, topic, on_message
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)
        self.error: Exception | None = None

    def start(self) -> "TopicTail":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            consumer = open_reader(self.cfg, self.topic, client_id=f"arnstream-tail-{self.topic}")
            try:
                while not self._stop.is_set():
                    for msg in consumer.poll_batch(10000, 200):
                        self.on_message(msg)
                        self.count += 1
            finally:
                consumer.close()
        except Exception as exc:  # surfaced by stop(); a tail must not die silently
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error
