"""What a scored record costs the feedback store, with SQLite's defaults and with ours.

Serve writes every scored record (id, model version, score, flag and the record's JSON) to
the store, in batches of its poll size, and the store keeps up to `feedback.max_records`
(500,000 by default) of them. This writes that many simulated flow records, batch by batch,
into a fresh store opened with SQLite's defaults (4 KiB pages, a 2 MB page cache: the
baseline) and into one with the store's own settings, in the same run, and prints the CPU
and wall time per row of each, over the whole run and over its last fifth (the steady state
of a full store), and their ratio.

    python benchmarks/bench_store.py [--rows 500000] [--batch 5000] [--repeat 1] [--schema kdd99]

`--schema flowsim` (default) stores the simulator's flows (~270 bytes of JSON);
`--schema kdd99` stores records of the 41 KDD features with random values (~1 kB).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.feedback.store import CACHE_KIB, PAGE_SIZE, FeedbackStore, ScoredColumns  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402

SQLITE_DEFAULTS = {"page_size": 4096, "cache_kib": 2000}
OURS = {"page_size": PAGE_SIZE, "cache_kib": CACHE_KIB}


def write_all(settings: dict, records: list[bytes], rows: int, batch: int) -> list[tuple[int, float, float]]:
    """(rows, CPU seconds, wall seconds) of each batch, writing `rows` records into a fresh store."""
    batches = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = FeedbackStore(Path(tmp) / "feedback.db", max_records=rows, **settings)
        try:
            for start in range(0, rows, batch):
                n = min(batch, rows - start)
                ids = [f"flows-live:{(start + i) % 3}:{start + i}" for i in range(n)]
                blobs = [records[(start + i) % len(records)] for i in range(n)]
                columns = ScoredColumns(ids, ["v0001"] * n, [0.01] * n, [0] * n, blobs)
                c0, w0 = time.process_time(), time.perf_counter()
                store.put_scored_columns(columns)
                batches.append((n, time.process_time() - c0, time.perf_counter() - w0))
        finally:
            store.close()
    return batches


def sample_records(schema: str, n: int) -> list[dict]:
    if schema == "flowsim":
        return FlowSimulator(seed=0).batch(n)[0]
    rng = random.Random(0)
    fields = FlowSchema.load(schema).fields
    return [{f.name: (round(rng.random() * 100, 4) if f.kind == "numeric" else rng.choice(("tcp", "udp", "icmp")))
             for f in fields} for _ in range(n)]


def per_row_us(batches: list[tuple[int, float, float]], column: int) -> float:
    """Mean seconds per row of the batches, in us; column 1: CPU, 2: wall."""
    return sum(b[column] for b in batches) / sum(b[0] for b in batches) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs, baseline first in each")
    ap.add_argument("--schema", choices=("flowsim", "kdd99"), default="flowsim")
    args = ap.parse_args()

    records = [orjson.dumps(r) for r in sample_records(args.schema, 10_000)]
    mean_bytes = sum(map(len, records)) / len(records)
    print(f"{args.rows:,} rows of {args.schema} records ({mean_bytes:.0f} bytes of JSON each on average), "
          f"batches of {args.batch:,}")
    tail_batches = max(1, (args.rows // args.batch) // 5)
    results: dict[str, list[tuple[float, float, float]]] = {"sqlite defaults": [], "ours": []}
    for _ in range(args.repeat):
        for name, settings in (("sqlite defaults", SQLITE_DEFAULTS), ("ours", OURS)):
            batches = write_all(settings, records, args.rows, args.batch)
            row = (per_row_us(batches, 1), per_row_us(batches, 2), per_row_us(batches[-tail_batches:], 1))
            results[name].append(row)
            print(f"{name:16s} page {settings['page_size']:>6} B, cache {settings['cache_kib']:>6} KiB: "
                  f"CPU {row[0]:5.2f} us/row (last fifth {row[2]:5.2f}), wall {row[1]:5.2f} us/row")
    base, ours = (min(r, key=lambda t: t[0]) for r in results.values())
    print(f"ours / sqlite defaults, best of {args.repeat}: CPU per row {ours[0] / base[0]:.2f}, "
          f"last fifth {ours[2] / base[2]:.2f}, wall {ours[1] / base[1]:.2f}")


if __name__ == "__main__":
    main()
