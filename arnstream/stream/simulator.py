"""Flow simulators: normal traffic with injected attacks, produced to a topic.

Records follow the `flowsim` schema (per-connection flows already aggregated, as in KDD):
several services with heavy-tailed (log-normal) sizes, and a diurnal-ish rate (a compressed
"day" of `day_seconds`, busiest at mid-day). Attacks are port scan, SYN flood, SSH brute
force, exfiltration and `beacon` (which only analyst labels teach: see data/synthetic.py).
`netflow_sim.py` simulates raw flows of a small network for the `netflow` schema. The
ground truth travels in a message header (`arnstream-truth`: "normal" or the attack's
name), never in the record, so serve cannot peek at it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson

from ..data.synthetic import KNOWN_ATTACKS, attack_flows, normal_flows

TRUTH_HEADER = "arnstream-truth"
_FIELDS = ("protocol", "service", "flag", "duration", "src_bytes", "dst_bytes", "packets", "count",
           "srv_count", "serror_rate", "rerror_rate", "same_srv_rate", "failed_logins")


@dataclass
class FlowSimulator:
    seed: int = 0
    attacks: tuple[str, ...] = ()
    attack_fraction: float = 0.05  # share of records that are attacks when attacks are on
    prefix: str = "sim"  # record ids are "<prefix>-<seed>-<n>"
    _n: int = field(default=0, init=False)

    def __post_init__(self):
        check_attacks(self.attacks, KNOWN_ATTACKS)
        self._rng = np.random.default_rng(self.seed)

    def batch(self, n: int, ts: float | None = None) -> tuple[list[dict], list[str]]:
        """n records (attacks mixed in at random places) and their ground truth."""
        rng = self._rng
        n_attack = int(rng.binomial(n, self.attack_fraction)) if self.attacks else 0
        kinds = rng.choice(self.attacks, n_attack) if n_attack else np.array([], dtype=object)
        parts = [normal_flows(rng, n - n_attack)]
        truth = ["normal"] * (n - n_attack)
        for kind in self.attacks:
            k = int((kinds == kind).sum())
            if k:
                parts.append(attack_flows(rng, kind, k))
                truth += [kind] * k
        columns = {f: _plain(np.concatenate([p[f] for p in parts])) for f in _FIELDS}
        order = rng.permutation(n)
        now = time.time() if ts is None else ts
        records = []
        for i in order.tolist():
            rec = {"flow_id": f"{self.prefix}-{self.seed}-{self._n}", "ts": round(now, 3)}
            rec.update((f, columns[f][i]) for f in _FIELDS)
            records.append(rec)
            self._n += 1
        return records, [truth[i] for i in order.tolist()]


def check_attacks(attacks, known) -> None:
    unknown = set(attacks) - set(known)
    if unknown:
        raise ValueError(f"unknown attack(s) {sorted(unknown)}; known: {', '.join(known)}")


def make_simulator(schema: str, *, seed: int = 0, attacks: tuple[str, ...] = (),
                   attack_fraction: float = 0.05, rate: float = 1000.0, prefix: str = "sim"):
    """The simulator for a schema: `flowsim` (aggregated flows) or `netflow` (raw flows)."""
    if schema == "flowsim":
        return FlowSimulator(seed=seed, attacks=attacks, attack_fraction=attack_fraction, prefix=prefix)
    if schema == "netflow":
        from .netflow_sim import NetflowSimulator

        return NetflowSimulator(seed=seed, attacks=attacks, attack_fraction=attack_fraction,
                                rate=rate if rate > 0 else 1000.0, prefix=prefix)
    raise ValueError(f"no simulator for schema '{schema}' (flowsim or netflow)")


def diurnal_rate(rate: float, t: float, day_seconds: float) -> float:
    """Records per second at time t: from 0.5x (night) to 1.5x (mid-day) the mean rate."""
    return rate * (1.0 + 0.5 * math.sin(2 * math.pi * t / day_seconds - math.pi / 2))


def produce(producer, topic: str, simulator: FlowSimulator, *, rate: float = 0.0,
            total: int | None = None, duration_s: float | None = None, day_seconds: float = 600.0,
            tick_s: float = 0.1, stop: Callable[[], bool] = lambda: False,
            on_batch: Callable[[list[dict], list[str]], None] | None = None) -> int:
    """Produce records until `total` or `duration_s` (rate 0 = as fast as possible)."""
    if total is None and duration_s is None:
        raise ValueError("give total, duration_s or both")
    sent, started, due = 0, time.monotonic(), 0.0
    last = started
    while not stop():
        now = time.monotonic()
        elapsed = now - started
        if duration_s is not None and elapsed >= duration_s:
            break
        if total is not None and sent >= total:
            break
        if rate <= 0:
            n = 5000
        else:  # what the (diurnal) rate owes since the last tick, so slow sends do not slow the rate
            due += diurnal_rate(rate, elapsed, day_seconds) * (now - last)
            last = now
            n = int(due) - sent
            if n <= 0:
                time.sleep(tick_s)
                continue
        if total is not None:
            n = min(n, total - sent)
        records, truth = simulator.batch(n)
        for rec, label in zip(records, truth):
            producer.send(topic, orjson.dumps(rec), key=rec["flow_id"].encode(),
                          headers=[(TRUTH_HEADER, label.encode())])
        producer.flush()
        if on_batch is not None:
            on_batch(records, truth)
        sent += n
    return sent


def _plain(values: np.ndarray) -> list:
    """JSON-ready Python values; floats rounded so records stay small on the wire."""
    if values.dtype.kind == "f":
        return np.round(values, 4).tolist()
    return values.tolist()
