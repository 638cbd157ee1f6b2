"""What serve's main thread spends per record before and after the model, by kind of batch.

On the same simulated flows (JSON, batches of 5,000), in the same run: decoding, validating
and encoding a batch, then building its output records (`decode_batch` + `result_of`; the
model's scores are left out, they run on another thread), once with the typed path (msgspec,
serve's default for schemas without traffic windows) and once with the general path alone
(orjson), for three kinds of batch:
  clean     every record valid
  dirty     0.2% malformed (not JSON): the typed path decodes the others, the general path
            the malformed ones
  foreign   every record carries a field the schema does not name: the typed path gives up
            and sits out 1, 2, 4, ... batches (one decoder through all repeats, as in serve,
            where the pauses reach 64 batches), the general path takes the batches
Prints CPU microseconds per record (median and fastest of the repeats) and typed / general.

    python benchmarks/bench_decode.py [--records 5000] [--repeat 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.features import RecordEncoder  # noqa: E402
from arnstream.models import make_detector  # noqa: E402
from arnstream.models.serialization import LoadedArtifact  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.client import Message  # noqa: E402
from arnstream.stream.scoring import ScoringModel, decode_batch, result_of  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402


def scoring_model() -> ScoringModel:
    """A model around a small Isolation Forest: its scores are not timed, only their outputs."""
    records, _ = FlowSimulator(seed=0).batch(3000)
    encoder = RecordEncoder(FlowSchema.load("flowsim")).fit(records)
    X = encoder.transform(records)
    detector = make_detector("iforest", seed=0, n_estimators=10).fit(X)
    detector.calibrate(X, fpr=0.01)
    profile = {"feature_profile": {"mean": X.mean(0).tolist(), "std": X.std(0).tolist()}}
    return ScoringModel.from_artifact("v0001", LoadedArtifact(detector, encoder.to_dict(), profile))


def batches(n: int) -> dict[str, list[Message]]:
    records, _ = FlowSimulator(seed=1, attacks=("scan", "synflood")).batch(n)
    clean = [orjson.dumps(r) for r in records]
    dirty = list(clean)
    for i in range(5, n, 500):  # 1 in 500
        dirty[i] = b'{"flow_id": "truncated'
    foreign = [orjson.dumps({**r, "vlan": 7}) for r in records]
    return {name: [Message("flows-live", i % 2, i, v) for i, v in enumerate(values)]
            for name, values in (("clean", clean), ("dirty", dirty), ("foreign", foreign))}


def cpu_per_record(model: ScoringModel, messages: list[Message], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        decoded = decode_batch(messages, model)
        result_of(decoded, np.zeros(len(decoded.encoded.X)), 3, keep_records=True)
        times.append((time.process_time() - started) / len(messages) * 1e6)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args()
    typed = scoring_model()
    general = dataclasses.replace(typed)
    general.typed = None
    gc.disable()  # serve raises the collector's thresholds; here it is simply kept out of the timing
    print(f"{args.records:,} simulated flows per batch, {args.repeat} repeats; CPU us per record (median / fastest)")
    for name, messages in batches(args.records).items():
        # alternate the two paths, so that the machine's drift falls on both
        fast, slow = [], []
        model = dataclasses.replace(typed)  # a decoder of its own per kind of batch
        for _ in range(4):
            fast += cpu_per_record(model, messages, args.repeat // 4)
            slow += cpu_per_record(general, messages, args.repeat // 4)
        print(f"{name:8s} typed path {statistics.median(fast):5.2f} / {min(fast):5.2f}   "
              f"general path {statistics.median(slow):5.2f} / {min(slow):5.2f}   "
              f"typed / general {statistics.median(fast) / statistics.median(slow):.2f}")


if __name__ == "__main__":
    main()
