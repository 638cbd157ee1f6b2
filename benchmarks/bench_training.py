"""Seconds per ARN training epoch: a plain DataLoader loop against arnstream's loop.

Both train the same ARNModule (same widths, same losses, batch 1024) on the same rows in
the same process. The baseline is what the paper's public code and most tutorials do:
a DataLoader over a TensorDataset, a generator forward pass in the D step and another in
the G step, real and generated rows through D separately, weight gradients of D computed
in the G step and thrown away, a `.item()` per step for logging, torch's nn.Dropout and
default Adam, torch's default threads.
Ours: batches sliced from one tensor, one generator pass per step, real and generated rows
through D in one call, D frozen during the G step, losses read once per epoch, dropout
masks from packed random bits and the fused Adam (arnstream/models/layers.py), and the
configured thread count (runtime.threads, default 2).

    python benchmarks/bench_training.py [--dataset kddcup99-rev] [--rows 40000] [--epochs 2]
        [--discriminators 4 --d-width 64]   (the defaults; 1 and 128: the single discriminator)

Prints seconds per epoch for each loop and the ratio (target: ours >= 2x faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.data import load_dataset  # noqa: E402
from arnstream.features import RecordEncoder  # noqa: E402
from arnstream.features.columns import take  # noqa: E402
from arnstream.models import ARN  # noqa: E402
from arnstream.models.arn import gaussian_kl, noisy_labels  # noqa: E402
from arnstream.models.layers import PackedDropout  # noqa: E402
from arnstream.models.training import run_training  # noqa: E402


def encoded_rows(dataset: str, rows: int, data_dir: Path) -> tuple[np.ndarray, list]:
    ds = load_dataset(dataset, data_dir)
    normal = np.flatnonzero(ds.y == 0)[:rows]
    enc = RecordEncoder(ds.schema).fit(take(ds.columns, normal))
    return enc.transform(take(ds.columns, normal)), [(g.start, g.stop) for g in enc.categorical_groups_]


def fresh_arn(X: np.ndarray, groups, seed: int = 0, **params) -> ARN:
    # no extra negatives: the plain loop has none, both loops compute the same losses
    det = ARN(head="numeric", batch_size=1024, device="cpu", seed=seed, box_negatives=0.0, field_negatives=0.0,
              **params)
    det._start_training(X.shape[1], groups)
    return det


def with_torch_dropout(module: torch.nn.Module) -> torch.nn.Module:
    """The same module with torch's own nn.Dropout where ours has PackedDropout (no weights move)."""
    for name, child in module.named_children():
        if isinstance(child, PackedDropout):
            setattr(module, name, torch.nn.Dropout(child.p))
        else:
            with_torch_dropout(child)
    return module


def plain_dataloader_epochs(det: ARN, X: np.ndarray, epochs: int) -> list[float]:
    """The straightforward loop: the same model and loss terms, torch's nn.Dropout and its
    default Adam (a Python loop over the parameters on CPU)."""
    m = with_torch_dropout(det.module_)
    opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=det.lr_d)
    opt_g = torch.optim.Adam(m.generator_parameters(), lr=det.lr_g)
    loader = DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=det.batch_size, shuffle=True)
    bce = torch.nn.BCELoss()
    times, step = [], 0
    for _ in range(epochs):
        started = time.perf_counter()
        for (x,) in loader:
            n = len(x)
            x_fake, _, _ = m(x, det.temperature(step))
            # every member of the discriminator ensemble on its own loss, as in ARN.training_step
            p_real = torch.sigmoid(m.discriminate_each(x))
            p_fake = torch.sigmoid(m.discriminate_each(x_fake.detach()))
            y_real = noisy_labels(0.0, n, step, 0.3, 0.3, det.label_decay, "cpu").expand_as(p_real)
            y_fake = noisy_labels(1.0, n, step, 0.3, 0.3, det.label_decay, "cpu").expand_as(p_fake)
            loss_d = bce(p_real, y_real) + bce(p_fake, y_fake)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            x_fake, mu, logvar = m(x, det.temperature(step))
            p_adv = torch.sigmoid(m.discriminate_each(x_fake))
            adv = bce(p_adv, torch.zeros_like(p_adv))
            loss_g = (det.adv_weight * adv + det.rec_weight * F.mse_loss(x_fake, x)
                      + det.kl_beta(step) * gaussian_kl(mu, logvar))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            _ = (loss_d.item(), loss_g.item())  # per-step logging
            step += 1
        times.append(time.perf_counter() - started)
    return times


def arnstream_epochs(det: ARN, X: np.ndarray, epochs: int) -> list[float]:
    history = run_training(det.training_step, torch.as_tensor(X), epochs=epochs,
                           batch_size=det.batch_size, seed=0)
    return [r.seconds for r in history]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kddcup99-rev")
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="ours: runtime.threads")
    parser.add_argument("--discriminators", type=int, default=ARN().discriminators)
    parser.add_argument("--d-width", type=int, default=ARN().d_width)
    default_data = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--data-dir", default=os.environ.get("ARNSTREAM_DATA_DIR", default_data))
    args = parser.parse_args()

    X, groups = encoded_rows(args.dataset, args.rows, Path(args.data_dir))
    default_threads = torch.get_num_threads()
    print(f"{args.dataset}: {len(X)} rows x {X.shape[1]} features, batch 1024, {args.epochs} epochs each; "
          f"{args.discriminators} discriminator(s) of width {args.d_width}; "
          f"torch {torch.__version__}, default threads {default_threads}")

    loops = {"plain DataLoader loop": plain_dataloader_epochs, "arnstream loop": arnstream_epochs}
    thread_counts = sorted({1, default_threads, args.threads})
    results = {}
    for loop, runner in loops.items():
        for threads in thread_counts:
            torch.set_num_threads(threads)
            det = fresh_arn(X, groups, discriminators=args.discriminators, d_width=args.d_width)
            runner(det, X[:2048], 1)  # warm-up: allocator, kernels
            results[loop, threads] = float(np.median(runner(det, X, args.epochs)))
            print(f"  {loop:24s} {threads} thread(s)  {results[loop, threads]:7.2f} s/epoch")
    torch.set_num_threads(default_threads)

    for threads in thread_counts:
        ratio = results["plain DataLoader loop", threads] / results["arnstream loop", threads]
        print(f"loop alone at {threads} thread(s): {ratio:.2f}x")
    headline = results["plain DataLoader loop", default_threads] / results["arnstream loop", args.threads]
    print(f"ratio plain (torch default {default_threads} threads) / ours ({args.threads} threads): "
          f"{headline:.2f}x (target >= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
