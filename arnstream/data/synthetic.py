"""Synthetic per-connection flows with labelled attacks: data the project makes itself.

Normal traffic mixes a few services with heavy-tailed (log-normal) sizes; attacks are the
classic shapes (port scan, SYN flood, SSH brute force, exfiltration). Used by the demo's
default evaluation and by the tests; it needs no file.

`beacon` (command-and-control check-ins: small fixed-size HTTPS exchanges) is kept out of the
default set on purpose: every value lies inside normal ranges, so an unsupervised model
misses it. It is the attack the feedback loop's tests teach with analyst labels.
"""

from __future__ import annotations

import numpy as np

from ..schema import FlowSchema
from .dataset import Dataset

ATTACKS = ("scan", "synflood", "bruteforce", "exfiltration")
SUBTLE_ATTACKS = ("beacon",)
KNOWN_ATTACKS = ATTACKS + SUBTLE_ATTACKS

# service: (protocol, mean log src_bytes, mean log dst_bytes, mean duration s, share)
_SERVICES = {
    "http": ("tcp", 6.0, 9.0, 0.8, 0.35),
    "https": ("tcp", 6.5, 9.5, 1.5, 0.30),
    "dns": ("udp", 4.0, 5.0, 0.01, 0.20),
    "ssh": ("tcp", 7.0, 7.5, 30.0, 0.05),
    "smtp": ("tcp", 8.0, 5.5, 2.0, 0.05),
    "ntp": ("udp", 3.8, 3.8, 0.01, 0.05),
}


def normal_flows(rng: np.random.Generator, n: int) -> dict:
    names = list(_SERVICES)
    share = np.array([_SERVICES[s][4] for s in names])
    service = rng.choice(names, size=n, p=share / share.sum())
    proto = np.array([_SERVICES[s][0] for s in service], dtype=object)
    mu_src = np.array([_SERVICES[s][1] for s in service])
    mu_dst = np.array([_SERVICES[s][2] for s in service])
    mu_dur = np.array([_SERVICES[s][3] for s in service])
    flag = rng.choice(["SF", "S0", "REJ", "RSTO"], size=n, p=[0.97, 0.01, 0.01, 0.01])
    src = np.round(rng.lognormal(mu_src, 0.8))
    dst = np.round(rng.lognormal(mu_dst, 1.0))
    count = rng.poisson(4, n) + 1
    same_srv = np.clip(rng.beta(8, 2, n), 0, 1)
    return {
        "protocol": proto,
        "service": service.astype(object),
        "flag": flag.astype(object),
        "duration": rng.exponential(mu_dur),
        "src_bytes": src,
        "dst_bytes": dst,
        "packets": np.round(1 + (src + dst) / rng.uniform(400, 1400, n)),
        "count": count.astype(float),
        "srv_count": np.round(count * same_srv) + 1,
        "serror_rate": np.clip(rng.beta(1, 40, n), 0, 1),
        "rerror_rate": np.clip(rng.beta(1, 40, n), 0, 1),
        "same_srv_rate": same_srv,
        "failed_logins": (rng.random(n) < 0.01).astype(float),
    }


def attack_flows(rng: np.random.Generator, kind: str, n: int) -> dict:
    rec = normal_flows(rng, n)
    if kind == "scan":
        rec["service"] = rng.choice(["http", "ssh", "smtp", "ftp", "telnet", "rdp"], n).astype(object)
        rec["protocol"] = np.full(n, "tcp", dtype=object)
        rec["flag"] = rng.choice(["REJ", "S0"], n).astype(object)
        rec["src_bytes"] = np.zeros(n)
        rec["dst_bytes"] = np.zeros(n)
        rec["packets"] = np.ones(n)
        rec["duration"] = np.zeros(n)
        rec["count"] = rng.integers(50, 250, n).astype(float)
        rec["srv_count"] = rng.integers(1, 5, n).astype(float)
        rec["rerror_rate"] = rng.uniform(0.5, 1.0, n)
        rec["same_srv_rate"] = rng.uniform(0.0, 0.1, n)
    elif kind == "synflood":
        rec["service"] = np.full(n, "http", dtype=object)
        rec["protocol"] = np.full(n, "tcp", dtype=object)
        rec["flag"] = np.full(n, "S0", dtype=object)
        rec["src_bytes"] = np.zeros(n)
        rec["dst_bytes"] = np.zeros(n)
        rec["packets"] = np.ones(n)
        rec["count"] = rng.integers(200, 500, n).astype(float)
        rec["srv_count"] = rec["count"].copy()
        rec["serror_rate"] = rng.uniform(0.9, 1.0, n)
        rec["same_srv_rate"] = np.ones(n)
    elif kind == "bruteforce":
        rec["service"] = np.full(n, "ssh", dtype=object)
        rec["protocol"] = np.full(n, "tcp", dtype=object)
        rec["src_bytes"] = np.round(rng.normal(1500, 100, n)).clip(0)
        rec["dst_bytes"] = np.round(rng.normal(2000, 100, n)).clip(0)
        rec["duration"] = rng.uniform(1, 3, n)
        rec["count"] = rng.integers(20, 60, n).astype(float)
        rec["srv_count"] = rec["count"].copy()
        rec["failed_logins"] = rng.integers(2, 6, n).astype(float)
    elif kind == "exfiltration":
        rec["service"] = rng.choice(["https", "dns"], n).astype(object)
        rec["protocol"] = np.where(rec["service"] == "dns", "udp", "tcp").astype(object)
        rec["src_bytes"] = np.round(rng.lognormal(15, 0.5, n))
        rec["dst_bytes"] = np.round(rng.lognormal(5, 0.5, n))
        rec["duration"] = rng.uniform(30, 300, n)
        rec["packets"] = np.round(rec["src_bytes"] / 1200)
    elif kind == "beacon":
        rec["service"] = np.full(n, "https", dtype=object)
        rec["protocol"] = np.full(n, "tcp", dtype=object)
        rec["flag"] = np.full(n, "SF", dtype=object)
        rec["src_bytes"] = np.round(rng.normal(420, 20, n))
        rec["dst_bytes"] = np.round(rng.normal(900, 40, n))
        rec["duration"] = rng.uniform(0.2, 0.4, n)
        rec["count"] = rng.integers(1, 3, n).astype(float)
        rec["srv_count"] = rec["count"].copy()
        rec["same_srv_rate"] = np.ones(n)
        rec["packets"] = np.round(1 + (rec["src_bytes"] + rec["dst_bytes"]) / 900)
    else:
        raise ValueError(f"unknown attack '{kind}' (known: {', '.join(KNOWN_ATTACKS)})")
    return rec


def synthetic_flows(n_normal: int = 20000, n_anomalous: int = 2000,
                    attacks: tuple[str, ...] = ATTACKS, seed: int = 0) -> Dataset:
    """Labelled synthetic connections; anomalies split evenly between `attacks`."""
    rng = np.random.default_rng(seed)
    parts = [normal_flows(rng, n_normal)]
    classes = [np.full(n_normal, "normal", dtype=object)]
    for i, kind in enumerate(attacks):
        k = n_anomalous // len(attacks) + (1 if i < n_anomalous % len(attacks) else 0)
        parts.append(attack_flows(rng, kind, k))
        classes.append(np.full(k, kind, dtype=object))
    schema = FlowSchema.load("flowsim")
    columns = {f.name: np.concatenate([p[f.name] for p in parts]) for f in schema.feature_fields}
    cls = np.concatenate(classes)
    order = rng.permutation(len(cls))
    columns = {k: v[order] for k, v in columns.items()}
    cls = cls[order]
    return Dataset("synthetic", schema, columns, (cls != "normal").astype(np.int8), cls, ["generated"])
