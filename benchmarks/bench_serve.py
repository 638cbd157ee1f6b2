"""Serve throughput against a pass-through ceiling, per Kafka client backend, in one run.

For each backend (kafka-python, confluent), in a process of its own as serve runs, on the
embedded broker and the same N simulated flow records (JSON, 2 partitions):
  pass-through  consume, produce one small record per input, commit per batch: no decoding,
                no features, no model. The most any consume-produce service can do here.
  serve         arnstream's scoring loop (decode, validate, encode, ARN discriminator,
                scores + alerts out, commit) with a really trained ARN.
Throughput is counted from the first batch to the last (the group join is excluded).
Prints records/s, serve/pass-through ratio (target >= 0.5), p50/p99 batch latency, and
confluent/kafka-python serve ratio (target >= 3). Serve runs with the feedback store on (the
default: every scored record kept in SQLite for analyst labels) and, with `--feedback both`,
once more without it on a new consumer group, to print what the store costs.

    python benchmarks/bench_serve.py [--records 100000] [--batch-size 5000] [--clients kafka-python,confluent]
                                     [--compression lz4] [--linger-ms 20] [--threads 1] [--feedback both|on]
                                     [--repeat 1] [--malformed 0.002]

`--malformed 0.002` cuts that share of the records short (not JSON), so that serve also writes
dead letters, as on a real feed; by default every record is valid.

The machine's noise is large (runs of the same code differ by 10-20%): `--repeat 3` measures each
backend three times, each ceiling right before its serve, and prints the median of the per-run
ratios.

Each phase also prints its CPU cost per record (this process, every thread, plus the broker's
process) and what that cost caps the rate at on this machine's cores: when serve's cap is below
half the ceiling, no overlap of its work can reach the 0.5 target here; only a lower cost can.
Serve's cost is also split by thread (its main loop, the scorer, the store writer, the feedback
thread, the Kafka client's threads; from /proc/self/task), to see which part a change moved: a
thread's CPU does not count the time it waits for a core or the GIL.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _model import trained_registry  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from arnstream.config import load_config  # noqa: E402
from arnstream.registry import Registry  # noqa: E402
from arnstream.stream.broker import EmbeddedBroker  # noqa: E402
from arnstream.stream.client import ensure_topics, open_consumer, open_producer  # noqa: E402
from arnstream.stream.serve import Service  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402


def fill_topic(cfg, topic: str, n: int, malformed: float = 0.0) -> None:
    """n simulated flows; with `malformed`, that share of them cut short (not JSON), evenly spread."""
    ensure_topics(cfg.kafka, [topic], partitions=2)
    sim = FlowSimulator(seed=1, attacks=("scan", "synflood", "bruteforce", "exfiltration"))
    producer = open_producer(cfg.kafka)
    every = round(1 / malformed) if malformed > 0 else 0
    done = 0
    while done < n:
        records, _ = sim.batch(min(10000, n - done))
        for i, r in enumerate(records, done):
            value = orjson.dumps(r)
            if every and i % every == every // 2:
                value = value[: len(value) // 2]
            producer.send(topic, value, r["flow_id"].encode())
        producer.flush()
        done += len(records)
    producer.close()


class CpuMeter:
    """CPU seconds (user + system, every thread) of this process and of the broker's, so that a
    phase's CPU cost per record can be read beside its throughput: on a machine where the
    broker shares the cores, cores / (CPU per record) is the most any service of that cost
    can do, however well it overlaps its work."""

    def __init__(self, broker_pid: int):
        self.stat = Path(f"/proc/{broker_pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[float, float]:
        return time.process_time(), stat_cpu_seconds(self.stat, self.tick)


def stat_cpu_seconds(stat: Path, tick: int) -> float:
    """utime + stime of a /proc/<pid>[/task/<tid>]/stat file, in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / tick


# serve's threads by name (Python's, or the OS's for librdkafka's "rdk:..."); the rest is "other"
THREAD_GROUPS = (("serve", "main"), ("arnstream-score", "scorer"), ("arnstream-store", "store writer"),
                 ("arnstream-feedback", "feedback"), ("rdk:", "librdkafka"), ("kafka", "kafka-python"))


def thread_group(name: str) -> str:
    # kafka-python names its IO threads "kafka-io-<client id>" and its producers' senders
    # "<client id>-network-thread" (serve's: "arnstream-serve-network-thread")
    if name.endswith("-network-thread"):
        return "kafka-python"
    return next((group for prefix, group in THREAD_GROUPS if name.startswith(prefix)), "other")


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's live threads, summed per THREAD_GROUPS group."""
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            seconds = stat_cpu_seconds(task / "stat", tick)
            name = python_names.get(int(task.name)) or (task / "comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        group = thread_group(name)
        out[group] = out.get(group, 0.0) + seconds
    return out


def cpu_per_record(start: tuple[float, float], end: tuple[float, float], records: int) -> dict:
    own, broker = ((b - a) / max(records, 1) for a, b in zip(start, end))
    return {"own_us": own * 1e6, "broker_us": broker * 1e6}


def pass_through(cfg, topic: str, n: int, batch_size: int, meter: CpuMeter) -> dict:
    consumer = open_consumer(cfg.kafka, [topic], f"pt-{time.time_ns()}", client_id="bench-pt")
    producer = open_producer(cfg.kafka, client_id="bench-pt")
    seen, first, latencies = 0, None, []
    while seen < n:
        started, cpu = time.monotonic(), meter.sample()
        msgs = consumer.poll_batch(batch_size, 500)
        if not msgs:
            continue
        if first is None:
            first, cpu_at_first = started, cpu
        for m in msgs:
            producer.send(f"{topic}-pt-out", b'{"ok":1}', m.key)
        producer.flush()
        offsets = {}
        for m in msgs:
            offsets[(m.topic, m.partition)] = max(offsets.get((m.topic, m.partition), 0), m.offset + 1)
        consumer.commit(offsets)
        latencies.append(time.monotonic() - started)
        seen += len(msgs)
    elapsed, cost = time.monotonic() - first, cpu_per_record(cpu_at_first, meter.sample(), seen)
    consumer.close()
    producer.close()
    return {"rate": seen / elapsed, "p50": np.percentile(latencies, 50), "p99": np.percentile(latencies, 99), **cost}


def serve(cfg, topic: str, n: int, meter: CpuMeter) -> dict:
    stop = threading.Event()
    service = Service(cfg, Registry(cfg.registry.dir), topic=topic, stop=stop)
    thread = threading.Thread(target=service.run, name="serve", daemon=True)
    thread.start()
    counted_from = None  # (records, cpu, per thread) once the first batch is in: the join and model load excluded
    while service.stats.consumed < n:
        if not thread.is_alive():
            raise RuntimeError("serve stopped")
        if counted_from is None and service.stats.consumed:
            counted_from = (service.stats.consumed, meter.sample(), thread_cpu())
        time.sleep(0.05)
    records = service.stats.consumed - counted_from[0]
    cost = cpu_per_record(counted_from[1], meter.sample(), records)
    threads = {group: (seconds - counted_from[2].get(group, 0.0)) / max(records, 1) * 1e6
               for group, seconds in thread_cpu().items()}
    stop.set()
    thread.join(30)
    s = service.stats
    lat = list(s.recent_batch_seconds)
    return {"rate": s.consumed / (s.last_batch_at - s.first_batch_at), "p50": np.percentile(lat, 50),
            "p99": np.percentile(lat, 99), "threads": threads, **cost}


def cpu_line(name: str, phase: dict, ceiling: float, cores: int) -> str:
    """CPU per record, and the rate these cores could give at that cost, as a share of the ceiling."""
    total = phase["own_us"] + phase["broker_us"]
    cap = cores * 1e6 / total
    return (f"  {name:34s} CPU {phase['own_us']:5.1f} us/record here + {phase['broker_us']:5.1f} broker = "
            f"{total:5.1f}: {cores} cores cap it at {cap:9.0f} rec/s = {cap / ceiling:.2f} of the ceiling")


def threads_line(threads: dict[str, float]) -> str:
    order = [g for _, g in THREAD_GROUPS] + ["other"]
    parts = [f"{g} {threads[g]:.1f}" for g in order if threads.get(g, 0.0) >= 0.05]
    return "    of which, per thread (us/record): " + ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--clients", default="kafka-python,confluent")
    defaults = load_config()
    ap.add_argument("--compression", default=defaults.kafka.compression, help="producer compression")
    ap.add_argument("--linger-ms", type=int, default=defaults.kafka.linger_ms)
    ap.add_argument("--threads", type=int, default=defaults.serve.threads, help="torch threads in serve")
    ap.add_argument("--discriminator-width", type=int, default=defaults.training.discriminator_width,
                    help="the served ARN's (training.discriminator_width; the paper's is 64)")
    ap.add_argument("--feedback", choices=["both", "on"], default="both",
                    help="also measure serve without the feedback store")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per backend (ceiling, then serve); with more than one, medians are printed too")
    ap.add_argument("--malformed", type=float, default=0.0,
                    help="share of the records cut short (dead letters), e.g. 0.002; default none")
    ap.add_argument("--rates-to", help=argparse.SUPPRESS)  # a child process's median serve rate, as JSON
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    clients = args.clients.split(",")
    if len(clients) == 1:
        rate = measure_backend(args, clients[0])
        if args.rates_to:
            Path(args.rates_to).write_bytes(orjson.dumps(rate))
        return
    # each backend in a process of its own, as serve runs: measured one after the other in one
    # process, the second found the heap, allocator and collector as the first left them (its
    # ceiling ran faster after the other backend's stage; docs/streaming.md)
    serve_rate = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        for client in clients:
            out = Path(scratch) / f"{client}.json"
            argv = [sys.executable, str(Path(__file__).resolve()), "--records", str(args.records),
                    "--batch-size", str(args.batch_size), "--clients", client, "--compression", args.compression,
                    "--linger-ms", str(args.linger_ms), "--threads", str(args.threads), "--feedback", args.feedback,
                    "--repeat", str(args.repeat), "--malformed", str(args.malformed), "--rates-to", str(out)]
            if args.discriminator_width is not None:
                argv += ["--discriminator-width", str(args.discriminator_width)]
            subprocess.run(argv, check=True)
            serve_rate[client] = orjson.loads(out.read_bytes())
    if {"kafka-python", "confluent"} <= set(serve_rate):
        ratio = serve_rate["confluent"] / serve_rate["kafka-python"]
        print(f"confluent / kafka-python serve throughput{' (medians)' if args.repeat > 1 else ''}: "
              f"{ratio:.2f}x (target >= 3)")


def measure_backend(args, client: str) -> float:
    """Ceiling and serve of one backend, `args.repeat` times; returns serve's median rate."""
    registry = trained_registry("serve", epochs=5, discriminator_width=args.discriminator_width)
    # the pass-through allocates per message too: freeze what is loaded by now (torch, the model
    # training) as serve does at each model load, or each ceiling is measured under a different
    # garbage-collector load (the first one, before any serve had frozen them, ran ~1.6x slower)
    gc.collect()
    gc.freeze()
    scratch = tempfile.TemporaryDirectory(prefix="bench-serve-")
    cores = len(os.sched_getaffinity(0))
    with EmbeddedBroker() as broker:
        meter = CpuMeter(broker.process.pid)
        cfg = load_config(None, {}, {"kafka.bootstrap_servers": broker.bootstrap, "kafka.client": client,
                                     "kafka.session_timeout_ms": 6000, "serve.metrics_address": None,
                                     "serve.batch_size": args.batch_size, "registry.dir": str(registry),
                                     "serve.threads": args.threads, "kafka.compression": args.compression,
                                     "kafka.linger_ms": args.linger_ms,
                                     "topics.scores": f"scores-{client}", "topics.alerts": f"alerts-{client}",
                                     "topics.deadletter": f"dead-{client}",
                                     "topics.labels": f"labels-{client}"})
        topic = f"bench-{client}"
        ensure_topics(cfg.kafka, [cfg.topics.scores, cfg.topics.alerts, cfg.topics.deadletter,
                                  f"{topic}-pt-out"])
        fill_topic(cfg, topic, args.records, args.malformed)
        runs = []
        for i in range(args.repeat):  # each run: a new consumer group and a new store
            run_cfg = dataclasses.replace(
                cfg, kafka=dataclasses.replace(cfg.kafka, group=f"bench-{client}-{i}"),
                feedback=dataclasses.replace(cfg.feedback, store=f"{scratch.name}/{client}-{i}.sqlite3"))
            pt = pass_through(run_cfg, topic, args.records, args.batch_size, meter)
            sv = serve(run_cfg, topic, args.records, meter)
            runs.append((pt, sv))
            print(f"{client:12s} pass-through {pt['rate']:9.0f} rec/s (batch p50 {pt['p50'] * 1e3:6.1f} ms, "
                  f"p99 {pt['p99'] * 1e3:6.1f} ms) | serve {sv['rate']:9.0f} rec/s (batch p50 "
                  f"{sv['p50'] * 1e3:6.1f} ms, p99 {sv['p99'] * 1e3:6.1f} ms) | serve/pass-through "
                  f"{sv['rate'] / pt['rate']:.2f} (target >= 0.5)", flush=True)
            print(cpu_line("pass-through", pt, pt["rate"], cores))
            print(cpu_line("serve", sv, pt["rate"], cores), flush=True)
            print(threads_line(sv["threads"]), flush=True)
            if args.feedback == "both":
                off = dataclasses.replace(
                    run_cfg, kafka=dataclasses.replace(run_cfg.kafka, group=f"bench-{client}-{i}-nofb"),
                    feedback=dataclasses.replace(run_cfg.feedback, enabled=False))
                bare = serve(off, topic, args.records, meter)
                print(f"{client:12s} serve without the feedback store {bare['rate']:9.0f} rec/s (batch p50 "
                      f"{bare['p50'] * 1e3:6.1f} ms) | with / without {sv['rate'] / bare['rate']:.2f}")
                print(cpu_line("serve without the feedback store", bare, pt["rate"], cores), flush=True)
                print(threads_line(bare["threads"]), flush=True)
        if args.repeat > 1:  # each ratio pairs a ceiling with the serve measured right after it
            ratios = [sv["rate"] / pt["rate"] for pt, sv in runs]
            print(f"{client:12s} median of {args.repeat} runs: pass-through "
                  f"{np.median([pt['rate'] for pt, _ in runs]):9.0f} rec/s, serve "
                  f"{np.median([sv['rate'] for _, sv in runs]):9.0f} rec/s, serve/pass-through "
                  f"{np.median(ratios):.2f} (runs {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.5)", flush=True)
    scratch.cleanup()
    return float(np.median([sv["rate"] for _, sv in runs]))


if __name__ == "__main__":
    main()
