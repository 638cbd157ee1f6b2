"""Analyst labels: the `flows-labels` message format, its validation, and CSV input.

A label is `{"record_id": str, "label": "anomaly" | "normal", "analyst": str, "at": float,
"note": str?}`; `at` is seconds since the epoch. Parsing is strict: a label that cannot be
trusted is rejected with a reason (and goes to the dead-letter topic), never guessed at.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import RecordError

VALUES = {"anomaly": 1, "normal": 0}
MAX_NOTE = 2000


@dataclass(frozen=True)
class Label:
    record_id: str
    label: str  # "anomaly" | "normal"
    analyst: str
    at: float
    note: str | None = None

    @property
    def is_anomaly(self) -> bool:
        return self.label == "anomaly"

    def to_json(self) -> bytes:
        doc = {"record_id": self.record_id, "label": self.label, "analyst": self.analyst, "at": self.at}
        if self.note:
            doc["note"] = self.note
        return orjson.dumps(doc)


def make_label(record_id: str, label: str, analyst: str, at: float | None = None,
               note: str | None = None) -> Label:
    """A validated label (raises RecordError naming the field)."""
    return _checked({"record_id": record_id, "label": label, "analyst": analyst,
                     "at": time.time() if at is None else at, "note": note})


def parse_label(value: bytes | None) -> Label:
    if not value:
        raise RecordError(None, "empty message")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError(None, f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RecordError(None, f"a label must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"record_id", "label", "analyst", "at", "note"})
    if unknown:
        raise RecordError(unknown[0], "unknown field in a label")
    return _checked(doc)


def _checked(doc: dict) -> Label:
    rid = doc.get("record_id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid.strip():
        raise RecordError("record_id", "missing or empty")
    label = doc.get("label")
    if not isinstance(label, str) or label not in VALUES:  # (a list or an object is no dict key)
        raise RecordError("label", f"expected 'anomaly' or 'normal', got {label!r:.60}")
    analyst = doc.get("analyst")
    if not isinstance(analyst, str) or not analyst.strip():
        raise RecordError("analyst", "missing or empty")
    at = doc.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
        raise RecordError("at", f"expected seconds since the epoch, got {at!r:.60}")
    note = doc.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise RecordError("note", f"expected text of at most {MAX_NOTE} characters")
    return Label(rid.strip(), label, analyst.strip(), float(at), note or None)


def read_label_csv(path: str | Path, analyst: str) -> list[Label]:
    """Labels from a CSV with a header: record_id,label[,analyst][,at][,note].

    A missing analyst or time takes the caller's; a bad row is an error naming its line, and
    nothing is sent (a half-sent file would be hard to finish by hand).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RecordError(None, f"{path}: {exc.strerror or exc}") from exc
    reader = csv.DictReader(text.splitlines())
    missing = {"record_id", "label"} - set(reader.fieldnames or [])
    if missing:
        raise RecordError(sorted(missing)[0], f"{path}: the header needs record_id and label columns")
    now = time.time()
    labels = []
    for line, row in enumerate(reader, start=2):
        at = row.get("at") or None
        try:
            labels.append(_checked({"record_id": row.get("record_id"), "label": (row.get("label") or "").strip(),
                                    "analyst": row.get("analyst") or analyst,
                                    "at": float(at) if at is not None else now, "note": row.get("note") or None}))
        except (RecordError, ValueError) as exc:
            field = getattr(exc, "field", "at")
            raise RecordError(field, f"{path} line {line}: {getattr(exc, 'reason', exc)}") from exc
    return labels
