"""Datasets: public-format loaders, the generated flows, and the paper's split protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError
from . import loaders
from .dataset import Dataset
from .splits import Split, paper_split
from .synthetic import ATTACKS, synthetic_flows

# name -> (loader taking the data folder, description)
DATASETS: dict[str, tuple[Callable[[Path], Dataset], str]] = {
    "synthetic": (lambda d: synthetic_flows(), "generated flows with 4 attack types (no file)"),
    "kddcup99": (lambda d: loaders.kddcup99(d, "full"), "KDD Cup 99 10% set, all attacks"),
    "kddcup99-rev": (lambda d: loaders.kddcup99(d, "rev"), "KDD Cup 99 without smurf and neptune"),
    "kddcup99-inv": (lambda d: loaders.kddcup99(d, "inv"), "KDD Cup 99, normal and attack swapped"),
    "nsl-kdd": (lambda d: loaders.nsl_kdd(d, "20percent"), "NSL-KDD: KDDTrain+_20Percent + KDDTest+"),
    "nsl-kdd-full": (lambda d: loaders.nsl_kdd(d, "full"), "NSL-KDD: KDDTrain+ + KDDTest+"),
    "bank": (loaders.bank, "Bank marketing, 10 nominal attributes, y=yes anomalous"),
    "doh": (lambda d: loaders.doh(d, False), "CIRA-CIC-DoHBrw-2020 layer 2, malicious anomalous"),
    "doh-inv": (lambda d: loaders.doh(d, True), "CIRA-CIC-DoHBrw-2020 layer 2, benign anomalous"),
    "covtype": (loaders.covtype, "UCI Covertype, types 1-3 normal"),
    "creditcard": (loaders.creditcard, "Credit-card fraud, fraud anomalous"),
    "mnist": (lambda d: loaders.mnist(d, 0), "MNIST test set, digit 0 normal"),
}


def load_dataset(spec: str, data_dir: Path) -> Dataset:
    """A dataset by name, or a file: `npz:PATH`, `csv:PATH:LABEL[:NORMAL]`, `mnist:DIGIT`."""
    kind, _, rest = spec.partition(":")
    if kind == "npz" and rest:
        return loaders.npz(Path(rest))
    if kind == "csv" and rest:
        parts = rest.split(":")
        if len(parts) < 2:
            raise DataError("csv datasets are given as csv:PATH:LABEL_COLUMN[:NORMAL_VALUE]")
        return loaders.csv_dataset(Path(parts[0]), parts[1], *(parts[2:3]))
    if kind == "mnist" and rest:
        return loaders.mnist(data_dir, int(rest))
    if spec not in DATASETS:
        raise DataError(f"unknown dataset '{spec}'; known: {', '.join(DATASETS)}, npz:PATH, csv:PATH:LABEL")
    return DATASETS[spec][0](Path(data_dir))


__all__ = ["ATTACKS", "DATASETS", "Dataset", "Split", "load_dataset", "paper_split", "synthetic_flows"]
