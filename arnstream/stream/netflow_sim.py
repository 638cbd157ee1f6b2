"""Raw flow records (the `netflow` schema) from a small simulated network.

60 internal clients talk to 8 internal servers and to external web hosts, with a synthetic
clock advancing at `rate` flows per second (so a window produced as fast as possible still
has the time structure of live traffic). Attacks come in bursts, as they do: a port scan
from one host, a SYN flood with spoofed sources, an SSH brute force, an exfiltration to an
outside host. Ground truth is returned beside the records, never inside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .simulator import check_attacks

ATTACKS = ("scan", "synflood", "bruteforce", "exfiltration")
BURST = {"scan": 60, "synflood": 120, "bruteforce": 40, "exfiltration": 3}

_CLIENTS = [f"10.0.{i // 250}.{i % 250 + 2}" for i in range(60)]
_SERVERS = {"10.1.0.10": (80, 443), "10.1.0.11": (443,), "10.1.0.20": (53,), "10.1.0.21": (53,),
            "10.1.0.30": (22,), "10.1.0.40": (25, 587), "10.1.0.50": (3306,), "10.1.0.60": (123,)}
_EXTERNAL = [f"93.184.{i}.{j}" for i in range(2) for j in (10, 20, 30, 40)]
# dst port -> (protocol, mean log bytes out, mean log bytes in, mean duration s)
_PORTS = {80: ("tcp", 6.0, 9.0, 0.8), 443: ("tcp", 6.5, 9.5, 1.5), 53: ("udp", 4.0, 5.0, 0.01),
          22: ("tcp", 7.0, 7.5, 30.0), 25: ("tcp", 8.0, 5.5, 2.0), 587: ("tcp", 8.0, 5.5, 2.0),
          3306: ("tcp", 6.0, 8.0, 0.2), 123: ("udp", 3.8, 3.8, 0.01)}


@dataclass
class NetflowSimulator:
    seed: int = 0
    attacks: tuple[str, ...] = ()
    attack_fraction: float = 0.05
    rate: float = 1000.0  # flows per second of the synthetic clock
    prefix: str = "nf"
    start: float | None = None  # synthetic clock start (default: now)
    _n: int = field(default=0, init=False)

    def __post_init__(self):
        check_attacks(self.attacks, ATTACKS)
        self._rng = np.random.default_rng(self.seed)
        self._clock = time.time() if self.start is None else self.start

    def batch(self, n: int) -> tuple[list[dict], list[str]]:
        rng = self._rng
        records, truth = [], []
        while len(records) < n:
            if self.attacks and rng.random() < self.attack_fraction / np.mean([BURST[a] for a in self.attacks]):
                kind = self.attacks[rng.integers(len(self.attacks))]
                burst = self._attack(kind, min(BURST[kind], n - len(records)))
                records += burst
                truth += [kind] * len(burst)
            else:
                records.append(self._normal())
                truth.append("normal")
        return records, truth

    # ------------------------------------------------------------------ flows
    def _flow(self, src, dst, sport, dport, proto, flags, duration, b_out, b_in) -> dict:
        self._clock += self._rng.exponential(1.0 / self.rate)
        rec = {"flow_id": f"{self.prefix}-{self.seed}-{self._n}", "ts": round(self._clock, 4),
               "src_addr": src, "dst_addr": dst, "src_port": int(sport), "dst_port": int(dport),
               "protocol": proto, "tcp_flags": flags, "duration": round(float(duration), 4),
               "bytes_out": float(round(b_out)), "bytes_in": float(round(b_in)),
               "packets_out": float(1 + round(b_out / 1200)), "packets_in": float(round(b_in / 1200) + (b_in > 0))}
        self._n += 1
        return rec

    def _normal(self) -> dict:
        rng = self._rng
        src = _CLIENTS[rng.integers(len(_CLIENTS))]
        if rng.random() < 0.3:
            dst, dport = _EXTERNAL[rng.integers(len(_EXTERNAL))], int(rng.choice([80, 443]))
        else:
            dst = list(_SERVERS)[rng.integers(len(_SERVERS))]
            ports = _SERVERS[dst]
            dport = ports[rng.integers(len(ports))]
        proto, mo, mi, md = _PORTS[dport]
        flags = "" if proto == "udp" else str(rng.choice(["SAFP", "SAF", "SA", "S", "SR"],
                                                         p=[0.7, 0.26, 0.02, 0.01, 0.01]))
        return self._flow(src, dst, rng.integers(1024, 65536), dport, proto, flags, rng.exponential(md),
                          rng.lognormal(mo, 0.8), rng.lognormal(mi, 1.0) if flags not in ("S", "SR") else 0.0)

    def _attack(self, kind: str, k: int) -> list[dict]:
        rng = self._rng
        out = []
        if kind == "scan":
            src, dst = _CLIENTS[rng.integers(len(_CLIENTS))], list(_SERVERS)[rng.integers(len(_SERVERS))]
            for port in rng.choice(np.arange(1, 10000), k, replace=False):
                out.append(self._flow(src, dst, rng.integers(40000, 60000), port, "tcp", "SR", 0.0, 0, 0))
        elif kind == "synflood":
            for _ in range(k):
                spoofed = f"{rng.integers(1, 223)}.{rng.integers(256)}.{rng.integers(256)}.{rng.integers(1, 255)}"
                out.append(self._flow(spoofed, "10.1.0.10", rng.integers(1024, 65536), 80, "tcp", "S", 0.0, 0, 0))
        elif kind == "bruteforce":
            src = f"203.0.113.{rng.integers(1, 255)}"
            for _ in range(k):
                out.append(self._flow(src, "10.1.0.30", rng.integers(1024, 65536), 22, "tcp", "SAFP",
                                      rng.uniform(1, 3), rng.normal(1500, 100), rng.normal(2000, 100)))
        elif kind == "exfiltration":
            src, dst = _CLIENTS[rng.integers(len(_CLIENTS))], f"198.51.100.{rng.integers(1, 255)}"
            for _ in range(k):
                out.append(self._flow(src, dst, rng.integers(1024, 65536), 443, "tcp", "SAFP",
                                      rng.uniform(30, 300), rng.lognormal(16, 0.5), rng.lognormal(6, 0.5)))
        return out
