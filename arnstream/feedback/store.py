"""The feedback store: recently scored records and the analyst labels joined to them (SQLite).

    scored_batches  one row per batch serve scored: when, by which model, and per record its
                    id, score, whether it was flagged, and the record as the model saw it
                    (JSON; for windowed schemas the record with its window features, since a
                    window cannot be replayed from a sample), each as one packed column
    labels          record_id -> the latest label, who gave it and when, and a copy of the
                    record, so a labelled record outlives the eviction of its batch
    meta            small key/value facts shared by replicas (when the last retraining ran)

A row per batch, not per record: serve writes every record it scores, and SQLite's per-row
work (a b-tree insert for the row and one for a unique record-id index) cost the writer thread
~4 us of CPU per record, a sixth of serve's CPU; a batch's columns are packed by C loops and
written as one row (~1 us per record: benchmarks/bench_store.py, docs/feedback.md). The price
is on the rare side: a label finds its record by scanning the batches' packed ids (`instr`,
~10 ms in a full store of 500,000 flowsim records), not through an index; `add_labels` finds
many in one walk (1,000 in 0.11 s), as the feedback thread joins each poll of labels.

A record scored twice (re-read after a crash, before the commit) sits in two batches; the newer
one is the record's row (lookups and the `recent_*` walks take the newest), and `count_scored`
counts both until the older batch is evicted.

Eviction (`maintain`): batches older than `max_age_s` go first, then the oldest records beyond
`max_records` (whole batches, and the head of the oldest batch left, rewritten without it);
the scan runs in the feedback thread every `maintain_interval_s`. Labels are never evicted
(they are few, and they are the training signal). A label for a record that is not (or no
longer) stored is an error.

One connection per thread (sqlite3's rule); WAL mode lets serve write scored records while
the feedback thread, a `retrain` command or another replica on the same host reads. A store
written by an older arnstream (a row per record in a `scored` table) is converted on open.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ..errors import ConfigError, RecordError
from .labels import VALUES, Label

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scored_batches (
    batch INTEGER PRIMARY KEY, scored_at REAL NOT NULL, n INTEGER NOT NULL, versions BLOB NOT NULL,
    ids BLOB NOT NULL, scores BLOB NOT NULL, flagged BLOB NOT NULL, ends BLOB NOT NULL, records BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    record_id TEXT PRIMARY KEY, label INTEGER NOT NULL, analyst TEXT NOT NULL, at REAL NOT NULL,
    note TEXT, received_at REAL NOT NULL, record BLOB NOT NULL, score REAL, flagged INTEGER,
    model_version TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Packed text columns (ids, model versions): each value's UTF-8 between separators. UTF-8 never
# holds the byte 0xff, so `instr(ids, SEP + id + SEP)` finds exactly that id, whatever it holds.
SEP = b"\xff"

# A batch row is ~1.5 MB (5,000 flowsim records): large pages keep its overflow chain short and
# the WAL's checkpoints rare (a probe writing 300,000 records: 64 KiB pages cost 0.9 us of CPU
# per record, 16 KiB 1.3, 4 KiB 1.8; the WAL file grows to 1,000 pages, 64 MB, before each
# checkpoint). The page size applies to new files only. The page cache is per connection: serve's writer,
# the feedback thread, a `retrain`.
PAGE_SIZE = 65536
CACHE_KIB = 65536
CONVERTED_BATCH = 5000  # records per batch row when an older store is converted


def _packed(texts: list[str]) -> bytes:
    return SEP + SEP.join(map(str.encode, texts)) + SEP


def _unpacked(blob: bytes) -> list[bytes]:
    return blob[1:-1].split(SEP)


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
class ScoredRecord:
    record_id: str
    scored_at: float
    model_version: str
    score: float
    flagged: int  # 0/1
    record: bytes  # JSON


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


class _Batch:
    """One stored batch, unpacked on demand."""

    __slots__ = ("batch", "scored_at", "ids", "versions", "scores", "flagged", "ends", "_records")

    def __init__(self, batch, scored_at, versions, ids, scores, flagged, ends, records=None):
        self.batch, self.scored_at = batch, scored_at
        self.ids = _unpacked(ids)
        self.versions = _unpacked(versions)  # one entry when every record had the same model
        self.scores = np.frombuffer(scores, np.float64)
        self.flagged = flagged
        self.ends = np.frombuffer(ends, np.int64)
        self._records = records

    def __len__(self) -> int:
        return len(self.ids)

    def version(self, i: int) -> str:
        return self.versions[0 if len(self.versions) == 1 else i].decode()

    def record(self, i: int) -> bytes:  # (its records loaded)
        return self._records[int(self.ends[i - 1]) if i else 0 : int(self.ends[i])]

    def columns_from(self, start: int) -> ScoredColumns:
        """Its records from position `start` on (what size eviction leaves of it)."""
        n = len(self)
        versions = [self.version(i) for i in range(start, n)]
        return ScoredColumns([i.decode() for i in self.ids[start:]], versions, self.scores[start:].tolist(),
                             list(self.flagged[start:]), [self.record(i) for i in range(start, n)])


_BATCH_HEAD = "batch, scored_at, versions, ids, scores, flagged, ends"  # all but the records


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
            self._convert_row_per_record_store()
        except sqlite3.Error as exc:
            raise ConfigError("feedback.store", f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------- scored
    def put_scored(self, rows: Iterable[tuple[str, str, float, bool, bytes]], now: float | None = None) -> None:
        """rows: (record_id, model_version, score, flagged, record JSON), stored as one batch. A
        re-scored id's newest row is the one that counts."""
        columns = [list(c) for c in zip(*rows)]
        if columns:
            ids, versions, scores, flagged, records = columns
            self.put_scored_columns(ScoredColumns(ids, versions, scores, [int(f) for f in flagged], records), now)

    def put_scored_columns(self, scored: ScoredColumns, now: float | None = None) -> None:
        """The same rows as columns, what serve hands over: packed by C loops into one row, so
        the writer thread holds the GIL only briefly beside serve. An id repeated within the
        batch keeps its last record."""
        now = time.time() if now is None else now
        if not len(scored):
            return
        last = dict(zip(scored.ids, range(len(scored))))
        if len(last) < len(scored):
            keep = sorted(last.values())
            scored = ScoredColumns(*([column[i] for i in keep] for column in (
                scored.ids, scored.model_versions, scored.scores, scored.flagged, scored.records)))
        with self._transaction():
            self._insert(None, now, scored)

    def _insert(self, batch: int | None, now: float, scored: ScoredColumns) -> None:
        versions = scored.model_versions
        if versions.count(versions[0]) == len(versions):
            versions = versions[:1]
        self.db.execute("INSERT INTO scored_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            batch, now, len(scored), _packed(versions), _packed(scored.ids),
            np.asarray(scored.scores, np.float64).tobytes(), np.asarray(scored.flagged, np.uint8).tobytes(),
            np.cumsum(np.fromiter(map(len, scored.records), np.int64, len(scored))).tobytes(),
            b"".join(scored.records)))

    def scored(self, record_id: str) -> ScoredRecord | None:
        """The record's newest stored row, or None."""
        needle = SEP + record_id.encode() + SEP
        row = self.db.execute(f"SELECT {_BATCH_HEAD}, records FROM scored_batches WHERE instr(ids, ?) > 0 "
                              "ORDER BY batch DESC LIMIT 1", (needle,)).fetchone()
        if row is None:
            return None
        batch = _Batch(*row)
        return self._stored(batch, batch.ids.index(needle[1:-1]), record_id)

    def _scored_many(self, record_ids: set[str]) -> dict[str, ScoredRecord]:
        """`scored` for many ids at once: one walk over the batches, newest first."""
        wanted = {rid.encode(): rid for rid in record_ids}
        found: dict[str, ScoredRecord] = {}
        for batch in self._batches_newest_first():
            if not wanted:
                break
            hits = wanted.keys() & set(batch.ids)
            if not hits:
                continue
            position = {rid: i for i, rid in enumerate(batch.ids) if rid in hits}
            for packed_id, i in position.items():
                rid = wanted.pop(packed_id)
                found[rid] = self._stored(batch, i, rid)
        return found

    def _stored(self, batch: _Batch, i: int, record_id: str) -> ScoredRecord:
        return ScoredRecord(record_id, batch.scored_at, batch.version(i), float(batch.scores[i]),
                            int(batch.flagged[i]), self._record_of(batch, i))

    def maintain(self, now: float | None = None) -> Evicted:
        now = time.time() if now is None else now
        with self._transaction():
            cutoff = now - self.max_age_s
            by_age = self.db.execute("SELECT COALESCE(SUM(n), 0) FROM scored_batches WHERE scored_at < ?",
                                     (cutoff,)).fetchone()[0]
            self.db.execute("DELETE FROM scored_batches WHERE scored_at < ?", (cutoff,))
            over = self.count_scored() - self.max_records
            by_size = max(over, 0)
            for batch, n in self.db.execute("SELECT batch, n FROM scored_batches ORDER BY batch").fetchall():
                if over <= 0:
                    break
                if n <= over:
                    self.db.execute("DELETE FROM scored_batches WHERE batch = ?", (batch,))
                else:  # the head of the oldest batch left: rewritten without it, in its place
                    row = self.db.execute(f"SELECT {_BATCH_HEAD}, records FROM scored_batches WHERE batch = ?",
                                          (batch,)).fetchone()
                    rest = _Batch(*row).columns_from(over)
                    self.db.execute("DELETE FROM scored_batches WHERE batch = ?", (batch,))
                    self._insert(batch, row[1], rest)
                over -= n
        return Evicted(by_age, by_size)

    def count_scored(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(n), 0) FROM scored_batches").fetchone()[0]

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
        labelled, normal = self._labelled_ids(), self._labelled_ids(VALUES["normal"])
        span, alerts, scored, triaged = (0, 0), 0, 0, 0
        for batch, i, rid in self._newest_first():
            scored += 1
            if not batch.flagged[i]:
                continue
            if rid in normal:
                triaged += 1
            elif rid not in labelled:
                alerts += 1
                span = (scored, triaged)
                if alerts >= limit:
                    break
        return span

    def _recent_unlabelled(self, flagged: bool, limit: int) -> list[tuple[str, dict]]:
        labelled, out = self._labelled_ids(), []
        if limit <= 0:
            return out
        for batch, i, rid in self._newest_first():
            if batch.flagged[i] == flagged and rid not in labelled:
                out.append((rid.decode(), orjson.loads(self._record_of(batch, i))))
                if len(out) >= limit:
                    break
        return out

    def _newest_first(self) -> Iterator[tuple[_Batch, int, bytes]]:
        """(batch, position, packed id) of every stored record, newest first; a record scored
        twice only where it was scored last."""
        seen: set[bytes] = set()
        for batch in self._batches_newest_first():
            for i in range(len(batch) - 1, -1, -1):
                rid = batch.ids[i]
                if rid not in seen:
                    seen.add(rid)
                    yield batch, i, rid

    def _batches_newest_first(self) -> Iterator[_Batch]:
        """One short query per batch: no statement stays open between them, so a walk left
        unfinished holds no read transaction."""
        for (number,) in self.db.execute("SELECT batch FROM scored_batches ORDER BY batch DESC").fetchall():
            row = self.db.execute(f"SELECT {_BATCH_HEAD} FROM scored_batches WHERE batch = ?", (number,)).fetchone()
            if row is not None:  # (None: evicted meanwhile by another connection)
                yield _Batch(*row)

    def _record_of(self, batch: _Batch, i: int) -> bytes:
        if batch._records is None:
            row = self.db.execute("SELECT records FROM scored_batches WHERE batch = ?", (batch.batch,)).fetchone()
            batch._records = b"" if row is None else row[0]
        return batch.record(i)

    def _labelled_ids(self, value: int | None = None) -> set[bytes]:
        rows = (self.db.execute("SELECT record_id FROM labels") if value is None else
                self.db.execute("SELECT record_id FROM labels WHERE label = ?", (value,)))
        return {rid.encode() for (rid,) in rows.fetchall()}

    # ------------------------------------------------------------- labels
    def add_label(self, label: Label, now: float | None = None) -> str:
        """Join a label to its record. Returns "new", "replaced", "duplicate" or "outdated".

        The same label again counts once ("duplicate"); a different label with a later (or
        equal) time replaces the earlier one; one with an earlier time is "outdated" and ignored.
        Raises RecordError for a record id that was never scored here or was evicted.
        """
        with self._transaction():
            return self._add_label(label, time.time() if now is None else now, self.scored)

    def add_labels(self, labels: list[Label], now: float | None = None) -> list[str | RecordError]:
        """`add_label` for each label in order, in one transaction: what each returned, or the
        RecordError it raised. Their records are found in one walk over the stored batches, not
        one scan each (a bulk import of thousands of labels)."""
        now = time.time() if now is None else now
        with self._transaction():
            found = self._scored_many({label.record_id for label in labels})
            outcomes: list[str | RecordError] = []
            for label in labels:
                try:
                    outcomes.append(self._add_label(label, now, found.get))
                except RecordError as exc:
                    outcomes.append(exc)
            return outcomes

    def _add_label(self, label: Label, now: float, scored: Callable[[str], ScoredRecord | None]) -> str:
        value = VALUES[label.label]
        old = self.db.execute("SELECT label, at FROM labels WHERE record_id = ?", (label.record_id,)).fetchone()
        if old is not None:
            if old[0] == value:
                return "duplicate"
            if label.at < old[1]:
                return "outdated"
            self.db.execute("UPDATE labels SET label = ?, analyst = ?, at = ?, note = ?, received_at = ? "
                            "WHERE record_id = ?", (value, label.analyst, label.at, label.note, now, label.record_id))
            return "replaced"
        stored = scored(label.record_id)
        if stored is None:
            raise RecordError("record_id", f"unknown record id {label.record_id!r}: never scored here, "
                              "or evicted from the feedback store")
        self.db.execute("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (label.record_id, value, label.analyst, label.at, label.note, now, stored.record,
                         stored.score, stored.flagged, stored.model_version))
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
    def _convert_row_per_record_store(self) -> None:
        """A store of an older arnstream kept a row per record in `scored`: its rows become
        batches (consecutive rows written at one time, as serve wrote a batch), in order."""
        if not self._has_row_per_record_table():
            return
        with self._transaction():
            if not self._has_row_per_record_table():  # another process converted it meanwhile
                return
            rows = self.db.execute("SELECT record_id, scored_at, model_version, score, flagged, record FROM scored "
                                   "ORDER BY rowid")
            for at, run in itertools.groupby(rows, key=operator.itemgetter(1)):
                run = list(run)
                for start in range(0, len(run), CONVERTED_BATCH):
                    ids, _, versions, scores, flagged, records = zip(*run[start : start + CONVERTED_BATCH])
                    self._insert(None, at, ScoredColumns(list(ids), list(versions), list(scores), list(flagged),
                                                         list(records)))
            self.db.execute("DROP TABLE scored")

    def _has_row_per_record_table(self) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scored'"
        return self.db.execute(query).fetchone() is not None

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
