"""The one training loop every torch detector runs (ARN and the neural baselines alike).

Reads top to bottom: shuffle, batch, step, accumulate, evaluate, report. The data lives on
the device as one tensor and batches are index slices of it: a DataLoader collating 1024
rows one by one is what made the straightforward loop slow (see benchmarks/).
Losses are summed as tensors and read once per epoch, so no step waits on `.item()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class StepContext:
    """What a training step may need to know: where it is in the schedule."""

    step: int = 0  # optimisation steps so far, over all epochs
    epoch: int = 0
    generator: torch.Generator | None = None  # for sampling inside the step
    extra: dict = field(default_factory=dict)  # e.g. labelled anomalies for weak supervision


@dataclass
class EpochRecord:
    epoch: int
    seconds: float
    losses: dict[str, float]
    evaluation: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "seconds": round(self.seconds, 4), **self.losses, **self.evaluation}


def run_training(
    training_step: Callable[[torch.Tensor, StepContext], dict[str, torch.Tensor]],
    X: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    extra: dict | None = None,
    evaluate: Callable[[int], dict[str, float]] | None = None,
    on_epoch_end: Callable[[EpochRecord], bool | None] | None = None,
) -> list[EpochRecord]:
    """Run `epochs` passes over X in shuffled batches; `on_epoch_end` returning True stops."""
    n = X.shape[0]
    if n == 0:
        raise ValueError("cannot train on zero rows")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ctx = StepContext(generator=gen, extra=extra or {})
    history: list[EpochRecord] = []
    for epoch in range(epochs):
        ctx.epoch = epoch
        started = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(X.device)
        sums: dict[str, torch.Tensor] = {}
        n_batches = 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and n_batches:  # a 1-row tail adds noise, not signal
                continue
            losses = training_step(X.index_select(0, idx), ctx)
            for k, v in losses.items():
                v = v.detach()
                sums[k] = sums[k] + v if k in sums else v
            ctx.step += 1
            n_batches += 1
        record = EpochRecord(
            epoch=epoch + 1,
            seconds=time.perf_counter() - started,
            losses={k: float(v) / n_batches for k, v in sums.items()},
        )
        if evaluate is not None:
            record.evaluation = evaluate(epoch + 1)
        history.append(record)
        log.debug("epoch %d: %s", epoch + 1, record.as_dict())
        if on_epoch_end is not None and on_epoch_end(record):
            break
    return history
