"""RecordEncoder: flow records -> float32 matrix, the same object in training and serving.

Fitted on training (normal) data only: min-max per numeric field (of sign(v) * log1p(|v|) for
fields the schema marks `scale: log`; min_/max_ are kept in that space), one-hot per categorical
field with an explicit unknown bucket (the last column of the group), so a category never
seen in training is encoded, not an error. Validation is vectorised; a bad row never sinks
its batch: `transform_batch` returns the good rows' matrix and the rejected rows with reasons.
State is plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from ..errors import RecordError, SchemaError
from ..schema import FlowSchema
from .columns import Columns, records_to_columns

UNKNOWN = "<unknown>"

# A value this many training ranges from what training saw is refused as absurd (a dead letter,
# not a score): the models' float32 arithmetic overflows on such inputs. Measured with a trained
# ARN on simulated flows: src_bytes of 1e20 (~1e14 ranges) still scored, 1e25 scored NaN, which
# passes as "not an anomaly", and 1e100 made the whole batch unscorable.
MAX_SCALED = 1e12


@dataclass(frozen=True)
class Rejected:
    row: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        return str(RecordError(self.field, self.reason, self.row))


@dataclass
class EncodedBatch:
    X: np.ndarray  # float32, one row per accepted input row
    rows: np.ndarray  # positions of the accepted rows in the input batch
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class CategoricalGroup:
    field: str
    start: int
    stop: int  # exclusive; the unknown bucket is column stop - 1


class RecordEncoder:
    def __init__(self, schema: FlowSchema, clip: float | None = None):
        self.schema = schema
        self.clip = clip  # scaled numerics are clipped to [-clip, 1 + clip] when set
        self._log_fields = frozenset(f.name for f in schema.feature_fields if f.scale == "log")

    # ----------------------------------------------------------------- fitting
    def fit(self, data: Columns | Sequence[Mapping]) -> "RecordEncoder":
        columns, bad = self._as_columns(data)
        n = _length(columns)
        if n == 0:
            raise RecordError(None, "cannot fit an encoder on zero records")
        numeric, bad_num = self._parse_numeric(columns, n)
        cats, bad_cat = self._parse_categorical(columns, n)
        for problems in (bad_num, bad_cat):
            for row, problem in problems.items():
                bad.setdefault(row, problem)
        good = np.ones(n, dtype=bool)
        good[list(bad)] = False
        if not good.any():
            row, (fname, reason) = next(iter(sorted(bad.items())))
            raise RecordError(fname, f"no valid record to fit on; first problem: {reason}", row)
        self.n_rejected_fit_ = int((~good).sum())
        self.min_ = {}
        self.max_ = {}
        for name, values in numeric.items():
            v = self._to_scale_space(name, values[good])
            self.min_[name] = float(v.min())
            self.max_[name] = float(v.max())
        self.categories_ = {}
        for name, values in cats.items():
            self.categories_[name] = sorted({str(v) for v in values[good]})
        self._build_layout()
        return self

    def _build_layout(self) -> None:
        names: list[str] = []
        groups: list[CategoricalGroup] = []
        numeric_index: list[int] = []
        for f in self.schema.feature_fields:
            if f.kind == "numeric":
                numeric_index.append(len(names))
                names.append(f.name)
            else:
                start = len(names)
                names.extend(f"{f.name}={c}" for c in self.categories_[f.name])
                names.append(f"{f.name}={UNKNOWN}")
                groups.append(CategoricalGroup(f.name, start, len(names)))
        self.feature_names_ = names
        self.categorical_groups_ = groups
        self.numeric_index_ = np.asarray(numeric_index, dtype=np.int64)
        self.n_features_out_ = len(names)
        self._lookup = {
            name: {c: i for i, c in enumerate(cats)} for name, cats in self.categories_.items()
        }

    # --------------------------------------------------------------- transform
    def transform_batch(self, data: Columns | Sequence[Mapping]) -> EncodedBatch:
        """Encode what is valid, report the rest: one bad row never sinks a batch."""
        self._check_fitted()
        columns, not_records = self._as_columns(data)
        n = _length(columns)
        numeric, bad_num = self._parse_numeric(columns, n)
        scaled, bad_far = self._scale_numeric(numeric)
        cats, bad_cat = self._parse_categorical(columns, n)
        bad = dict(not_records)
        for problems in (bad_num, bad_far, bad_cat):
            for row, problem in problems.items():
                bad.setdefault(row, problem)
        good = np.ones(n, dtype=bool)
        if bad:
            good[list(bad)] = False
        rows = np.flatnonzero(good)
        X = np.zeros((len(rows), self.n_features_out_), dtype=np.float32)
        for name, col in zip(self.schema.numeric, self.numeric_index_):
            column = scaled[name][rows]
            if self.clip is not None:
                np.clip(column, -self.clip, 1.0 + self.clip, out=column)
            X[:, col] = column
        for group in self.categorical_groups_:
            lookup = self._lookup[group.field]
            unknown = group.stop - group.start - 1
            values = cats[group.field][rows].tolist()  # strings by now (_parse_categorical)
            idx = np.fromiter(map(lookup.get, values, repeat(unknown)), dtype=np.int64, count=len(rows))
            X[np.arange(len(rows)), group.start + idx] = 1.0
        rejected = [Rejected(row, f, reason) for row, (f, reason) in sorted(bad.items())]
        return EncodedBatch(X=X, rows=rows, rejected=rejected)

    def transform(self, data: Columns | Sequence[Mapping]) -> np.ndarray:
        """Encode all rows or raise RecordError for the first bad one."""
        batch = self.transform_batch(data)
        if batch.rejected:
            first = batch.rejected[0]
            raise RecordError(first.field, first.reason, first.row)
        return batch.X

    def inverse_transform(self, X: np.ndarray) -> list[dict]:
        """Matrix -> records: numerics unscaled, each one-hot group back to its category."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        for name, col in zip(self.schema.numeric, self.numeric_index_):
            lo, hi = self.min_[name], self.max_[name]
            v = X[:, col] * (hi - lo if hi > lo else 1.0) + lo
            out[name] = np.sign(v) * np.expm1(np.abs(v)) if name in self._log_fields else v
        for group in self.categorical_groups_:
            labels = np.asarray(self.categories_[group.field] + [UNKNOWN], dtype=object)
            out[group.field] = labels[X[:, group.start : group.stop].argmax(axis=1)]
        order = [f.name for f in self.schema.feature_fields]
        return [{name: _plain(out[name][i]) for name in order} for i in range(len(X))]

    def _to_scale_space(self, name: str, v: np.ndarray) -> np.ndarray:
        """Values as min-max sees them: sign(v) * log1p(|v|) for log-scaled fields (monotone,
        defined for every finite value), else unchanged."""
        return np.sign(v) * np.log1p(np.abs(v)) if name in self._log_fields else v

    # ------------------------------------------------------------- validation
    def _parse_numeric(self, columns: Columns, n: int):
        values: dict[str, np.ndarray] = {}
        bad: dict[int, tuple[str, str]] = {}
        for f in self.schema.feature_fields:
            if f.kind != "numeric":
                continue
            col = columns[f.name]
            try:
                v = np.asarray(col, dtype=np.float64)
                if v.shape != (n,):
                    raise ValueError
            except (TypeError, ValueError):
                v = np.full(n, np.nan)
                for i, raw in enumerate(col):
                    parsed, reason = _to_float(raw)
                    if reason is not None:
                        bad.setdefault(i, (f.name, reason))
                    else:
                        v[i] = parsed
            nonfinite = ~np.isfinite(v)
            for i in np.flatnonzero(nonfinite):
                bad.setdefault(int(i), (f.name, _nonfinite_reason(col[i], v[i])))
            if f.min is not None:
                for i in np.flatnonzero(v < f.min):
                    bad.setdefault(int(i), (f.name, f"value {float(v[i]):g} is below the minimum {f.min:g}"))
            if f.max is not None:
                for i in np.flatnonzero(v > f.max):
                    bad.setdefault(int(i), (f.name, f"value {float(v[i]):g} is above the maximum {f.max:g}"))
            values[f.name] = v
        return values, bad

    def _scale_numeric(self, numeric: dict[str, np.ndarray]):
        """Each numeric column min-max scaled (every row; NaN where it did not parse), and the
        rows with a value more than MAX_SCALED training ranges away."""
        scaled: dict[str, np.ndarray] = {}
        bad: dict[int, tuple[str, str]] = {}
        for name in self.schema.numeric:
            lo, hi = self.min_[name], self.max_[name]
            with np.errstate(over="ignore", invalid="ignore"):  # 1e308 / a small range: inf, refused below
                column = (self._to_scale_space(name, numeric[name]) - lo) / (hi - lo if hi > lo else 1.0)
            for i in np.flatnonzero(np.abs(column) > MAX_SCALED):
                bad.setdefault(int(i), (name, f"value {float(numeric[name][i]):g} is out of range: "
                                              f"{abs(float(column[i])):.1e} times the training data's range "
                                              f"(at most {MAX_SCALED:g} is scored)"))
            scaled[name] = column
        return scaled, bad

    def _parse_categorical(self, columns: Columns, n: int):
        values: dict[str, np.ndarray] = {}
        bad: dict[int, tuple[str, str]] = {}
        for name in self.schema.categorical:
            col = np.asarray(columns[name], dtype=object)
            # categories are nearly always strings: inspect only the rest
            others = [i for i, v in enumerate(col.tolist()) if type(v) is not str]
            if others:
                col = col.copy()  # (the caller's column stays as given)
            for i in others:
                v = col[i]
                if v is None:
                    bad.setdefault(i, (name, "missing field"))
                elif isinstance(v, (dict, list, tuple, set)):
                    bad.setdefault(i, (name, f"expected a category, got a {type(v).__name__}"))
                else:
                    col[i] = str(v)  # a number as category: compared as text, as fit() keeps it
            values[name] = col
        return values, bad

    def _as_columns(self, data) -> tuple[Columns, dict[int, tuple[str | None, str]]]:
        """Columns of the feature fields, and the rows that are not records at all."""
        names = [f.name for f in self.schema.feature_fields]
        if isinstance(data, Mapping):
            missing = [n for n in names if n not in data]
            if missing:
                raise SchemaError(f"columns missing for schema '{self.schema.name}': {missing}")
            return {n: data[n] for n in names}, {}
        not_records = {}
        if set(map(type, data)) - {dict}:  # JSON objects decode to dicts: one C-level pass over the usual batch
            not_records = {
                i: (None, f"record is not an object (got {type(r).__name__})")
                for i, r in enumerate(data) if not isinstance(r, Mapping)  # (an ABC check: ~0.5 us a row)
            }
        return records_to_columns(data, names), not_records

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise SchemaError("RecordEncoder is not fitted: call fit() on training data first")

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "schema": self.schema.to_dict(),
            "clip": self.clip,
            "min": self.min_,
            "max": self.max_,
            "categories": self.categories_,
        }

    @classmethod
    def from_dict(cls, state: dict) -> "RecordEncoder":
        try:
            enc = cls(FlowSchema.from_dict(state["schema"], source="encoder state"), state["clip"])
            enc.min_ = {k: float(v) for k, v in state["min"].items()}
            enc.max_ = {k: float(v) for k, v in state["max"].items()}
            enc.categories_ = {k: [str(c) for c in v] for k, v in state["categories"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(f"encoder state is incomplete or malformed: {exc!r}") from exc
        expected_numeric = set(enc.schema.numeric)
        expected_cats = set(enc.schema.categorical)
        if set(enc.min_) != expected_numeric or set(enc.categories_) != expected_cats:
            raise SchemaError("encoder state does not match its schema's fields")
        enc.n_rejected_fit_ = 0
        enc._build_layout()
        return enc


def _length(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _to_float(raw) -> tuple[float, str | None]:
    if raw is None:
        return math.nan, "missing field"
    if isinstance(raw, bool):
        return float(raw), None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw), None
    if isinstance(raw, (str, bytes)):
        try:
            return float(raw), None
        except ValueError:
            return math.nan, f"not a number: {raw!r:.40}"
    return math.nan, f"expected a number, got a {type(raw).__name__}"


def _nonfinite_reason(raw, value: float) -> str:
    if raw is None:
        return "missing field"
    return "value is NaN" if math.isnan(value) else "value is infinite"


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
