"""Dataset: feature columns described by a schema, a binary target, the original classes."""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..features.columns import Columns, take
from ..schema import FlowSchema


@dataclass
class Dataset:
    name: str
    schema: FlowSchema
    columns: Columns  # feature columns only, one array per field
    y: np.ndarray  # 1 = anomaly, 0 = normal
    classes: np.ndarray  # the original class of each row (attack name, digit, ...)
    sources: list[str] = field(default_factory=list)  # files read, for the report

    def __post_init__(self):
        self.y = np.asarray(self.y, dtype=np.int8)
        n = len(self.y)
        for name, col in self.columns.items():
            if len(col) != n:
                raise DataError(f"{self.name}: column '{name}' has {len(col)} rows, labels have {n}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_normal(self) -> int:
        return int((self.y == 0).sum())

    @property
    def n_anomalous(self) -> int:
        return int((self.y == 1).sum())

    def subset(self, index: np.ndarray, name: str | None = None) -> "Dataset":
        return Dataset(
            name=name or self.name,
            schema=self.schema,
            columns=take(self.columns, index),
            y=self.y[index],
            classes=self.classes[index],
            sources=self.sources,
        )

    def swapped(self, name: str) -> "Dataset":
        """The same rows with normal and anomalous swapped (the paper's *_Inv datasets)."""
        return Dataset(name, self.schema, self.columns, 1 - self.y, self.classes, self.sources)

    def fingerprint(self) -> str:
        """A short hash of the labels and sizes, recorded with results and artifacts."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(np.ascontiguousarray(self.y).tobytes())
        for name in sorted(self.columns):
            h.update(name.encode())
        return h.hexdigest()[:16]


def find_file(data_dir: Path, candidates: list[str], what: str) -> Path:
    """The first existing candidate under data_dir, else a DataError naming them all."""
    for rel in candidates:
        path = Path(data_dir) / rel
        if path.is_file():
            return path
    tried = ", ".join(str(Path(data_dir) / c) for c in candidates)
    raise DataError(
        f"{what}: file not found (tried {tried}). Set --data-dir or ARNSTREAM_DATA_DIR to the "
        "folder that holds the public files."
    )


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping *.gz."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def open_binary(path: Path):
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
