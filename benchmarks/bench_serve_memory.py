"""Does serve's memory stay flat? RSS of the serving process at 100k and 1M records.

A producer thread feeds simulated flows into the embedded broker while serve (in this
process, with a really trained ARN) scores them; RSS is read from /proc at checkpoints.
The baseline is the RSS after the first 100k records, measured in the same run: the
ratio at 1M should stay near 1 (the target: below 1.1).

    python benchmarks/bench_serve_memory.py [--records 1000000] [--client confluent]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _model import trained_registry  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from arnstream.config import load_config  # noqa: E402
from arnstream.registry import Registry  # noqa: E402
from arnstream.stream.broker import EmbeddedBroker  # noqa: E402
from arnstream.stream.client import ensure_topics, open_producer  # noqa: E402
from arnstream.stream.serve import Service  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--client", default="confluent")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    registry = trained_registry("memory", epochs=3)
    checkpoints = sorted({min(100_000, args.records), args.records // 4, args.records // 2, args.records})
    with EmbeddedBroker() as broker:
        cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap, "kafka.client": args.client,
                                     "kafka.session_timeout_ms": 6000, "serve.metrics_address": None,
                                     "registry.dir": str(registry)})
        t = cfg.topics
        ensure_topics(cfg.kafka, [t.scores, t.alerts, t.deadletter])
        ensure_topics(cfg.kafka, [t.live], partitions=2)

        def feed():
            sim = FlowSimulator(seed=1, attacks=("scan", "synflood", "bruteforce", "exfiltration"))
            producer = open_producer(cfg.kafka)
            done = 0
            while done < args.records:
                batch, _ = sim.batch(min(20000, args.records - done))
                for r in batch:
                    producer.send(t.live, orjson.dumps(r), r["flow_id"].encode())
                producer.flush()
                done += len(batch)
            producer.close()

        threading.Thread(target=feed, daemon=True).start()
        stop = threading.Event()
        service = Service(cfg, Registry(registry), stop=stop)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        readings = {}
        for mark in checkpoints:
            while service.stats.consumed < mark:
                if not thread.is_alive():
                    raise RuntimeError("serve stopped")
                time.sleep(0.1)
            readings[mark] = rss_mib()
            print(f"  {service.stats.consumed:>9} records: RSS {readings[mark]:.1f} MiB", flush=True)
        stop.set()
        thread.join(30)
    first, last = readings[checkpoints[0]], readings[checkpoints[-1]]
    print(f"RSS at {checkpoints[-1]} / RSS at {checkpoints[0]} records: {last / first:.3f} (target < 1.1)")


if __name__ == "__main__":
    main()
