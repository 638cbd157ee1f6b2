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

log = logging.getLogger("arnstream")


# ----------------------------------------------------------------------------- helpers


def _config(args) -> Config:
    overrides = dict(parse_assignment(a) for a in (getattr(args, "set", None) or []))
    for flag, key in (("device", "runtime.device"), ("threads", "runtime.threads"),
                      ("data_dir", "data.dir"), ("epochs", "training.epochs"),
                      ("batch_size", "training.batch_size"), ("model", "model.name")):
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


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


# ----------------------------------------------------------------------------- commands


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .evaluation import EvaluationSpec, evaluate

    cfg = _config(args)
    _apply_runtime(cfg)
    dataset = load_dataset(args.dataset, cfg.data_dir())
    params = _detector_params(cfg)
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
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _detector_params(cfg: Config) -> dict:
    """Constructor overrides from the config: model.params plus the training section."""
    from .models import PRESETS, detector_class

    params = dict(cfg.model.params)
    cls = detector_class(PRESETS[cfg.model.name][0]) if cfg.model.name in PRESETS else None
    takes = cls.param_names() if cls else []
    for name, value in (("epochs", cfg.training.epochs), ("batch_size", cfg.training.batch_size),
                        ("device", cfg.runtime.device)):
        if name in takes:
            params.setdefault(name, value)
    return params


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
    detector = make_detector(cfg.model.name, **{"seed": args.seed, **_detector_params(cfg)})
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
