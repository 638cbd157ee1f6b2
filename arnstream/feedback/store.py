"""The feedback store: recently scored records and the analyst labels joined to them (SQLite).

    scored   record_id -> when it was scored, by which model, its score, whether it was
             flagged, and the record as the model saw it (JSON; for windowed schemas the
             record with its window features, since a window cannot be replayed from a sample)
    labels   record_id -> the latest label, who gave it and when, and a copy of the record,
             so a labelled record outlives the eviction of `scored`
    meta     small key/value facts shared by replicas (when the last retraining ran)

Eviction (`maintain`): scored records older than `max_age_s` go first, then the oldest ones
beyond `max_records` (rowid order is scoring order: a re-scored record is re-inserted; no
time index, since one more b-tree per row cost serve 20% of its store writes, and the scan
runs in the feedback thread every `maintain_interval_s`); labels are never evicted (they
are few, and they are the training signal). A label for a record that is not (or no
longer) in `scored` is an error.

One connection per thread (sqlite3's rule); WAL mode lets serve write scored records while
the feedback thread, a `retrain` command or another replica on the same host reads.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import ConfigError, RecordError
from .labels import VALUES, Label

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scored (
    record_id TEXT PRIMARY KEY, scored_at REAL NOT NULL, model_version TEXT NOT NULL,
    score REAL NOT NULL, flagged INTEGER NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    record_id TEXT PRIMARY KEY, label INTEGER NOT NULL, analyst TEXT NOT NULL, at REAL NOT NULL,
    note TEXT, received_at REAL NOT NULL, record BLOB NOT NULL, score REAL, flagged INTEGER,
    model_version TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# Many rows per INSERT: sqlite3 gives up and takes back the GIL around each statement, and a
# writer thread that needs the GIL once per row crawls beside a busy main thread (serve's):
# 5,000 rows took 151 ms one by one there, 81 ms a thousand at a time (26 ms with no neighbour).
ROWS_PER_INSERT = 1000  # fewer where SQLite allows fewer than 6,000 parameters (before 3.32: 999)


@functools.lru_cache(maxsize=8)
def _insert_scored(n_rows: int) -> str:
    return "INSERT OR REPLACE INTO scored VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * n_rows)


_COLUMNS = 6  # of the scored table

# Serve writes every scored record (270 bytes of JSON for a flowsim flow, 1 kB for kdd99) and
# the store holds up to max_records of them: the page size and the page cache decide what a
# row costs once the file is hundreds of MB (benchmarks/bench_store.py, against SQLite's
# defaults of 4 KiB pages and a 2 MB cache: 0.62 of the CPU per kdd99 row, 0.90 per flowsim
# row). The page size applies to new files only.
PAGE_SIZE = 16384
CACHE_KIB = 65536  # per connection: serve's writer, the feedback thread, a `retrain`


@dataclass(frozen=True)
class ScoredColumns:
    """Scored records as equal-length columns (serve builds them per batch)."""

    ids: list[str]
    model_versions: list[str]
    scores: list[float]
    flagged: list[int]  # 0/1
    records: list[bytes]  # the record JSON as the model saw it

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Evicted:
    by_age: int
    by_size: int


@dataclass(frozen=True)
class LabelledRecord:
    record_id: str
    y: int  # 1 = anomaly
    record: dict
    received_at: float


class FeedbackStore:
    def __init__(self, path: str | Path, max_age_s: float = 7 * 86400.0, max_records: int = 500_000,
                 page_size: int = PAGE_SIZE, cache_kib: int = CACHE_KIB):
        self.path = Path(path)
        self.max_age_s = max_age_s
        self.max_records = max_records
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.execute(f"PRAGMA page_size={int(page_size)}")  # a new file only: before WAL writes the header
            self.db.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
            self.db.executescript(_SCHEMA)
            max_variables = self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._rows_per_insert = min(ROWS_PER_INSERT, max_variables // _COLUMNS)
        except sqlite3.Error as exc:
            raise ConfigError("feedback.store", f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------- scored
    def put_scored(self, rows: Iterable[tuple[str, str, float, bool, bytes]], now: float | None = None) -> None:
        """rows: (record_id, model_version, score, flagged, record JSON). A re-scored id is replaced."""
        columns = [list(c) for c in zip(*rows)]
        if columns:
            ids, versions, scores, flagged, records = columns
            self.put_scored_columns(ScoredColumns(ids, versions, scores, [int(f) for f in flagged], records), now)

    def put_scored_columns(self, scored: ScoredColumns, now: float | None = None) -> None:
        """The same rows as columns: what serve hands over. The rows' parameters are interleaved
        by list slicing (C loops), so the writer thread holds the GIL only briefly beside serve."""
        now = time.time() if now is None else now
        n = len(scored.ids)
        params: list = [None] * (_COLUMNS * n)  # row after row, as the INSERT lists them
        params[0::_COLUMNS] = scored.ids
        params[1::_COLUMNS] = [now] * n
        params[2::_COLUMNS] = scored.model_versions
        params[3::_COLUMNS] = scored.scores
        params[4::_COLUMNS] = scored.flagged
        params[5::_COLUMNS] = scored.records
        with self._transaction():
            for start in range(0, n, self._rows_per_insert):
                stop = min(n, start + self._rows_per_insert)
                self.db.execute(_insert_scored(stop - start), params[_COLUMNS * start : _COLUMNS * stop])

    def maintain(self, now: float | None = None) -> Evicted:
        now = time.time() if now is None else now
        with self._transaction():
            by_age = self.db.execute("DELETE FROM scored WHERE scored_at < ?", (now - self.max_age_s,)).rowcount
            over = self.count_scored() - self.max_records
            by_size = 0
            if over > 0:
                by_size = self.db.execute(
                    "DELETE FROM scored WHERE rowid IN (SELECT rowid FROM scored ORDER BY rowid LIMIT ?)",
                    (over,)).rowcount
        return Evicted(by_age, by_size)

    def count_scored(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM scored").fetchone()[0]

    def recent_unflagged(self, limit: int) -> list[tuple[str, dict]]:
        """(record id, record) of the newest records the serving model did not flag and no
        analyst labelled, newest first."""
        return self._recent_unlabelled(flagged=False, limit=limit)

    def recent_flagged(self, limit: int) -> list[tuple[str, dict]]:
        """(record id, record) of the newest records the serving model flagged and no analyst
        labelled, newest first."""
        return self._recent_unlabelled(flagged=True, limit=limit)

    def alert_span(self, limit: int) -> tuple[int, int]:
        """The span `recent_flagged(limit)` comes from: how many records were scored from the
        oldest of those alerts on, and how many records in it the serving model flagged and an
        analyst labelled normal (false alarms triaged away, which recent_flagged leaves out)."""
        oldest = self.db.execute(
            "SELECT MIN(rowid) FROM (SELECT rowid FROM scored WHERE flagged = 1 AND record_id NOT IN "
            "(SELECT record_id FROM labels) ORDER BY rowid DESC LIMIT ?)", (limit,)).fetchone()[0]
        if oldest is None:
            return 0, 0
        scored = self.db.execute("SELECT COUNT(*) FROM scored WHERE rowid >= ?", (oldest,)).fetchone()[0]
        triaged = self.db.execute(
            "SELECT COUNT(*) FROM scored JOIN labels USING (record_id) WHERE scored.rowid >= ? AND scored.flagged = 1 "
            "AND labels.label = ?", (oldest, VALUES["normal"])).fetchone()[0]
        return scored, triaged

    def _recent_unlabelled(self, flagged: bool, limit: int) -> list[tuple[str, dict]]:
        rows = self.db.execute(
            "SELECT record_id, record FROM scored WHERE flagged = ? AND record_id NOT IN "
            "(SELECT record_id FROM labels) ORDER BY rowid DESC LIMIT ?", (int(flagged), limit)).fetchall()
        return [(rid, orjson.loads(rec)) for rid, rec in rows]

    # ------------------------------------------------------------- labels
    def add_label(self, label: Label, now: float | None = None) -> str:
        """Join a label to its record. Returns "new", "replaced", "duplicate" or "outdated".

        The same label again counts once ("duplicate"); a different label with a later (or
        equal) time replaces the earlier one; one with an earlier time is "outdated" and ignored.
        Raises RecordError for a record id that was never scored here or was evicted.
        """
        now = time.time() if now is None else now
        value = VALUES[label.label]
        with self._transaction():
            old = self.db.execute("SELECT label, at FROM labels WHERE record_id = ?",
                                  (label.record_id,)).fetchone()
            if old is not None:
                if old[0] == value:
                    return "duplicate"
                if label.at < old[1]:
                    return "outdated"
                self.db.execute("UPDATE labels SET label = ?, analyst = ?, at = ?, note = ?, received_at = ? "
                                "WHERE record_id = ?", (value, label.analyst, label.at, label.note, now,
                                                        label.record_id))
                return "replaced"
            row = self.db.execute("SELECT record, score, flagged, model_version FROM scored WHERE record_id = ?",
                                  (label.record_id,)).fetchone()
            if row is None:
                raise RecordError("record_id", f"unknown record id {label.record_id!r}: never scored here, "
                                  "or evicted from the feedback store")
            self.db.execute("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (label.record_id, value, label.analyst, label.at, label.note, now, *row))
            return "new"

    def labelled(self) -> list[LabelledRecord]:
        rows = self.db.execute("SELECT record_id, label, record, received_at FROM labels ORDER BY record_id")
        return [LabelledRecord(rid, y, orjson.loads(rec), at) for rid, y, rec, at in rows.fetchall()]

    def label_counts(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT label, COUNT(*) FROM labels GROUP BY label").fetchall())
        return {name: counts.get(value, 0) for name, value in VALUES.items()}

    def labels_since(self, t: float) -> int:
        """Labels that arrived or changed after time t (what the retrain policy counts)."""
        return self.db.execute("SELECT COUNT(*) FROM labels WHERE received_at > ?", (t,)).fetchone()[0]

    # --------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so a read-then-write
        (add_label) never races another writer into a deadlock."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
