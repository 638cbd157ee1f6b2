"""The model both serve benchmarks score with: an ARN really trained on simulated flows."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from arnstream.config import load_config
from arnstream.registry import Registry
from arnstream.schema import FlowSchema
from arnstream.stream.simulator import FlowSimulator
from arnstream.trainer import alerting_params, train_on_records


def trained_registry(tag: str, epochs: int, discriminator_width: int | None = None) -> Path:
    """A fresh registry with one promoted ARN^N, trained on 10,000 normal flows, scoring as
    trained models do by default (training.score_mode, training.discriminator_width unless
    given); removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{tag}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    overrides = {"training.epochs": epochs, "training.batch_size": 256, "runtime.device": "cpu",
                 "registry.dir": str(root)}
    if discriminator_width is not None:
        overrides["training.discriminator_width"] = discriminator_width
    cfg = load_config(None, {}, overrides)
    records, _ = FlowSimulator(seed=0).batch(10000)
    train_on_records(records, FlowSchema.load("flowsim"), cfg, alerting_params(cfg), registry=Registry(root),
                     source={"bench": tag})
    return root
