"""The scoring service: poll a batch, score it, write the outputs, then commit (at-least-once).

Several processes in one consumer group split the partitions. A promoted model is picked up
between batches, without a restart. Before any model is promoted the service waits (it does
not consume, so nothing is skipped) and says so in the log. SIGTERM (via `stop`) finishes the
batch in hand, commits and exits.

Two batches are in hand at a time. Each loop: poll batch N+1 and decode it, hand it to a
scorer thread (the model only: a traced TorchScript graph, which runs without the GIL;
models/torch_detector.py), then build batch N's output records from its scores, write them
and commit N. Batch N's offsets are committed only after its own output is written, and
nothing of N+1 is written before that, so a crash duplicates at most one batch. If N's output
fails, N and N+1 are both re-read. While a batch waits to be written, a poll waits at most
IN_FLIGHT_POLL_MS, so an idle stream does not hold back its last batch. (Building the output
records on the scorer thread measured no faster; committing N only after the next poll, so
that its store write overlaps that poll, measured 10% slower: more CPU per record; also
flushing N's output only then measured no faster: docs/streaming.md.)

With `feedback.enabled`, every scored record is written to the feedback store by a writer
thread while the batch's output is produced, and the offsets are committed only after both
(sqlite releases the GIL, so the write overlaps the producer's network wait: measured 27%
of confluent serve throughput when done in line). A FeedbackWorker thread reads labels and
retrains (stream/feedback.py).
"""

from __future__ import annotations

import collections
import gc
import logging
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..errors import ArnstreamError, BrokerError
from ..observability import ServeMetrics
from ..registry import Registry, version_number
from .client import (
    Message,
    first_offsets,
    next_offsets,
    open_consumer,
    open_producer,
    renew_producer,
    validate,
)
from .feedback import FeedbackWorker, open_store
from .scoring import DecodedBatch, ScoringModel, decode_batch, model_scores, result_of

log = logging.getLogger(__name__)

DRIFT_SAMPLE = 64  # scores per batch fed to ADWIN: drift is a property of the distribution
IN_FLIGHT_POLL_MS = 50  # longest poll while a scored batch waits to be written
# The cyclic collector's thresholds while serving (Python's default: 700, 10, 10). Serve's
# garbage is freed by reference counting (decoded records, output dicts: no cycles), yet every
# 700 net allocations started a collection that walked the live batches, some of them a full
# one: ~0.7 us per record with the GIL held (docs/streaming.md). The first threshold counts
# allocations minus frees, so at 50,000 a collection runs only once that many objects outlive
# their batch (cycles, if any), which also bounds what cycles can hold.
GC_THRESHOLDS = (50_000, 20, 20)


@dataclass
class InFlight:
    """A batch decoded and handed to the scorer thread, written after the next poll."""

    decoded: DecodedBatch
    scores: Future  # of the model's scores (np.ndarray)
    started: float  # monotonic, for the batch latency


@dataclass
class ServeStats:
    consumed: int = 0
    scored: int = 0
    rejected: int = 0
    anomalies: int = 0
    batches: int = 0
    drift_events: int = 0
    first_batch_at: float | None = None  # monotonic clock, for throughput reports
    last_batch_at: float | None = None
    recent_batch_seconds: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10000))


class ScoreDriftMonitor:
    """river's ADWIN on the anomaly score; a detection is a metric and a log line."""

    def __init__(self, delta: float):
        from river.drift import ADWIN

        self._make = lambda: ADWIN(delta=delta)
        self.adwin = self._make()

    def reset(self) -> None:  # a new model means a new score distribution
        self.adwin = self._make()

    def update(self, scores: np.ndarray) -> bool:
        if len(scores) == 0:
            return False
        step = max(1, len(scores) // DRIFT_SAMPLE)
        drifted = False
        for value in scores[::step].tolist():
            self.adwin.update(value)
            drifted = drifted or self.adwin.drift_detected
        return drifted


class Service:
    def __init__(self, cfg: Config, registry: Registry, metrics: ServeMetrics | None = None,
                 topic: str | None = None, stop: threading.Event | None = None):
        validate(cfg.kafka)
        self.cfg = cfg
        self.registry = registry
        self.metrics = metrics or ServeMetrics()
        self.topic = topic or cfg.topics.live
        self.stop = stop or threading.Event()
        self.model: ScoringModel | None = None
        self.stats = ServeStats()
        self.drift = ScoreDriftMonitor(cfg.serve.drift_delta)
        self._last_check = 0.0
        self._unloadable: str | None = None
        self._committed: dict[tuple[str, int], int] = {}
        self._topics = {"scores": cfg.topics.scores, "alerts": cfg.topics.alerts,
                        "deadletter": cfg.topics.deadletter}
        self._store_writer: ThreadPoolExecutor | None = None  # one thread: it owns the sqlite connection
        self._store = None
        self._scorer: ThreadPoolExecutor | None = None  # one thread: runs the model on the next batch
        self.feedback: FeedbackWorker | None = None

    # ---------------------------------------------------------------- model
    def wait_for_model(self) -> bool:
        """Block until a model is promoted (or stop is set); True when one is loaded."""
        announced = 0.0
        while not self.stop.is_set():
            if self.maybe_reload(force=True):
                return True
            if time.monotonic() - announced >= self.cfg.serve.wait_for_model_s:
                log.info("no loadable model promoted in %s yet; waiting (run `arnstream train` or "
                         "`arnstream models promote`); nothing is consumed meanwhile", self.registry.root)
                announced = time.monotonic()
            self.stop.wait(0.5)
        return False

    def maybe_reload(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last_check < self.cfg.serve.reload_interval_s:
            return False
        self._last_check = now
        name = self.registry.current()
        if name is None or name == self._unloadable or (self.model is not None and self.model.version == name):
            return False
        try:
            model = ScoringModel.from_artifact(name, self.registry.load(name))
        except ArnstreamError as exc:  # a broken promotion must not take the service down
            self._unloadable = name  # said once; tried again when another version is promoted
            log.error("cannot load promoted model %s, keeping %s: %s", name,
                      self.model.version if self.model else "none", exc)
            return False
        previous = self.model.version if self.model is not None else None
        self.model = model  # the old one lives on only while a batch it scored is in flight
        _freeze_long_lived()
        self.drift.reset()
        self.metrics.model_version.set(version_number(name))
        self.metrics.model_threshold.set(model.threshold)
        if previous is not None:
            self.metrics.model_reloads.inc()
        log.info("model %s in use (threshold %.6g%s)", name, model.threshold,
                 f", replacing {previous}" if previous else "")
        return True

    # ----------------------------------------------------------------- loop
    def run(self) -> ServeStats:
        import torch

        torch.set_num_threads(self.cfg.serve.threads)
        if not self.wait_for_model():
            return self.stats
        if self.cfg.feedback.enabled:
            self._store_writer = ThreadPoolExecutor(1, thread_name_prefix="arnstream-store")
            self._store = self._store_writer.submit(open_store, self.cfg).result()
            self.feedback = FeedbackWorker(self.cfg, self.registry, self.metrics, self.stop)
            self.feedback.start()
        consumer = open_consumer(self.cfg.kafka, [self.topic], self.cfg.kafka.group, from_beginning=True,
                                 client_id="arnstream-serve")
        self._producer = open_producer(self.cfg.kafka, client_id="arnstream-serve")
        # torch's thread count is per calling thread: set it where the discriminator runs
        self._scorer = ThreadPoolExecutor(1, thread_name_prefix="arnstream-score", initializer=torch.set_num_threads,
                                          initargs=(self.cfg.serve.threads,))
        self.metrics.up.set(1)
        log.info("serving %s in group %s (client %s), outputs %s", self.topic, self.cfg.kafka.group,
                 self.cfg.kafka.client, ", ".join(self._topics.values()))
        in_flight: InFlight | None = None
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            while not self.stop.is_set():
                self.maybe_reload()
                # a batch in flight is written once this poll returns: an idle stream must not hold it
                timeout = self.cfg.serve.poll_timeout_ms
                messages = self._poll(consumer, min(timeout, IN_FLIGHT_POLL_MS) if in_flight else timeout)
                started = self._start(messages) if messages else None
                polled_after = started.decoded.messages if started else []
                if in_flight is not None and not self._finish(in_flight, consumer, polled_after):
                    started = None  # re-read with in_flight
                in_flight = started
                self._update_lag(consumer)
            if in_flight is not None:  # stop requested: the batch in hand is written and committed
                self._finish(in_flight, consumer)
        finally:
            gc.set_threshold(*thresholds)  # serve may run inside a longer process (demo, tests)
            self.metrics.up.set(0)
            consumer.close()
            self._producer.close()
            self._scorer.shutdown()
            if self.feedback is not None:
                self.stop.set()  # the worker shares the stop event; a retraining stops after its epoch
                self.feedback.join()
                self._store_writer.submit(self._store.close).result()
                self._store_writer.shutdown()
            log.info("stopped after %d batches: %d consumed, %d scored, %d rejected, %d anomalies",
                     self.stats.batches, self.stats.consumed, self.stats.scored, self.stats.rejected,
                     self.stats.anomalies)
        return self.stats

    def _poll(self, consumer, timeout_ms: int) -> list[Message]:
        try:
            return consumer.poll_batch(self.cfg.serve.batch_size, timeout_ms)
        except BrokerError as exc:
            log.warning("poll: %s; retrying", exc)
            self.stop.wait(1.0)
            return []

    def _start(self, messages: list[Message]) -> InFlight:
        """Decode and encode the batch here; the scorer thread runs the model on it while this
        thread writes and commits the previous batch."""
        started = time.monotonic()
        decoded = decode_batch(messages, self.model, self.cfg.serve.max_record_bytes)
        return InFlight(decoded, self._scorer.submit(model_scores, decoded), started)

    def _finish(self, batch: InFlight, consumer, polled_after: list[Message] = ()) -> bool:
        """Output records from the scores, write them, then commit (after the feedback-store
        write, which runs meanwhile). On an output failure nothing is committed, the
        batch and what was polled after it are re-read from their first offsets, and False is
        returned."""
        decoded = batch.decoded
        result = result_of(decoded, batch.scores.result(), self.cfg.serve.top_features, self._store is not None)
        stored = None
        if self._store is not None:
            stored = self._store_writer.submit(self._store.put_scored_columns, result.retained)
        try:
            for out in result.outputs:
                self._producer.send(self._topics[out.topic_key], out.value, out.key, out.headers)
            self._producer.send_many(self._topics["scores"], result.score_values, result.score_keys)
            self._producer.flush(self.cfg.serve.output_timeout_s)
        except BrokerError as exc:
            self.metrics.output_failures.inc()
            log.warning("output of a batch of %d (model %s) was not written: %s; re-reading it "
                        "with a new producer", len(decoded.messages), decoded.model.version, exc)
            self._wait_stored(stored, result.n_scored)  # re-read: the same rows are written again
            consumer.seek(first_offsets(decoded.messages + list(polled_after)))
            self.stop.wait(1.0)
            self._producer = renew_producer(self.cfg.kafka, self._producer, self.stop,
                                            "arnstream-serve") or self._producer
            return False
        self._wait_stored(stored, result.n_scored)
        offsets = next_offsets(decoded.messages)
        try:
            consumer.commit(offsets)
            self._committed.update(offsets)
        except BrokerError as exc:  # the output is written: a re-read only duplicates it
            log.warning("commit failed (%s); the batch may be scored again", exc)
        self._count(decoded, result, time.monotonic() - batch.started)
        return True

    def _wait_stored(self, stored: Future | None, n: int) -> None:
        """Before the commit: the records are in the feedback store (or the failure is counted)."""
        if stored is None:
            return
        try:
            stored.result()
        except sqlite3.Error as exc:  # the store serves feedback; scoring output comes first
            self.metrics.store_failures.inc()
            log.warning("feedback store write failed for %d records (labels for them will be "
                        "rejected as unknown): %s", n, exc)

    def _count(self, decoded: DecodedBatch, result, seconds: float) -> None:
        m, s, messages = self.metrics, self.stats, decoded.messages
        s.batches += 1
        s.last_batch_at = time.monotonic()
        s.first_batch_at = s.first_batch_at or s.last_batch_at - seconds
        s.recent_batch_seconds.append(seconds)
        s.consumed += len(messages)
        s.scored += result.n_scored
        s.rejected += len(result.rejected_reasons)
        s.anomalies += result.n_anomalies
        m.consumed.labels(self.topic).inc(len(messages))
        m.scored.labels(self.topic).inc(result.n_scored)
        m.anomalies.labels(self.topic).inc(result.n_anomalies)
        for reason in result.rejected_reasons:
            m.rejected.labels(reason).inc()
        _observe_many(m.score, result.scores)
        m.batch_seconds.observe(seconds)
        m.batch_records.observe(len(messages))
        if decoded.model is self.model and self.drift.update(result.scores):  # a reload reset ADWIN
            s.drift_events += 1
            m.drift.inc()
            log.warning("anomaly-score distribution shifted (ADWIN, model %s, mean of this batch %.4f)",
                        self.model.version, float(result.scores.mean()))

    def _update_lag(self, consumer) -> None:
        # The broker's end offsets may lag what we consumed: never report a negative lag.
        for (topic, partition), high in consumer.high_watermarks().items():
            done = self._committed.get((topic, partition))
            if done is not None:
                self.metrics.lag.labels(topic, str(partition)).set(max(0, high - done))


def _freeze_long_lived() -> None:
    """Take what lives now (modules, torch, the model) out of the cyclic collector's sight.

    Serve allocates a dozen containers per record, so full collections run every batch or
    two, and each walked the ~300k long-lived objects: measured on a batch of 5,000, decoding
    took 63 ms instead of 40 and building the outputs 57 instead of 36. Unfreezing first lets
    a replaced model's cycles, if any, be collected (at the next reload if a batch still held
    it)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _observe_many(histogram, values: np.ndarray) -> None:
    """Histogram.observe per value is slow in a hot loop; bucket with numpy, add per bucket."""
    if len(values) == 0:
        return
    bounds = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, n in zip(histogram._buckets, counts.tolist()):
        if n:
            bucket.inc(n)
    histogram._sum.inc(float(values.sum()))
