"""`arnstream demo`: the whole pipeline on one machine, no outside service.

Starts the embedded broker, simulates normal traffic into the training topic, trains and
promotes a model, serves the live topic while the simulator injects attacks (and a few
malformed records), then prints what was scored and how well against the ground truth.

A simulated analyst closes the feedback loop: part-way through, it labels attacks the model
missed and alerts that were false alarms (from the simulator's ground truth, as a human
would from investigation); the labels go to `flows-labels`, serve retrains by its policy,
the gate decides, and the summary shows each model version's detection side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from ..config import Config
from ..errors import ArnstreamError
from ..evaluation.metrics import detection_metrics
from ..observability import ServeMetrics, exposed_address, start_exporter
from ..registry import Registry
from ..schema import FlowSchema
from ..trainer import alerting_params, train_on_records
from .broker import EmbeddedBroker, free_port
from .client import ensure_topics, open_producer
from .demo_options import DemoOptions
from .serve import Service
from .simulator import make_simulator, produce
from .tail import TopicTail
from .window import read_window

log = logging.getLogger(__name__)

DEMO_NEW_ALERT_BUDGET = 0.1  # retrain.max_new_alert_rate in the demo (its traffic is 5% attacks)
MALFORMED_EVERY = 500  # one malformed record per this many live records, to show dead letters


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_demo(cfg: Config, opts: DemoOptions) -> int:
    workdir = Path(opts.workdir)
    shutil.rmtree(workdir / "registry", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):  # records scored by an earlier demo's models
        (workdir / f"feedback.sqlite3{suffix}").unlink(missing_ok=True)
    cfg = dataclasses.replace(
        cfg, registry=dataclasses.replace(cfg.registry, dir=str(workdir / "registry")),
        feedback=dataclasses.replace(cfg.feedback, store=str(workdir / "feedback.sqlite3"), maintain_interval_s=2.0),
        # retrain once the analyst's labels are in, quickly enough to serve with the result for a
        # while: two thirds of the epochs on a small window (it shares the cores with scoring),
        # continuing from the model in use with a 10x discriminator learning rate (a short
        # retraining from scratch forgets attacks the first model caught, and the gate rejects
        # it: docs/feedback.md). The demo's traffic is 5% attacks, many of which the first model
        # lets pass: a good candidate alerts on a few percent of it (measured 1.9%), so the
        # alert budget is wider than the default's
        retrain=dataclasses.replace(cfg.retrain, after_labels=opts.labels or None, warm_start=True,
                                    params={"lr_d": 1e-4, **cfg.retrain.params},
                                    epochs=max(2, 2 * opts.epochs // 3),
                                    normal_window=min(cfg.retrain.normal_window, 10000),
                                    max_new_alert_rate=max(cfg.retrain.max_new_alert_rate, DEMO_NEW_ALERT_BUDGET)))
    started = time.monotonic()
    with open(workdir / "broker.log", "wb") as broker_log, EmbeddedBroker(log_file=broker_log) as broker:
        cfg.kafka.bootstrap_servers = broker.bootstrap
        cfg.kafka.session_timeout_ms = min(cfg.kafka.session_timeout_ms, 6000)  # faster group joins
        t = cfg.topics
        _say(f"[1/4] embedded broker on {broker.bootstrap} (pid {broker.process.pid})")
        ensure_topics(cfg.kafka, [t.normal, t.scores, t.alerts, t.deadletter, t.labels])
        ensure_topics(cfg.kafka, [t.live], partitions=opts.live_partitions)

        producer = open_producer(cfg.kafka, client_id="arnstream-demo")
        try:
            n = produce(producer, t.normal, make_simulator(cfg.serve.schema, seed=opts.seed, prefix="train",
                                                           rate=opts.rate), total=opts.normal_records)
        finally:
            producer.close()
        _say(f"[2/4] simulated {n} normal flows into {t.normal}; training {cfg.model.name} "
             f"for {opts.epochs} epochs")
        registry = Registry(cfg.registry.dir)
        window = read_window(cfg.kafka, t.normal, max_records=opts.normal_records, idle_timeout_s=2.0)
        params = _params(cfg, opts)
        result = train_on_records(window.records, FlowSchema.load(cfg.serve.schema), cfg, params,
                                  registry=registry, source={"topic": t.normal, "records": len(window.records)},
                                  seed=opts.seed,
                                  progress=lambda r: _say(f"      epoch {r.epoch}/{opts.epochs} "
                                                          f"({r.seconds:.1f}s)"))
        _say(f"      model {result.version} promoted: threshold {result.threshold:.4g} "
             f"(held-out false-positive rate {result.holdout_fpr:.4f}), {result.seconds:.0f}s")
        return _serve_live(cfg, opts, registry, started)


def _params(cfg: Config, opts: DemoOptions) -> dict:
    params = alerting_params(cfg)
    params["epochs"] = opts.epochs
    return params


def _serve_live(cfg: Config, opts: DemoOptions, registry: Registry, started: float) -> int:
    t = cfg.topics
    metrics = ServeMetrics()
    address = cfg.serve.metrics_address or f"127.0.0.1:{free_port()}"
    try:
        server = start_exporter(address, metrics.registry)
    except ArnstreamError:  # the default port is taken (another serve?): any free port will do
        address = f"127.0.0.1:{free_port()}"
        server = start_exporter(address, metrics.registry)
    address = exposed_address(server)
    stop_serving, stop_sim = threading.Event(), threading.Event()
    service = Service(cfg, registry, metrics, stop=stop_serving)
    serve_thread = threading.Thread(target=service.run, name="serve", daemon=True)
    serve_thread.start()

    truth: dict[str, str] = {}
    scored: dict[str, float] = {}
    alerted: set[str] = set()
    version_of: dict[str, str] = {}
    dead = [0]

    def on_score(msg):
        doc = orjson.loads(msg.value)
        scored[doc["id"]] = doc["score"]
        version_of[doc["id"]] = doc["model_version"]
        if doc["is_anomaly"]:
            alerted.add(doc["id"])

    tails = [TopicTail(cfg.kafka, t.scores, on_score).start(),
             TopicTail(cfg.kafka, t.deadletter, lambda m: dead.__setitem__(0, dead[0] + 1)).start()]
    produced = [0]
    malformed = [0]

    def simulate():
        sim = make_simulator(cfg.serve.schema, seed=opts.seed + 1, attacks=opts.attacks, attack_fraction=0.05,
                             rate=opts.rate, prefix="live")
        producer = open_producer(cfg.kafka, client_id="arnstream-demo-sim")

        def on_batch(records, labels):
            for rec, label in zip(records, labels):
                truth[rec["flow_id"]] = label
            produced[0] += len(records)
            while malformed[0] < produced[0] // MALFORMED_EVERY:  # a bad record now and then
                bad = [b'{"flow_id": "broken", "src_bytes": "lots"', b'{"flow_id": "x", "duration": NaN}',
                       b"not json at all"][malformed[0] % 3]
                producer.send(t.live, bad)
                malformed[0] += 1

        try:
            produce(producer, t.live, sim, rate=opts.rate, day_seconds=max(60.0, opts.live_seconds),
                    duration_s=None if opts.keep_running else opts.live_seconds,
                    total=None if not opts.keep_running else 10**12, stop=stop_sim.is_set, on_batch=on_batch)
        finally:
            producer.close()

    sim_thread = threading.Thread(target=simulate, name="simulate", daemon=True)
    sim_thread.start()
    _say(f"[3/4] serving {t.live} (schema {cfg.serve.schema}) ({opts.live_partitions} partitions) with attacks "
         f"{', '.join(opts.attacks)}; metrics on http://{address}/metrics; "
         + ("Ctrl-C stops" if opts.keep_running else f"{opts.live_seconds:.0f}s of live traffic"))
    interrupted = False
    live_started, analyst_done, analyst_looked = time.monotonic(), opts.labels <= 0, 0.0
    try:
        last, deadline = 0.0, None
        while sim_thread.is_alive() or len(scored) + dead[0] < produced[0] + malformed[0]:
            time.sleep(0.2)
            if (not analyst_done and time.monotonic() - live_started >= opts.analyst_after_s
                    and time.monotonic() - analyst_looked >= 1.0):
                # the analyst waits until there are enough misses and false alarms to label (a
                # model that misses little makes them rare; fewer labels would never reach
                # retrain.after_labels), or until the live traffic ends
                analyst_looked = time.monotonic()
                picks = _analyst_picks(opts.labels, dict(truth), dict(scored), set(alerted))
                if len(picks) >= opts.labels or not sim_thread.is_alive():
                    analyst_done = True
                    _analyst(cfg, picks, truth)
            if not serve_thread.is_alive():
                raise ArnstreamError("the scoring service stopped unexpectedly; see the log above")
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                _say(f"      produced {produced[0]}, scored {len(scored)}, alerts {len(alerted)}, "
                     f"dead letters {dead[0]}")
            if not sim_thread.is_alive():
                deadline = deadline or time.monotonic() + 60
                if time.monotonic() > deadline:
                    _say("      gave up waiting for the last scores")
                    break
    except KeyboardInterrupt:
        interrupted = True
        _say("      interrupted: stopping everything the demo started")
    finally:
        stop_sim.set()
        sim_thread.join(30)
        if service.feedback is not None and not interrupted:
            _await_retraining(service)
        stop_serving.set()
        serve_thread.join(30)
        for tail in tails:
            try:
                tail.stop()
            except ArnstreamError as exc:
                log.warning("tail: %s", exc)
        if server is not None:
            server.shutdown()
    outcomes = service.feedback.outcomes if service.feedback is not None else []
    _summary(truth, scored, alerted, dead[0], malformed[0], address, time.monotonic() - started)
    _feedback_summary(truth, scored, alerted, version_of, outcomes)
    return 130 if interrupted else 0


def _await_retraining(service) -> None:
    """Stopping serve cancels a retraining in flight; the demo lets it finish to report it."""
    if service.feedback.retraining:
        _say("      waiting for the retraining in flight")
    deadline = time.monotonic() + 300
    while service.feedback.retraining and time.monotonic() < deadline:
        time.sleep(0.5)


def _analyst_picks(n_labels: int, truth: dict, scored: dict, alerted: set) -> list[tuple[str, str]]:
    """Missed attacks (scored, no alert) and false alarms to label, as an investigation would
    find them: at most n_labels, about 70% missed attacks when there are false alarms to fill."""
    missed = [i for i in scored if truth.get(i, "normal") != "normal" and i not in alerted]
    false_alarms = [i for i in scored if truth.get(i) == "normal" and i in alerted]
    n_missed = min(len(missed), max(n_labels - len(false_alarms), round(0.7 * n_labels)))
    picks = [(i, "anomaly") for i in missed[:n_missed]]
    return picks + [(i, "normal") for i in false_alarms[:n_labels - len(picks)]]


def _analyst(cfg: Config, picks: list[tuple[str, str]], truth: dict) -> None:
    """Send the analyst's labels to the labels topic."""
    from ..feedback import make_label

    producer = open_producer(cfg.kafka, client_id="arnstream-demo-analyst")
    try:
        for rid, label in picks:
            producer.send(cfg.topics.labels, make_label(rid, label, "demo-analyst").to_json(), rid.encode())
        producer.flush()
    finally:
        producer.close()
    n_missed = sum(label == "anomaly" for _, label in picks)
    kinds = sorted({truth[i] for i, label in picks if label == "anomaly"})
    _say(f"      [analyst] labelled {n_missed} missed attacks ({', '.join(kinds) or 'none'}) and "
         f"{len(picks) - n_missed} false alarms on {cfg.topics.labels}; serve retrains after "
         f"{cfg.retrain.after_labels} labels")


def _feedback_summary(truth: dict, scored: dict, alerted: set, version_of: dict, outcomes: list) -> None:
    lines = []
    for o in outcomes:
        lines.append(f"      retraining ({o.trigger}): {o.outcome}: {o.detail} ({o.seconds:.0f}s)")
    versions = sorted(set(version_of.values()))
    if len(versions) > 1:
        for v in versions:
            ids = [i for i in scored if version_of.get(i) == v and i in truth]
            kinds = np.array([truth[i] for i in ids], dtype=object)
            s = np.array([scored[i] for i in ids])
            alert = np.array([i in alerted for i in ids], dtype=bool)
            per_attack = []
            for kind in sorted(set(kinds.tolist()) - {"normal"}):
                pick = (kinds == kind) | (kinds == "normal")
                if (kinds[pick] == "normal").any():
                    auc = detection_metrics((kinds[pick] == kind).astype(int), s[pick])["auc"]
                    per_attack.append(f"{kind} {auc:.3f} ({float(alert[kinds == kind].mean()):.2f})")
            lines.append(f"      model {v}: {len(ids)} records scored; AUC per attack against normal traffic "
                         f"(recall at the threshold): {', '.join(per_attack)}")
    if lines:
        print("\n".join(lines), flush=True)


def _summary(truth, scored, alerted, dead, malformed, address, seconds) -> None:
    ids = [i for i in truth if i in scored]
    labels = np.array([truth[i] for i in ids], dtype=object)
    y = (labels != "normal").astype(int)
    s = np.array([scored[i] for i in ids])
    alert = np.array([i in alerted for i in ids])
    lines = [f"[4/4] summary after {seconds:.0f}s",
             f"      records scored: {len(scored)} of {len(truth)} simulated ({len(alerted)} alerts); "
             f"dead letters: {dead} (malformed records injected: {malformed})"]
    if len(set(y.tolist())) == 2:
        m = detection_metrics(y, s)
        tp = int((alert & (y == 1)).sum())
        precision = tp / max(1, int(alert.sum()))
        recall = tp / max(1, int(y.sum()))
        lines.append(f"      detection AUC {m['auc']:.4f}, AUPRC {m['auprc']:.4f}; alerts: precision "
                     f"{precision:.3f}, recall {recall:.3f}, false-positive rate "
                     f"{float(alert[y == 0].mean()):.4f}")
        per_attack = ", ".join(f"{k} {float(alert[labels == k].mean()):.2f}"
                               for k in sorted(set(labels.tolist()) - {"normal"}))
        lines.append(f"      recall per attack: {per_attack}")
    lines.append(f"      metrics were exposed on http://{address}/metrics")
    print("\n".join(lines), flush=True)
