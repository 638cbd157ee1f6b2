"""Records (dicts) <-> columns (one numpy array per field).

Serving receives a batch of dicts, datasets arrive as files; both become the same columnar
batch so that one vectorised encoder handles them. Missing values are kept as None and
reported by the encoder, which knows which fields it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter

import numpy as np

Columns = dict[str, np.ndarray]


def records_to_columns(records: Sequence[Mapping], fields: Iterable[str]) -> Columns:
    """Gather the named fields of a batch of records into object arrays (None where absent)."""
    fields = list(fields)
    if not fields:
        return {}
    # one C-level pass when every record has every field (the usual batch); else row by row
    get_all = itemgetter(*fields)
    try:
        rows = list(map(get_all, records)) if len(fields) > 1 else [(v,) for v in map(get_all, records)]
    except (KeyError, TypeError, IndexError):
        rows = [_fields_of(r, fields) for r in records]
    out: Columns = {}
    columns = zip(*rows) if rows else ([] for _ in fields)
    for name, values in zip(fields, columns):
        col = np.empty(len(rows), dtype=object)
        col[:] = values
        out[name] = col
    return out


def _fields_of(record, fields: list[str]) -> tuple:
    if isinstance(record, Mapping):
        return tuple(record.get(f) for f in fields)
    return (None,) * len(fields)


def columns_to_records(columns: Mapping[str, np.ndarray]) -> list[dict]:
    names = list(columns)
    if not names:
        return []
    n = len(columns[names[0]])
    return [{name: _plain(columns[name][i]) for name in names} for i in range(n)]


def take(columns: Mapping[str, np.ndarray], index: np.ndarray) -> Columns:
    """Rows `index` of every column."""
    return {name: col[index] for name, col in columns.items()}


def n_rows(columns: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _plain(value):
    # numpy scalars are not JSON-serialisable; records handed to users should be plain.
    return value.item() if isinstance(value, np.generic) else value
