"""Loaders for the datasets of the paper's Table I, each from its public file format.

Every loader takes the folder that holds the public files (ARNSTREAM_DATA_DIR, resolved by
the CLI) and returns a Dataset. A missing file is a DataError naming the paths tried.
"""

from __future__ import annotations

import csv
import re
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..schema import FlowSchema
from .dataset import Dataset, find_file, open_binary, open_text

# ----------------------------------------------------------------------------- KDD family


def _read_kdd_rows(path: Path, n_label_cols: int) -> tuple[dict, np.ndarray]:
    """KDD-format CSV (41 features, then the label [, difficulty]) -> columns, classes."""
    schema = FlowSchema.load("kdd99")
    features = schema.feature_fields
    expected = len(features) + n_label_cols
    df = _read_csv(path, header=None)
    if df.shape[1] != expected:
        raise DataError(f"{path}: rows have {df.shape[1]} fields, expected {expected}")
    columns = {}
    for j, f in enumerate(features):
        col = df.iloc[:, j]
        if f.kind == "numeric":
            try:
                columns[f.name] = col.to_numpy(dtype=np.float64)
            except ValueError as exc:
                raise DataError(f"{path}: column {j + 1} ('{f.name}') is not numeric: {exc}") from exc
        else:
            columns[f.name] = col.astype(str).to_numpy(dtype=object)
    classes = df.iloc[:, len(features)].astype(str).str.rstrip(".").to_numpy(dtype=object)
    return columns, classes


def _read_csv(path: Path, **kwargs):
    """pandas' C parser: the csv module needs ~12 s for KDD's 494k rows, pandas ~1 s."""
    import pandas as pd

    try:
        return pd.read_csv(path, skipinitialspace=True, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot parse as CSV: {exc}") from exc


def kddcup99(data_dir: Path, variant: str = "full") -> Dataset:
    """KDD Cup 99 10% set. variant: full | rev (no smurf, neptune) | inv (classes swapped)."""
    if variant not in ("full", "rev", "inv"):
        raise DataError(f"kddcup99 variant '{variant}' is not one of full, rev, inv")
    path = find_file(
        data_dir,
        ["kddcup99/kddcup.data_10_percent.gz", "kddcup99/kddcup.data_10_percent",
         "kddcup.data_10_percent.gz", "kddcup.data_10_percent"],
        "KDD Cup 99 (kddcup.data_10_percent.gz)",
    )
    columns, classes = _read_kdd_rows(path, n_label_cols=1)
    y = (classes != "normal").astype(np.int8)
    ds = Dataset("kddcup99", FlowSchema.load("kdd99"), columns, y, classes, [str(path)])
    if variant == "rev":
        keep = np.flatnonzero(~np.isin(classes, ["smurf", "neptune"]))
        return ds.subset(keep, name="kddcup99-rev")
    if variant == "inv":
        return ds.swapped("kddcup99-inv")
    return ds


def nsl_kdd(data_dir: Path, train: str = "20percent") -> Dataset:
    """NSL-KDD: a training file (KDDTrain+_20Percent or the full KDDTrain+) plus KDDTest+.

    The paper's protocol re-splits the pooled rows, so both files are concatenated.
    """
    train_name = {"20percent": "KDDTrain+_20Percent.txt", "full": "KDDTrain+.txt"}.get(train)
    if train_name is None:
        raise DataError(f"nsl-kdd train set '{train}' is not one of 20percent, full")
    paths = [
        find_file(data_dir, [f"nsl-kdd/{n}.gz", f"nsl-kdd/{n}", f"{n}.gz", n], f"NSL-KDD ({n})")
        for n in (train_name, "KDDTest+.txt")
    ]
    parts = [_read_kdd_rows(p, n_label_cols=2) for p in paths]
    columns = {k: np.concatenate([c[k] for c, _ in parts]) for k in parts[0][0]}
    classes = np.concatenate([cl for _, cl in parts])
    y = (classes != "normal").astype(np.int8)
    name = "nsl-kdd" if train == "20percent" else "nsl-kdd-full"
    return Dataset(name, FlowSchema.load("kdd99"), columns, y, classes, [str(p) for p in paths])


# ----------------------------------------------------------------------------- Bank


BANK_FIELDS = ["job", "marital", "education", "default", "housing", "loan", "contact",
               "month", "day_of_week", "poutcome"]


def bank(data_dir: Path) -> Dataset:
    """Bank marketing: the nominal ARFF, or UCI's bank-additional-full.csv (same 10 nominals)."""
    path = find_file(
        data_dir,
        ["bank/bank-additional-full-nominal.arff.gz", "bank/bank-additional-full-nominal.arff",
         "bank/bank-additional-full.csv", "bank-additional-full.csv"],
        "Bank marketing (bank-additional-full-nominal.arff or bank-additional-full.csv)",
    )
    if ".arff" in path.name:
        attrs, rows = read_arff(path)
    else:
        df = _read_csv(path, sep=";", dtype=str)
        attrs = [str(c) for c in df.columns]
        rows = df.to_numpy(dtype=object).tolist()
    missing = [a for a in BANK_FIELDS + ["y"] if a not in attrs]
    if missing:
        raise DataError(f"{path}: attribute(s) {missing} not found (have {attrs})")
    cols = list(zip(*rows))
    columns = {a: np.asarray(cols[attrs.index(a)], dtype=object) for a in BANK_FIELDS}
    classes = np.asarray(cols[attrs.index("y")], dtype=object)
    y = (classes == "yes").astype(np.int8)
    return Dataset("bank", FlowSchema.load("bank"), columns, y, classes, [str(path)])


def read_arff(path: Path) -> tuple[list[str], list[list[str]]]:
    """A minimal ARFF reader: attribute names and the comma-separated @data rows."""
    attrs: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    with open_text(path) as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("%"):
                continue
            if in_data:
                rows.append([v.strip().strip("'\"") for v in next(csv.reader([line]))])
            elif line.lower().startswith("@attribute"):
                m = re.match(r"@attribute\s+('[^']+'|\"[^\"]+\"|\S+)", line, re.IGNORECASE)
                if not m:
                    raise DataError(f"{path}: cannot parse attribute line {line!r}")
                attrs.append(m.group(1).strip("'\""))
            elif line.lower().startswith("@data"):
                in_data = True
    if not attrs or not in_data:
        raise DataError(f"{path}: not an ARFF file (no @attribute or @data section)")
    for i, r in enumerate(rows):
        if len(r) != len(attrs):
            raise DataError(f"{path}: data row {i + 1} has {len(r)} values, expected {len(attrs)}")
    return attrs, rows


# ----------------------------------------------------------------------------- CSV family


def read_numeric_csv(path: Path, label: str, drop: tuple[str, ...] = ()) -> tuple[list[str], dict, np.ndarray, int]:
    """A headed CSV: numeric features (all but `label` and `drop`) and the label column.

    Rows with an empty, NaN or infinite feature are dropped and counted (the public DoH
    files have such rows); everything else that is not a number is a DataError.
    """
    df = _read_csv(path, dtype=str, keep_default_na=False)
    header = [str(h).strip() for h in df.columns]
    if label not in header:
        raise DataError(f"{path}: label column '{label}' not in header {header[:8]}...")
    features = [h for h in header if h != label and h not in drop]
    columns = {}
    bad = np.zeros(len(df), dtype=bool)
    for name in features:
        raw = df.iloc[:, header.index(name)].to_numpy(dtype=object)
        raw[raw == ""] = "nan"
        try:
            v = raw.astype(np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: column '{name}' is not numeric ({exc})") from exc
        bad |= ~np.isfinite(v)
        columns[name] = v
    keep = ~bad
    columns = {k: v[keep] for k, v in columns.items()}
    classes = df.iloc[:, header.index(label)].to_numpy(dtype=object)[keep]
    return features, columns, classes, int(bad.sum())


def doh(data_dir: Path, inverse: bool = False) -> Dataset:
    """CIRA-CIC-DoHBrw-2020 layer 2: benign (normal) vs malicious DoH flows."""
    files = [
        find_file(data_dir, [f"doh/{n}", f"doh/{n}.gz", n, f"{n}.gz"], f"CIRA-CIC-DoHBrw-2020 ({n})")
        for n in ("l2-benign.csv", "l2-malicious.csv")
    ]
    drop = ("SourceIP", "DestinationIP", "SourcePort", "DestinationPort", "TimeStamp")
    parts = [read_numeric_csv(p, "Label", drop) for p in files]
    features = parts[0][0]
    if parts[1][0] != features:
        raise DataError(f"{files[1]}: columns differ from {files[0]}")
    columns = {k: np.concatenate([p[1][k] for p in parts]) for k in features}
    classes = np.concatenate([p[2] for p in parts])
    y = np.concatenate([np.zeros(len(parts[0][2])), np.ones(len(parts[1][2]))]).astype(np.int8)
    schema = FlowSchema.all_numeric("doh", features)
    ds = Dataset("doh", schema, columns, y, classes, [str(p) for p in files])
    return ds.swapped("doh-inv") if inverse else ds


def creditcard(data_dir: Path) -> Dataset:
    """Kaggle/ULB credit-card fraud: V1..V28 and Amount; Class 1 = fraud. Time is dropped."""
    path = find_file(data_dir, ["creditcard/creditcard.csv", "creditcard/creditcard.csv.gz",
                                "creditcard.csv", "creditcard.csv.gz"], "CreditCard (creditcard.csv)")
    features, columns, classes, _ = read_numeric_csv(path, "Class", drop=("Time",))
    y = (classes.astype(float) == 1).astype(np.int8)
    return Dataset("creditcard", FlowSchema.all_numeric("creditcard", features), columns, y,
                   classes, [str(path)])


def covtype(data_dir: Path) -> Dataset:
    """UCI Covertype (covtype.data: 54 attributes + cover type 1-7); types 1-3 are normal."""
    path = find_file(data_dir, ["covtype/covtype.data.gz", "covtype/covtype.data",
                                "covtype.data.gz", "covtype.data"], "CoverType (covtype.data)")
    data = _read_csv(path, header=None).to_numpy()
    if data.ndim != 2 or data.shape[1] != 55 or data.dtype.kind not in "iu":
        raise DataError(f"{path}: expected 55 comma-separated integers per line, got {data.shape}")
    names = [f"a{i}" for i in range(54)]
    columns = {n: data[:, i].astype(np.float64) for i, n in enumerate(names)}
    classes = data[:, 54]
    y = (classes > 3).astype(np.int8)
    return Dataset("covtype", FlowSchema.all_numeric("covtype", names), columns, y,
                   classes.astype(object), [str(path)])


# ----------------------------------------------------------------------------- arrays


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic, dimensions, big-endian payload."""
    with open_binary(path) as fh:
        header = fh.read(4)
        if len(header) != 4 or header[:2] != b"\x00\x00":
            raise DataError(f"{path}: not an IDX file (bad magic)")
        dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(header[2])
        if dtype is None:
            raise DataError(f"{path}: unknown IDX element type 0x{header[2]:02x}")
        ndim = header[3]
        shape = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        payload = fh.read()
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(payload) != expected:
        raise DataError(f"{path}: payload is {len(payload)} bytes, header says {expected}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def mnist(data_dir: Path, normal_digit: int = 0, split: str = "t10k") -> Dataset:
    """MNIST from IDX files; one digit is normal, the other nine anomalous."""
    prefix = {"t10k": "t10k", "train": "train"}[split]
    paths = [
        find_file(data_dir, [f"mnist/{prefix}-{k}-idx{d}-ubyte.gz", f"mnist/{prefix}-{k}-idx{d}-ubyte"],
                  f"MNIST {prefix} {k}")
        for k, d in (("images", 3), ("labels", 1))
    ]
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if len(images) != len(labels):
        raise DataError(f"MNIST: {len(images)} images but {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    names = [f"px{i}" for i in range(X.shape[1])]
    columns = {n: X[:, i] for i, n in enumerate(names)}
    y = (labels != normal_digit).astype(np.int8)
    return Dataset(f"mnist-{normal_digit}", FlowSchema.all_numeric("mnist", names), columns, y,
                   labels.astype(object), [str(p) for p in paths])


def npz(path: Path) -> Dataset:
    """A generic .npz with arrays X (n, d) and y (n,), 1 = anomaly (ADBench/ODDS layout)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"npz file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "X" not in data or "y" not in data:
            raise DataError(f"{path}: needs arrays 'X' and 'y', has {list(data.keys())}")
        X, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).astype(np.int8)
    if X.ndim != 2 or len(X) != len(y):
        raise DataError(f"{path}: X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    names = [f"x{i}" for i in range(X.shape[1])]
    return Dataset(path.stem, FlowSchema.all_numeric(path.stem, names),
                   {n: X[:, i] for i, n in enumerate(names)}, y, y.astype(object), [str(path)])


def csv_dataset(path: Path, label: str, normal: str = "0") -> Dataset:
    """A headed CSV of numeric features with a named label column; `normal` marks normals."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"csv file not found: {path}")
    features, columns, classes, _ = read_numeric_csv(path, label)
    y = np.asarray([str(c).strip() != normal for c in classes], dtype=np.int8)
    return Dataset(path.stem, FlowSchema.all_numeric(path.stem, features), columns, y, classes,
                   [str(path)])


__all__ = ["bank", "covtype", "creditcard", "csv_dataset", "doh", "kddcup99", "mnist", "npz",
           "nsl_kdd", "read_arff", "read_idx"]
