"""Records (dicts) <-> columns (one numpy array per field).

Serving receives a batch of dicts, datasets arrive as files; both become the same columnar
batch so that one vectorised encoder handles them. Missing values are kept as None and
reported by the encoder, which knows which fields it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Columns = dict[str, np.ndarray]


def records_to_columns(records: Sequence[Mapping], fields: Iterable[str]) -> Columns:
    """Gather the named fields of a batch of records into object arrays (None where absent)."""
    out: Columns = {}
    for name in fields:
        col = np.empty(len(records), dtype=object)
        col[:] = [r.get(name) if isinstance(r, Mapping) else None for r in records]
        out[name] = col
    return out


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
