"""What a scored record costs the feedback store: a row per record against ours, a row per batch.

Serve writes every scored record (id, model version, score, flag and the record's JSON) to
the store, in batches of its poll size, and the store keeps up to `feedback.max_records`
(500,000 by default) of them. This writes that many simulated flow records, batch by batch,
into a fresh SQLite store of a row per record (the straightforward layout, and the store's
own until 2026-12-01: a unique index on the record id, multi-row INSERTs of 1,000 rows, 16 KiB
pages and a 64 MiB page cache) and into a fresh `FeedbackStore` (a row per batch), in the same
run, and prints the CPU and wall time per record of each, over the whole run and over its last
fifth (the steady state of a full store), and their ratio. Then the price of ours: the time
to find one record for a label (20 ids spread over the store, and one it does not hold).

    python benchmarks/bench_store.py [--rows 500000] [--batch 5000] [--repeat 1] [--schema kdd99]

`--schema flowsim` (default) stores the simulator's flows (~270 bytes of JSON);
`--schema kdd99` stores records of the 41 KDD features with random values (~1 kB).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.feedback.store import FeedbackStore, ScoredColumns  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402


class RowPerRecordStore:
    """The baseline: a row per scored record, found through a unique index on its id."""

    ROWS_PER_INSERT = 1000

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA page_size=16384")
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE scored (record_id TEXT PRIMARY KEY, scored_at REAL NOT NULL, "
                        "model_version TEXT NOT NULL, score REAL NOT NULL, flagged INTEGER NOT NULL, "
                        "record BLOB NOT NULL)")

    def put_scored_columns(self, scored: ScoredColumns) -> None:
        n, now = len(scored), time.time()
        params: list = [None] * (6 * n)
        params[0::6], params[1::6], params[2::6] = scored.ids, [now] * n, scored.model_versions
        params[3::6], params[4::6], params[5::6] = scored.scores, scored.flagged, scored.records
        self.db.execute("BEGIN IMMEDIATE")
        for start in range(0, n, self.ROWS_PER_INSERT):
            stop = min(n, start + self.ROWS_PER_INSERT)
            self.db.execute("INSERT OR REPLACE INTO scored VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * (stop - start)),
                            params[6 * start : 6 * stop])
        self.db.execute("COMMIT")

    def scored(self, record_id: str):
        return self.db.execute("SELECT * FROM scored WHERE record_id = ?", (record_id,)).fetchone()

    def close(self) -> None:
        self.db.close()


LAYOUTS = {"a row per record": RowPerRecordStore, "ours (a row per batch)": FeedbackStore}


def record_id(i: int) -> str:
    return f"flows-live:{i % 3}:{i}"


def write_all(layout: str, records: list[bytes], rows: int, batch: int) -> tuple[list, float, float]:
    """(rows, CPU seconds, wall seconds) of each batch, writing `rows` records into a fresh store;
    then the median and the slowest milliseconds to find a record by its id."""
    batches = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = LAYOUTS[layout](Path(tmp) / "feedback.db")
        try:
            for start in range(0, rows, batch):
                n = min(batch, rows - start)
                ids = [record_id(start + i) for i in range(n)]
                blobs = [records[(start + i) % len(records)] for i in range(n)]
                columns = ScoredColumns(ids, ["v0001"] * n, [0.01] * n, [0] * n, blobs)
                c0, w0 = time.process_time(), time.perf_counter()
                store.put_scored_columns(columns)
                batches.append((n, time.process_time() - c0, time.perf_counter() - w0))
            lookups = []
            for i in [*range(0, rows, max(1, rows // 20)), -1]:
                started = time.perf_counter()
                found = store.scored(record_id(i))
                lookups.append((time.perf_counter() - started) * 1e3)
                assert (found is None) == (i < 0), f"record {i} not found"
        finally:
            store.close()
    return batches, statistics.median(lookups), max(lookups)


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
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in LAYOUTS}
    for _ in range(args.repeat):
        for name in LAYOUTS:
            batches, lookup_ms, slowest_ms = write_all(name, records, args.rows, args.batch)
            row = (per_row_us(batches, 1), per_row_us(batches, 2), per_row_us(batches[-tail_batches:], 1))
            results[name].append(row)
            print(f"{name:24s} CPU {row[0]:5.2f} us/record (last fifth {row[2]:5.2f}), wall {row[1]:5.2f} us/record; "
                  f"a record found by id in {lookup_ms:.2f} ms (slowest {slowest_ms:.2f})")
    base, ours = (min(r, key=lambda t: t[0]) for r in results.values())
    print(f"ours / a row per record, best of {args.repeat}: CPU per record {ours[0] / base[0]:.2f}, "
          f"last fifth {ours[2] / base[2]:.2f}, wall {ours[1] / base[1]:.2f}")

if __name__ == "__main__":
    main()
