"""Analyst labels in, retraining out: the thread that serve runs beside its scoring loop.

It reads `flows-labels` in its own consumer group (`<kafka.group>-labels`: each label reaches
one replica; replicas on one host share the SQLite store, so any of them can join it), joins
each label to its stored record, sends what cannot be joined or parsed to the dead-letter
topic with the reason, and commits after that output is acknowledged (a re-read label is
harmless: labels are idempotent). Every `feedback.maintain_interval_s` it evicts old scored
records and asks the retrain policy; a due retraining runs here, never in the poll loop, so
scoring goes on meanwhile (label reading pauses; the labels wait in Kafka). On shutdown a
retraining in flight is cancelled at the end of its current epoch.
"""

from __future__ import annotations

import logging
import threading
import time

from ..config import Config
from ..errors import BrokerError, RecordError
from ..feedback import FeedbackStore, parse_label, retrain, retrain_due
from ..feedback.labels import Label
from ..feedback.retrain import RetrainCancelled, RetrainOutcome
from ..observability import ServeMetrics
from ..registry import Registry
from .client import (
    Message,
    first_offsets,
    list_partitions,
    next_offsets,
    open_consumer,
    open_producer,
    renew_producer,
)
from .scoring import dead_letter, too_large_reason

log = logging.getLogger(__name__)

LABEL_BATCH = 1000


def open_store(cfg: Config) -> FeedbackStore:
    f = cfg.feedback
    return FeedbackStore(f.store, max_age_s=f.max_age_s, max_records=f.max_records)


class FeedbackWorker(threading.Thread):
    def __init__(self, cfg: Config, registry: Registry, metrics: ServeMetrics, stop: threading.Event):
        super().__init__(name="arnstream-feedback", daemon=True)
        self.cfg, self.registry, self.metrics, self.stop = cfg, registry, metrics, stop
        self.outcomes: list[RetrainOutcome] = []  # for the caller's summary and for tests
        self.retraining = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by serve; scoring itself goes on
            self.error = exc
            log.exception("feedback thread stopped: %s", exc)

    def _run(self) -> None:
        cfg = self.cfg
        store = open_store(cfg)
        group = f"{cfg.kafka.group}-labels"
        missing = False
        try:
            missing = not list_partitions(cfg.kafka, cfg.topics.labels)
        except BrokerError as exc:  # the consumer below retries by itself; this check is advice only
            log.warning("cannot check the labels topic: %s", exc)
        if missing:
            log.warning("labels topic %s does not exist yet (create it, or run serve with --create-topics); "
                        "labels are read once it does", cfg.topics.labels)
        consumer = open_consumer(cfg.kafka, [cfg.topics.labels], group, from_beginning=True,
                                 client_id="arnstream-feedback")
        producer = open_producer(cfg.kafka, client_id="arnstream-feedback")
        log.info("reading labels from %s (group %s), feedback store %s", cfg.topics.labels, group, store.path)
        last_maintain = 0.0
        try:
            while not self.stop.is_set():
                try:
                    messages = consumer.poll_batch(LABEL_BATCH, cfg.serve.poll_timeout_ms)
                except BrokerError as exc:
                    log.warning("labels poll: %s; retrying", exc)
                    self.stop.wait(1.0)
                    continue
                if messages:
                    producer = self.ingest(messages, store, consumer, producer)
                if time.monotonic() - last_maintain >= cfg.feedback.maintain_interval_s:
                    last_maintain = time.monotonic()
                    self.maintain(store)
        finally:
            consumer.close()
            producer.close()
            store.close()

    def ingest(self, messages: list[Message], store: FeedbackStore, consumer, producer):
        """Join a batch of labels; dead-letter the bad ones; commit once that output is written."""
        counts: dict[str, int] = {}
        max_bytes = self.cfg.serve.max_record_bytes
        parsed: list[Label | RecordError] = []
        for msg in messages:
            try:
                if msg.value is not None and len(msg.value) > max_bytes:  # sent on whole, it could break Kafka's limit
                    raise RecordError(None, too_large_reason(len(msg.value), max_bytes))
                parsed.append(parse_label(msg.value))
            except RecordError as exc:
                parsed.append(exc)
        # joined in one go: each label's record is found in one walk over the store, not one scan each
        joined = iter(store.add_labels([p for p in parsed if not isinstance(p, RecordError)]))
        for msg, item in zip(messages, parsed):
            outcome = item if isinstance(item, RecordError) else next(joined)
            if isinstance(outcome, RecordError):
                producer.send(self.cfg.topics.deadletter, *_dead_parts(msg, outcome, max_bytes))
                outcome = "rejected"
            counts[outcome] = counts.get(outcome, 0) + 1
        try:
            producer.flush(self.cfg.serve.output_timeout_s)
        except BrokerError as exc:
            log.warning("dead letters of %d labels not written (%s); re-reading them", len(messages), exc)
            consumer.seek(first_offsets(messages))
            return renew_producer(self.cfg.kafka, producer, self.stop, "arnstream-feedback") or producer
        try:
            consumer.commit(next_offsets(messages))
        except BrokerError as exc:
            log.warning("labels commit failed (%s); they may be read again (harmless)", exc)
        for outcome, n in counts.items():
            self.metrics.labels.labels(outcome).inc(n)
        log.info("labels: %s", ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
        return producer

    def maintain(self, store: FeedbackStore) -> None:
        evicted = store.maintain()
        if evicted.by_age:
            self.metrics.store_evicted.labels("age").inc(evicted.by_age)
        if evicted.by_size:
            self.metrics.store_evicted.labels("size").inc(evicted.by_size)
        self.metrics.store_records.set(store.count_scored())
        trigger = retrain_due(self.cfg, store)
        if trigger is not None:
            self.run_retrain(store, trigger)

    def run_retrain(self, store: FeedbackStore, trigger: str) -> RetrainOutcome:
        self.retraining = True
        try:
            outcome = retrain(self.cfg, store, self.registry, trigger=trigger, progress=self._stop_between_epochs)
        finally:
            self.retraining = False
        record_outcome(self.metrics, outcome)
        self.outcomes.append(outcome)
        return outcome

    def _stop_between_epochs(self, record) -> None:
        if self.stop.is_set():  # SIGTERM must not wait for a whole retraining
            raise RetrainCancelled(f"serve is stopping; retraining cancelled after epoch {record.epoch}")


def record_outcome(metrics: ServeMetrics, outcome: RetrainOutcome) -> None:
    metrics.retrain.labels(outcome.outcome).inc()
    metrics.retrain_seconds.set(outcome.seconds)
    if outcome.gate is not None:
        metrics.gate_auc.labels("candidate").set(outcome.gate.candidate["auc"])
        if outcome.gate.current is not None:
            metrics.gate_auc.labels("current").set(outcome.gate.current["auc"])


def _dead_parts(msg: Message, exc: RecordError, max_bytes: int):
    out = dead_letter(msg, exc.field, exc.reason, keep_bytes=max_bytes)
    return out.value, out.key, out.headers
