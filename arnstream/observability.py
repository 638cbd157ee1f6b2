"""Prometheus metrics: every metric arnstream exposes is defined here, once.

Names carry the `arnstream_` prefix and `_total` / `_seconds` suffixes; labels are bounded
(topic, partition, reason category, outcome), never a record id. Each service builds its
metrics on its own CollectorRegistry so tests can run several in one process.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .errors import ConfigError

log = logging.getLogger(__name__)

# p(anomaly | x) lies in [0, 1]; the either score (training.score_mode) is 0 at normal
# traffic's median and 1 at its 99th percentile, its thresholds near 1.2; the combined score is
# a sum of two robust z-scores: around 0 on normal traffic; both reach the hundreds on anomalies
SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999,
                 1.1, 1.25, 1.5, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.consumed = Counter("arnstream_records_consumed_total", "Records read from the input topic",
                                ["topic"], registry=r)
        self.scored = Counter("arnstream_records_scored_total", "Records scored", ["topic"], registry=r)
        self.rejected = Counter("arnstream_records_rejected_total",
                                "Records sent to the dead-letter topic, by reason", ["reason"], registry=r)
        self.anomalies = Counter("arnstream_anomalies_total", "Records scored above the alert threshold",
                                 ["topic"], registry=r)
        self.score = Histogram("arnstream_anomaly_score", "Anomaly score of scored records: p(anomaly | x) "
                               "or the score training.score_mode names", buckets=SCORE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("arnstream_batch_seconds",
                                       "Time from a batch's poll to its commit (in flight, it waits for the next poll)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batch_records = Histogram("arnstream_batch_records", "Records per polled batch",
                                       buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000), registry=r)
        self.lag = Gauge("arnstream_consumer_lag", "Records behind the end of the partition",
                         ["topic", "partition"], registry=r)
        self.model_version = Gauge("arnstream_model_version", "Number of the model version in use "
                                   "(0 = none yet)", registry=r)
        self.model_threshold = Gauge("arnstream_model_threshold", "Alert threshold of the model in use",
                                     registry=r)
        self.model_reloads = Counter("arnstream_model_reloads_total", "Promoted models picked up",
                                     registry=r)
        self.drift = Counter("arnstream_drift_events_total", "Shifts of the anomaly-score distribution "
                             "detected by ADWIN", registry=r)
        self.output_failures = Counter("arnstream_output_failures_total", "Batches whose output was not "
                                       "acknowledged (re-read, nothing committed)", registry=r)
        self.retrain = Counter("arnstream_retrain_total", "Retraining runs by outcome", ["outcome"],
                               registry=r)
        self.up = Gauge("arnstream_serve_up", "1 while the scoring loop runs", registry=r)
        # feedback: analyst labels, the store that joins them, retraining and its gate
        self.labels = Counter("arnstream_labels_total", "Analyst labels read, by outcome (new, replaced, "
                              "duplicate, outdated, rejected)", ["outcome"], registry=r)
        self.store_records = Gauge("arnstream_store_records", "Scored records kept for labels to join",
                                   registry=r)
        self.store_evicted = Counter("arnstream_store_evicted_total", "Scored records evicted from the "
                                     "feedback store, by reason (age, size)", ["reason"], registry=r)
        self.store_failures = Counter("arnstream_store_write_failures_total", "Batches whose scored "
                                      "records could not be written to the feedback store", registry=r)
        self.gate_auc = Gauge("arnstream_retrain_gate_auc", "AUC on held-out labelled feedback at the last "
                              "gate decision", ["model"], registry=r)
        self.retrain_seconds = Gauge("arnstream_retrain_last_seconds", "Duration of the last retraining",
                                     registry=r)


def start_exporter(address: str, registry: CollectorRegistry):
    """Serve /metrics on host:port (port 0: any free one); returns the server (or None when the
    address is empty). `exposed_address(server)` says where it listens."""
    if not address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError("serve.metrics_address", f"expected host:port, got {address!r}")
    try:
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise ConfigError("serve.metrics_address", f"cannot listen on {address}: {exc}") from exc
    log.info("metrics on http://%s/metrics", exposed_address(server))
    return server


def exposed_address(server) -> str:
    """host:port the exporter really listens on (the port chosen when 0 was asked)."""
    host, port = server.server_address[:2]
    return f"{host}:{port}"
