"""What `arnstream demo` runs with. A module of its own, free of heavy imports, so that the
command line takes its defaults from here without loading torch to build its parser."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ATTACKS = ("scan", "synflood", "bruteforce", "exfiltration")


@dataclass
class DemoOptions:
    normal_records: int = 40000  # 29,000 to train on, 11,000 to calibrate the 0.1% threshold on
    live_seconds: float = 150.0
    rate: float = 1000.0
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    epochs: int = 12
    analyst_after_s: float = 15.0  # when the simulated analyst starts looking (it sends once it has `labels`)
    labels: int = 20  # how many (0: no analyst, no retraining)
    keep_running: bool = False
    workdir: str = "results/demo"
    seed: int = 0
    live_partitions: int = 2
