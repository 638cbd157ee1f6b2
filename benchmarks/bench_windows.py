"""What the netflow traffic windows cost per record, next to the stateless encoding.

On the same simulated raw flows, in the same run: the river-based windowed aggregation
(TrafficWindows.apply, per record, stateful) and the vectorised encoder (min-max + one-hot
of the windowed records, per batch). Prints microseconds per record for each and the ratio.

    python benchmarks/bench_windows.py [--records 50000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.features import RecordEncoder  # noqa: E402
from arnstream.features.windows import TrafficWindows  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.netflow_sim import NetflowSimulator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    schema = FlowSchema.load("netflow")
    records, _ = NetflowSimulator(seed=0, attacks=("scan", "synflood", "bruteforce"), start=0.0).batch(args.records)
    windows = TrafficWindows(**schema.windows)
    started = time.perf_counter()
    derived = []
    for i in range(0, len(records), args.batch):
        derived += windows.apply(records[i:i + args.batch])[0]
    window_s = time.perf_counter() - started
    encoder = RecordEncoder(schema).fit(derived)
    started = time.perf_counter()
    for i in range(0, len(derived), args.batch):
        encoder.transform_batch(derived[i:i + args.batch])
    encode_s = time.perf_counter() - started
    n = len(records)
    print(f"traffic windows: {window_s / n * 1e6:.1f} us/record ({n / window_s:,.0f} records/s); "
          f"encoder: {encode_s / n * 1e6:.1f} us/record ({n / encode_s:,.0f} records/s); "
          f"windows / encoder: {window_s / encode_s:.1f}x; live keys at the end: {windows.n_keys}")


if __name__ == "__main__":
    main()
