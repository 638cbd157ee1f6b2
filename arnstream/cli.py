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
    params = dict(cfg.model.params)
    from .models import PRESETS, detector_class

    cls = detector_class(PRESETS[cfg.model.name][0]) if cfg.model.name in PRESETS else None
    takes = cls.param_names() if cls else []
    if "epochs" in takes:
        params.setdefault("epochs", cfg.training.epochs)
    if "batch_size" in takes:
        params.setdefault("batch_size", cfg.training.batch_size)
    if "device" in takes:
        params.setdefault("device", cfg.runtime.device)
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


def cmd_datasets(args) -> int:
    from .data import DATASETS, load_dataset

    cfg = _config(args)
    print(f"data folder: {cfg.data_dir()}")
    for name, (_, description) in DATASETS.items():
        try:
            ds = load_dataset(name, cfg.data_dir()) if args.count else None
            status = f"{ds.n_normal} normal / {ds.n_anomalous} anomalous" if ds else ""
        except ArnstreamError as exc:
            status = f"unavailable ({str(exc).split(':')[0]})"
        print(f"  {name:14s} {description}  {status}")
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

    p = sub.add_parser("datasets", help="list the datasets and whether their files are here")
    common(p)
    p.add_argument("--count", action="store_true", help="load each available dataset and count rows")
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
