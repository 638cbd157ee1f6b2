"""`arnstream`: one entry point; sub-commands parse arguments and delegate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .config import Config, load_config, parse_assignment
from .errors import ArnstreamError
from .stream.demo_options import DemoOptions

log = logging.getLogger("arnstream")


# ----------------------------------------------------------------------------- helpers


# flag (argparse dest) -> config key; a sub-command that lacks a flag simply has no override
_FLAG_KEYS = (("device", "runtime.device"), ("threads", "runtime.threads"), ("data_dir", "data.dir"),
              ("epochs", "training.epochs"), ("batch_size", "training.batch_size"), ("model", "model.name"),
              ("bootstrap_servers", "kafka.bootstrap_servers"), ("client", "kafka.client"),
              ("group", "kafka.group"), ("registry", "registry.dir"),
              ("metrics_address", "serve.metrics_address"), ("schema", "serve.schema"),
              ("store", "feedback.store"))


def _config(args) -> Config:
    """YAML, then the environment, then --set, then the dedicated flags."""
    overrides = dict(parse_assignment(a) for a in (getattr(args, "set", None) or []))
    for flag, key in _FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return load_config(getattr(args, "config", None), os.environ, overrides)


def _apply_runtime(cfg: Config) -> None:
    import torch

    torch.set_num_threads(cfg.runtime.threads)


def _progress_printer(total_epochs: int, runs: int):
    tty = sys.stderr.isatty()
    every = max(1, total_epochs // 10)

    def show(run: int, record) -> None:
        losses = " ".join(f"{k}={v:.4f}" for k, v in record.losses.items())
        line = f"run {run + 1}/{runs} epoch {record.epoch}/{total_epochs} {losses} ({record.seconds:.1f}s)"
        if tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif record.epoch % every == 0 or record.epoch == total_epochs:
            print(line, file=sys.stderr, flush=True)

    return show


def detector_params(cfg: Config) -> dict:
    from .trainer import detector_params as params  # imports torch: only when needed

    return params(cfg)


def alerting_params(cfg: Config) -> dict:
    from .trainer import alerting_params as params

    return params(cfg)


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


# ----------------------------------------------------------------------------- commands


def cmd_evaluate(args) -> int:
    from .data import load_dataset

    cfg = _config(args)
    dataset = load_dataset(args.dataset, cfg.data_dir())  # a bad name or path fails before torch loads

    from .evaluation import EvaluationSpec, evaluate

    _apply_runtime(cfg)
    params = detector_params(cfg)
    spec = EvaluationSpec(model=cfg.model.name, runs=args.runs, seed=args.seed,
                          contamination=args.contamination, weak=args.weak,
                          select_with_labels=args.select_with_labels, params=params)
    print(f"dataset {dataset.name}: {len(dataset)} rows, {dataset.n_normal} normal, "
          f"{dataset.n_anomalous} anomalous; model {spec.model}; {spec.runs} run(s)", file=sys.stderr)
    tty = sys.stderr.isatty()

    def on_run(result) -> None:
        if tty:
            print(file=sys.stderr)
        print(f"run {result.run} (seed {result.seed}): AUC {result.auc:.4f}  AUPRC {result.auprc:.4f}  "
              f"fit {result.fit_seconds:.1f}s", flush=True)

    report = evaluate(dataset, spec, on_run=on_run,
                      on_epoch=_progress_printer(params.get("epochs", 0), spec.runs))
    report["config"] = cfg.as_dict()
    s = report["summary"]
    print(f"{dataset.name} {spec.model}: AUC {_fmt(s['auc'])}  AUPRC {_fmt(s['auprc'])}  "
          f"(mean ± std over {s['auc']['n']} runs)")
    for name, alt in s["alternatives"].items():  # the same fits, each way the model can score
        print(f"  score_mode={name}: AUC {_fmt(alt['auc'])}  AUPRC {_fmt(alt['auprc'])}  "
              f"validation AUC {_fmt(alt['val_auc'])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_fit(args) -> int:
    """Fit on a dataset's training split, calibrate the alert threshold, save the artifact."""
    from .data import load_dataset, paper_split
    from .features import RecordEncoder
    from .features.columns import take
    from .models import make_detector

    cfg = _config(args)
    _apply_runtime(cfg)
    dataset = load_dataset(args.dataset, cfg.data_dir())
    split = paper_split(dataset.y, args.seed)
    encoder = RecordEncoder(dataset.schema).fit(take(dataset.columns, split.train))
    X_train = encoder.transform(take(dataset.columns, split.train))
    val_normal = split.val[dataset.y[split.val] == 0]
    X_val = encoder.transform(take(dataset.columns, val_normal))
    detector = make_detector(cfg.model.name, **{"seed": args.seed, **alerting_params(cfg)})
    if hasattr(detector, "epochs"):
        show = _progress_printer(detector.epochs, 1)
        detector.progress = lambda record: show(0, record)
    groups = [(g.start, g.stop) for g in encoder.categorical_groups_]
    detector.fit(X_train, feature_groups=groups, X_val=X_val)
    threshold = detector.calibrate(X_val, fpr=cfg.training.target_fpr)
    X_test = encoder.transform(take(dataset.columns, split.test))
    alerts = detector.predict(X_test)
    y_test = dataset.y[split.test]
    metadata = {"dataset": dataset.name, "fingerprint": dataset.fingerprint(), "seed": args.seed,
                "model": cfg.model.name, "training_rows": int(len(X_train))}
    detector.save(args.out, encoder_state=encoder.to_dict(), metadata=metadata)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    recall = float(alerts[y_test == 1].mean())
    fpr = float(alerts[y_test == 0].mean())
    print(f"saved {cfg.model.name} to {args.out}: threshold {threshold:.6g} "
          f"(target false-positive rate {cfg.training.target_fpr:g} on validation normals); "
          f"on the test split: recall {recall:.3f}, false-positive rate {fpr:.4f}")
    return 0


def cmd_generate(args) -> int:
    """Print normal records next to the model's generated anomalous variants (JSON lines)."""
    import numpy as np

    from .data import load_dataset
    from .features import RecordEncoder
    from .features.columns import columns_to_records, take
    from .generation import generate_variants
    from .models.serialization import load_detector

    cfg = _config(args)
    _apply_runtime(cfg)
    artifact = load_detector(Path(args.model_dir))
    if artifact.encoder_state is None:
        raise ArnstreamError(f"{args.model_dir}: the artifact carries no encoder; save it with one")
    encoder = RecordEncoder.from_dict(artifact.encoder_state)
    dataset = load_dataset(args.dataset, cfg.data_dir())
    rows = np.random.default_rng(args.seed).choice(np.flatnonzero(dataset.y == 0), args.n, replace=False)
    names = [f.name for f in encoder.schema.feature_fields]
    records = columns_to_records(take({k: dataset.columns[k] for k in names}, rows))
    for original, variant in zip(records, generate_variants(artifact.detector, encoder, records, args.seed)):
        print(json.dumps({"normal": original, "variant": {k: _round(v) for k, v in variant.items()}}))
    return 0


def _round(value):
    return round(value, 4) if isinstance(value, float) else value


def cmd_datasets(args) -> int:
    from .data import DATASETS, load_dataset

    cfg = _config(args)
    print(f"data folder: {cfg.data_dir()}")
    for name, (_, description) in DATASETS.items():
        try:
            ds = load_dataset(name, cfg.data_dir())
            status = f"{ds.n_normal} normal / {ds.n_anomalous} anomalous"
        except ArnstreamError as exc:
            status, description = "not available", f"{description} [{str(exc).split(' (tried')[0]}]"
        print(f"  {name:14s} {status:34s} {description}", flush=True)
    return 0


def cmd_config_show(args) -> int:
    import yaml

    print(yaml.safe_dump(_config(args).as_dict(), sort_keys=False), end="")
    return 0


# ----------------------------------------------------------------------------- streaming


def _registry(cfg: Config):
    from .registry import Registry

    return Registry(cfg.registry.dir)


def cmd_broker(args) -> int:
    import signal
    import threading

    from .stream.broker import EmbeddedBroker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port=args.port) as broker:
        print(f"embedded Kafka-compatible broker (tansu, memory storage) on {broker.bootstrap}; "
              f"Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                if broker.process.poll() is not None:
                    raise ArnstreamError(f"the broker exited with {broker.process.returncode}")
        except KeyboardInterrupt:
            pass
    return 0


def cmd_simulate(args) -> int:
    from .stream.client import ensure_topics, open_producer
    from .stream.simulator import make_simulator, produce

    cfg = _config(args)
    topic = args.topic or cfg.topics.live
    attacks = tuple(a for a in (args.attacks or "").split(",") if a)
    try:
        sim = make_simulator(cfg.serve.schema, seed=args.seed, attacks=attacks,
                             attack_fraction=args.attack_fraction, rate=args.rate)
    except ValueError as exc:
        raise ArnstreamError(f"--attacks/--schema: {exc}") from exc
    if args.total is None and args.duration is None:
        raise ArnstreamError("give --total N and/or --duration SECONDS")
    ensure_topics(cfg.kafka, [topic], partitions=args.partitions)
    producer = open_producer(cfg.kafka, client_id="arnstream-simulate")
    counts: dict[str, int] = {}

    def progress(records, truth):
        for label in truth:
            counts[label] = counts.get(label, 0) + 1
        total = sum(counts.values())
        if total % 10000 < len(truth):
            print(f"  produced {total} records to {topic}", file=sys.stderr, flush=True)

    try:
        sent = produce(producer, topic, sim, rate=args.rate, total=args.total, duration_s=args.duration,
                       on_batch=progress)
    finally:
        producer.close()
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"produced {sent} records to {topic} ({detail}); ground truth in the "
          f"'arnstream-truth' header")
    return 0


def _read_data_file(path: str) -> list[dict]:
    import orjson

    file = Path(path)
    if not file.is_file():
        raise ArnstreamError(f"--data {path}: no such file")
    if file.suffix == ".csv":
        from .data.loaders import _read_csv

        frame = _read_csv(file)
        return frame.to_dict(orient="records")
    records = []
    with open(file, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ArnstreamError(f"{path}:{n}: not a JSON record ({exc})") from exc
    return records


def cmd_train(args) -> int:
    from .schema import FlowSchema
    from .stream.window import parse_time, read_window

    cfg = _config(args)
    schema = FlowSchema.load(cfg.serve.schema)
    if args.data:  # a bad file fails before torch loads
        records = _read_data_file(args.data)[: args.max_records]
        source = {"file": str(Path(args.data).resolve()), "records": len(records)}
        print(f"read {len(records)} records from {args.data}", file=sys.stderr)
    else:
        topic = args.topic or cfg.topics.normal
        ts_field = schema.of_kind("timestamp")

        def show(window):
            print(f"\r\033[K  read {len(window.records)} records from {topic}" if sys.stderr.isatty()
                  else f"  read {len(window.records)} records from {topic}",
                  end="" if sys.stderr.isatty() else "\n", file=sys.stderr, flush=True)

        window = read_window(cfg.kafka, topic, max_records=args.max_records,
                             from_ts=parse_time(args.from_ts, "--from"), to_ts=parse_time(args.to_ts, "--to"),
                             timestamp_field=ts_field.name if ts_field else None,
                             idle_timeout_s=args.idle_timeout, on_progress=show)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        records = window.records
        source = {"topic": topic, "bootstrap_servers": cfg.kafka.bootstrap_servers, "records": len(records),
                  "undecodable": window.undecodable, "outside_window": window.outside,
                  "from": args.from_ts, "to": args.to_ts}
        print(f"read {len(records)} records from {topic} ({window.undecodable} not JSON objects, "
              f"{window.outside} outside the time window)", file=sys.stderr)
    from .trainer import train_on_records

    _apply_runtime(cfg)
    params = alerting_params(cfg)
    show_epoch = _progress_printer(params.get("epochs", 0), 1)
    result = train_on_records(records, schema, cfg, params, registry=_registry(cfg), source=source,
                              seed=args.seed, promote=not args.no_promote,
                              progress=lambda record: show_epoch(0, record))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    state = "promoted" if result.promoted else "not promoted (arnstream models promote " + result.version + ")"
    print(f"model {result.version} ({cfg.model.name}, schema {schema.name}) in {cfg.registry.dir}: {state}; "
          f"{result.n_train} training + {result.n_holdout} held-out records, {result.n_rejected} invalid; "
          f"threshold {result.threshold:.6g} for a {cfg.training.target_fpr:g} false-positive rate "
          f"(held-out: {result.holdout_fpr:.4f}); {result.seconds:.1f}s")
    return 0


def cmd_serve(args) -> int:
    import signal
    import threading

    # first: a SIGTERM while the libraries load must also end in a clean exit
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    from .observability import ServeMetrics, start_exporter
    from .stream.client import ensure_topics, validate

    cfg = _config(args)  # a bad config or metrics address fails before torch loads
    validate(cfg.kafka)
    topic = args.topic or cfg.topics.live
    metrics = ServeMetrics()
    server = start_exporter(cfg.serve.metrics_address, metrics.registry)

    from .stream.serve import Service

    if args.create_topics:
        t = cfg.topics
        ensure_topics(cfg.kafka, [topic, t.scores, t.alerts, t.deadletter], partitions=args.partitions)
        ensure_topics(cfg.kafka, [t.labels])
    service = Service(cfg, _registry(cfg), metrics, topic=topic, stop=stop)
    try:
        stats = service.run()
    finally:
        if server is not None:
            server.shutdown()
    retrained = [o.outcome for o in (service.feedback.outcomes if service.feedback else [])]
    print(f"served {stats.consumed} records: {stats.scored} scored, {stats.anomalies} alerts, "
          f"{stats.rejected} dead letters" + (f"; retrainings: {', '.join(retrained)}" if retrained else ""))
    return 0


def cmd_models(args) -> int:
    import datetime as dt

    cfg = _config(args)
    registry = _registry(cfg)
    if args.models_command == "promote":
        registry.promote(args.version)
        print(f"promoted {args.version}; serving processes pick it up within "
              f"{cfg.serve.reload_interval_s:g}s")
        return 0
    if args.models_command == "rollback":
        print(f"rolled back to {registry.rollback()}")
        return 0
    current = registry.current()
    versions = registry.list()
    if not versions:
        print(f"no models in {registry.root}")
        return 0
    for v in versions:
        c = v.card
        when = dt.datetime.fromtimestamp(v.created, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        source = c.get("source", {})
        origin = source.get("topic") or source.get("file") or "?"
        print(f"{'*' if v.name == current else ' '} {v.name}  {when}  {c.get('model', '?'):8s} "
              f"schema {c.get('schema', '?'):8s} rows {c.get('training_rows', '?'):>7}  "
              f"threshold {c.get('threshold', float('nan')):.6g}  from {origin}")
    return 0


def cmd_label(args) -> int:
    import getpass

    from .feedback import make_label, read_label_csv
    from .stream.client import open_producer

    cfg = _config(args)
    analyst = args.analyst or os.environ.get("USER") or getpass.getuser()
    if args.file:
        if args.record_id or args.anomaly or args.normal:
            raise ArnstreamError("label: give either --file or RECORD_ID with --anomaly/--normal, not both")
        labels = read_label_csv(args.file, analyst)
    else:
        if not args.record_id or args.anomaly == args.normal:
            raise ArnstreamError("label: give RECORD_ID and exactly one of --anomaly / --normal (or --file)")
        labels = [make_label(args.record_id, "anomaly" if args.anomaly else "normal", analyst, note=args.note)]
    topic = args.topic or cfg.topics.labels
    producer = open_producer(cfg.kafka, client_id="arnstream-label")
    try:
        for label in labels:
            producer.send(topic, label.to_json(), key=label.record_id.encode())
        producer.flush(cfg.serve.output_timeout_s)
    finally:
        producer.close()
    kinds = {k: sum(1 for x in labels if x.label == k) for k in ("anomaly", "normal")}
    print(f"sent {len(labels)} label(s) to {topic} ({kinds['anomaly']} anomaly, {kinds['normal']} normal) "
          f"as {analyst}")
    return 0


def cmd_retrain(args) -> int:
    from .feedback.retrain import retrain
    from .stream.feedback import open_store

    cfg = _config(args)
    _apply_runtime(cfg)
    if args.epochs:  # --epochs also set training.epochs; retrain.epochs, if configured, would win
        cfg.retrain.epochs = args.epochs
    if not Path(cfg.feedback.store).is_file():
        raise ArnstreamError(f"no feedback store at {cfg.feedback.store} (feedback.store): serve writes it "
                             "while it scores; labels join records there")
    store = open_store(cfg)
    try:
        counts = store.label_counts()
        print(f"feedback store {cfg.feedback.store}: {store.count_scored()} scored records, "
              f"{counts['anomaly']} anomaly and {counts['normal']} normal labels", file=sys.stderr)
        epochs = cfg.retrain.epochs or cfg.training.epochs
        show_epoch = _progress_printer(epochs, 1)
        outcome = retrain(cfg, store, _registry(cfg), trigger="manual", seed=args.seed,
                          progress=lambda record: show_epoch(0, record))
    finally:
        store.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"retrain: {outcome.outcome}: {outcome.detail} ({outcome.seconds:.1f}s)")
    return 0 if outcome.outcome in ("promoted", "rejected", "skipped") else 1


DEMO = DemoOptions()  # the demo's defaults, for its flags


def _demo_attacks(cfg: Config) -> str:
    # beacon (flowsim only) is what the first model misses and the analyst's labels teach
    return ",".join(DEMO.attacks) + (",beacon" if cfg.serve.schema == "flowsim" else "")


def cmd_demo(args) -> int:
    from .stream.demo import run_demo

    cfg = _config(args)
    _apply_runtime(cfg)
    opts = DemoOptions(normal_records=args.normal_records, live_seconds=args.live_seconds, rate=args.rate,
                       attacks=tuple(a for a in (args.attacks or _demo_attacks(cfg)).split(",") if a),
                       epochs=args.epochs, labels=args.labels, analyst_after_s=args.analyst_after,
                       keep_running=args.keep_running, workdir=args.workdir, seed=args.seed)
    return run_demo(cfg, opts)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arnstream", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set model.params.lr_d=1e-4")
        p.add_argument("--data-dir", help="folder of the public datasets (ARNSTREAM_DATA_DIR)")

    p = sub.add_parser("evaluate", help="train and test a model with the paper's protocol")
    common(p)
    p.add_argument("--dataset", default="synthetic", help="dataset name (see `arnstream datasets`)")
    p.add_argument("--model", help="arn-n, arn-g, arn-ge, arn-n-nokl, ae, iforest")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="run i uses seed + i")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--contamination", type=float, default=0.0)
    p.add_argument("--weak", type=float, default=0.0, help="fraction of anomalies labelled in training")
    p.add_argument("--select-with-labels", action="store_true",
                   help="let checkpoint selection see the labelled validation set (off by default)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--out", help="write every number, the config, seeds and timings as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fit", help="train on a dataset's training split and save the model")
    common(p)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--model", help="arn-n, arn-g, arn-ge, ae, iforest, ...")
    p.add_argument("--seed", type=int, default=0, help="selects the split and seeds training")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", required=True, help="artifact directory (replaced atomically)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("generate", help="generated anomalous variants of normal records")
    common(p)
    p.add_argument("--model-dir", required=True, help="an ARN artifact saved by `arnstream fit`")
    p.add_argument("--dataset", default="synthetic", help="where the normal records come from")
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("datasets", help="list the datasets, loading each to count its rows")
    common(p)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the merged configuration")
    common(show)
    show.set_defaults(func=cmd_config_show)

    def kafka_flags(p):
        p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (kafka.bootstrap_servers)")
        p.add_argument("--client", choices=["kafka-python", "confluent"], help="Kafka client (kafka.client)")

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker on loopback")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("simulate", help="produce simulated flows (normal traffic and attacks)")
    common(p)
    kafka_flags(p)
    p.add_argument("--topic", help="default: topics.live")
    p.add_argument("--rate", type=float, default=1000.0, help="mean records per second (0 = as fast as possible)")
    p.add_argument("--total", type=int, help="stop after this many records")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--attacks", default="",
                   help="comma-separated: scan,synflood,bruteforce,exfiltration (flowsim also: beacon)")
    p.add_argument("--attack-fraction", type=float, default=0.05)
    p.add_argument("--schema", help="flowsim (aggregated flows, default) or netflow (raw flows)")
    p.add_argument("--partitions", type=int, default=1, help="partitions if the topic is created")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a model on a window of normal traffic; add it to the registry")
    common(p)
    kafka_flags(p)
    p.add_argument("--topic", help="default: topics.normal")
    p.add_argument("--data", help="train from a JSON-lines or CSV file instead of a topic")
    p.add_argument("--schema", help="flow schema of the records (serve.schema)")
    p.add_argument("--max-records", type=int)
    p.add_argument("--from", dest="from_ts", help="window start: epoch seconds or ISO-8601")
    p.add_argument("--to", dest="to_ts", help="window end: epoch seconds or ISO-8601")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="end of the window after this many quiet seconds")
    p.add_argument("--model", help="arn-n, arn-g, ae, iforest, ...")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--registry", help="model registry directory (registry.dir)")
    p.add_argument("--no-promote", action="store_true", help="register without promoting")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("serve", help="score live flows from Kafka")
    common(p)
    kafka_flags(p)
    p.add_argument("--topic", help="default: topics.live")
    p.add_argument("--group", help="consumer group (kafka.group)")
    p.add_argument("--registry", help="model registry directory (registry.dir)")
    p.add_argument("--metrics-address", help="host:port of /metrics ('' = off)")
    p.add_argument("--store", help="feedback store (feedback.store)")
    p.add_argument("--create-topics", action="store_true", help="create missing topics (development)")
    p.add_argument("--partitions", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("label", help="send analyst labels (anomaly / normal) for scored records")
    common(p)
    kafka_flags(p)
    p.add_argument("record_id", nargs="?", help="the id in flows-scores")
    p.add_argument("--anomaly", action="store_true", help="it really was an attack")
    p.add_argument("--normal", action="store_true", help="false alarm / normal traffic")
    p.add_argument("--note", help="free text kept with the label")
    p.add_argument("--analyst", help="who labels (default: $USER)")
    p.add_argument("--file", help="CSV with a header: record_id,label[,analyst][,at][,note]")
    p.add_argument("--topic", help="default: topics.labels")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("retrain", help="retrain now from the feedback store; the validation gate decides")
    common(p)
    p.add_argument("--store", help="feedback store (feedback.store)")
    p.add_argument("--registry", help="model registry directory (registry.dir)")
    p.add_argument("--epochs", type=int, help="default: retrain.epochs, else training.epochs")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("models", help="the model registry")
    msub = p.add_subparsers(dest="models_command", required=True)
    for name, text in (("list", "versions, the promoted one starred"), ("promote", "promote a version"),
                       ("rollback", "go back to the previously promoted version")):
        mp = msub.add_parser(name, help=text)
        common(mp)
        mp.add_argument("--registry", help="model registry directory (registry.dir)")
        if name == "promote":
            mp.add_argument("version")
        mp.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="everything on one machine: broker, simulator, train, serve, summary")
    common(p)
    p.add_argument("--normal-records", type=int, default=DEMO.normal_records,
                   help="training traffic (a tenth of it or more, up to a third, calibrates the threshold)")
    p.add_argument("--live-seconds", type=float, default=DEMO.live_seconds, help="how long live traffic flows")
    p.add_argument("--rate", type=float, default=DEMO.rate, help="live records per second")
    p.add_argument("--attacks", help=f"default: {','.join(DEMO.attacks)} (+ beacon for flowsim)")
    p.add_argument("--epochs", type=int, default=DEMO.epochs)
    p.add_argument("--labels", type=int, default=DEMO.labels, help="labels the simulated analyst sends (0: none)")
    p.add_argument("--analyst-after", type=float, default=DEMO.analyst_after_s,
                   help="seconds of live traffic before it does")
    p.add_argument("--batch-size", type=int, default=256, help="small batches: enough steps on a short window")
    p.add_argument("--model", help="default: model.name")
    p.add_argument("--keep-running", action="store_true", help="keep simulating and serving until Ctrl-C")
    p.add_argument("--workdir", default=DEMO.workdir, help="registry and logs of the demo")
    p.add_argument("--schema", help="flowsim (default) or netflow (raw flows with traffic windows)")
    p.add_argument("--metrics-address", help="host:port of /metrics")
    p.add_argument("--seed", type=int, default=DEMO.seed)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kafka-python logs every connection, and warns when our scoring holds the GIL
        logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except ArnstreamError as exc:
        print(f"arnstream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("arnstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
