"""Scoring a batch of Kafka messages: a plain function, tested without a broker.

decode (msgspec straight into typed columns; orjson for what that refuses) -> validate +
encode (the training encoder) -> p(anomaly | x) -> output records for flows-scores /
flows-alerts (msgspec), and dead letters for what could not be scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, methodcaller
from typing import NamedTuple

import msgspec
import numpy as np
import orjson

from ..config import MAX_RECORD_BYTES
from ..features import RecordEncoder
from ..features.encoder import EncodedBatch
from ..features.pipeline import FeaturePipeline
from ..feedback.store import ScoredColumns
from .client import Message
from .typed_decode import TypedDecoder, TypedPart

_value = attrgetter("value")

REASON_HEADER = "arnstream-reason"
FIELD_HEADER = "arnstream-field"
SOURCE_HEADER = "arnstream-source"
SIZE_HEADER = "arnstream-original-bytes"  # on a dead letter cut short: the record's whole size
# a reason may quote the record (a field name, a value): bounded, so a dead letter stays sendable
MAX_REASON_CHARS = 1000
MAX_FIELD_CHARS = 200


@dataclass
class ScoringModel:
    """Everything serve needs from one registry version."""

    version: str
    detector: object
    encoder: RecordEncoder
    feature_mean: np.ndarray  # encoded training normals, for the "most atypical fields" report
    feature_std: np.ndarray

    def __post_init__(self):
        schema = self.encoder.schema
        key = schema.of_kind("key")
        self.id_field = key.name if key else None
        # columns of one field are contiguous: numerics one each, categoricals one group each
        starts, names = [], []
        groups = {g.start: g for g in self.encoder.categorical_groups_}
        col = 0
        while col < self.encoder.n_features_out_:
            starts.append(col)
            if col in groups:
                names.append(groups[col].field)
                col = groups[col].stop
            else:
                names.append(self.encoder.feature_names_[col])
                col += 1
        self.field_starts = np.asarray(starts, dtype=np.int64)
        self.field_names = np.asarray(names, dtype=object)
        self.threshold = float(self.detector.threshold_)
        self.score = self.detector.serving_scorer()  # equal to detector.score, built for a thread
        self.features = FeaturePipeline(self.encoder)  # windows start empty with each model
        # windows read whole records in order: schemas with them take the general path only
        self.typed = TypedDecoder(schema, self.id_field) if self.features.windows is None else None

    @classmethod
    def from_artifact(cls, version: str, artifact) -> "ScoringModel":
        enc = RecordEncoder.from_dict(artifact.encoder_state)
        profile = artifact.metadata.get("feature_profile") or {}
        n = enc.n_features_out_
        mean = np.asarray(profile.get("mean", np.zeros(n)), dtype=np.float32)
        std = np.asarray(profile.get("std", np.ones(n)), dtype=np.float32)
        return cls(version, artifact.detector, enc, mean, std)

    def atypical_fields(self, X: np.ndarray, k: int) -> list[list[str]]:
        """Per row, the k fields farthest from the training normals (in standard deviations)."""
        if k <= 0 or len(X) == 0:
            return [[] for _ in range(len(X))]
        z = np.abs(X - self.feature_mean) / (self.feature_std + 1e-3)
        per_field = np.maximum.reduceat(z, self.field_starts, axis=1)
        k = min(k, per_field.shape[1])
        top = np.argsort(-per_field, axis=1, kind="stable")[:, :k]
        return self.field_names[top].tolist()


class ScoreDoc(msgspec.Struct, gc=False):
    """One flows-scores record, its fields in the JSON's order.

    A struct encoded by msgspec, not a dict by orjson: serve keeps a batch's outputs until
    they are written, and orjson's output buffers, kept that long, made glibc grow and trim
    its heap with every batch, each time on fresh pages (a probe: 3.2 against 0.39 us a
    record; serve's thread 6-8 us a record less in all with the typed decoding,
    docs/streaming.md)."""

    id: str
    score: float
    threshold: float
    is_anomaly: bool
    model_version: str
    top_features: list[str]
    source: str


_to_json = msgspec.json.Encoder().encode


class Output(NamedTuple):
    """One record to produce. A tuple, not a dataclass: serve makes one per scored record."""

    topic_key: str  # "scores" | "alerts" | "deadletter"
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class BatchResult:
    outputs: list[Output]  # dead letters and alerts
    # flows-scores, one record per scored row, as columns (values, keys): serve sends them with
    # one produce call each and no per-record tuple (~1 us of its main thread per record)
    score_values: list[bytes]
    score_keys: list[bytes]
    n_scored: int
    n_anomalies: int
    rejected_reasons: list[str]  # one bounded reason category per dead letter
    scores: np.ndarray
    # the scored records for the feedback store, when asked (keep_records)
    retained: ScoredColumns | None = None

    def all_outputs(self) -> list[Output]:
        """Every record to produce, scores included, as `Output`s."""
        return self.outputs + [Output("scores", v, k) for v, k in zip(self.score_values, self.score_keys)]


def _id_text(value) -> str | None:
    """A record's id field as its id: a non-empty string, or an integer as text; else None (the
    id is then the record's topic:partition:offset)."""
    if type(value) is str:
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def reason_category(field_name: str | None, reason: str) -> str:
    """A bounded label for metrics; the full reason travels with the dead letter."""
    text = reason.lower()
    for needle, category in (("not valid json", "not_json"), ("not an object", "not_object"),
                             ("missing", "missing_field"), ("nan", "not_finite"),
                             ("infinite", "not_finite"), ("not a number", "wrong_type"),
                             ("expected", "wrong_type"), ("below the minimum", "out_of_range"),
                             ("above the maximum", "out_of_range"), ("out of range", "out_of_range"),
                             ("empty", "empty")):
        if needle in text:
            return category
    return "invalid"


@dataclass
class DecodedBatch:
    """A batch decoded, validated and encoded, waiting for its scores (the model's part)."""

    messages: list[Message]
    model: ScoringModel
    records: list | None  # the decoded records that were objects, in message order (None: the typed path)
    kept: list[int]  # records[i] (or scored row i, on the typed path) came from messages[kept[i]]
    encoded: EncodedBatch  # rows index `records`
    seen: list | None  # per encoded row, the record with its window features (None: no windows)
    dead_letters: list[Output]
    reasons: list[str]
    raw_ids: list | None = None  # the typed path: each scored row's id field as sent (None where absent)

    def record_json(self, i: int) -> msgspec.Raw:
        """Encoded row i's record as received, for its alert: valid JSON (it was decoded), and no
        larger than the message, so an alert stays within twice serve.max_record_bytes."""
        return msgspec.Raw(self.messages[self.kept[i]].value.strip())


def decode_batch(messages: list[Message], model: ScoringModel, max_bytes: int = MAX_RECORD_BYTES) -> DecodedBatch:
    """Decode, validate and encode: everything before the discriminator. The records the typed
    path takes go that way, the rest (and a batch it mostly refuses) the general one (orjson),
    which words every rejection. Records over max_bytes are dead letters before either."""
    values = list(map(_value, messages))
    oversize = _oversize(values, max_bytes)
    if oversize:
        return _without_oversize(messages, model, oversize, max_bytes)
    if model.typed is not None:
        part = model.typed.decode(values)
        if part is not None:
            return _typed_batch(messages, model, part)
    return _general_batch(messages, model)


def _oversize(values: list, max_bytes: int) -> list[int]:
    """Positions of the values longer than max_bytes (one C-level pass when there are none)."""
    try:
        if max(map(len, values), default=0) <= max_bytes:
            return []
    except TypeError:  # a message without a value: looked at one by one
        pass
    return [i for i, v in enumerate(values) if v is not None and len(v) > max_bytes]


def too_large_reason(size: int, max_bytes: int) -> str:
    return (f"record is too large: {size:,} bytes, more than serve.max_record_bytes ({max_bytes:,}); "
            f"its first {max_bytes:,} bytes are kept here, the whole record at its source offset")


def _without_oversize(messages: list[Message], model: ScoringModel, oversize: list[int],
                      max_bytes: int) -> DecodedBatch:
    """The batch without its oversize records, which become dead letters cut to max_bytes: sent
    whole they could break Kafka's message limit, and the output would then be retried forever
    (found by a probe: a 999,950-byte record stopped serve's progress with the confluent client)."""
    skip = set(oversize)
    rest = [i for i in range(len(messages)) if i not in skip]
    decoded = decode_batch([messages[i] for i in rest], model, max_bytes)
    decoded.messages, decoded.kept = messages, [rest[k] for k in decoded.kept]
    for i in oversize:
        decoded.dead_letters.append(dead_letter(messages[i], None, too_large_reason(len(messages[i].value), max_bytes),
                                                keep_bytes=max_bytes))
        decoded.reasons.append("too_large")
    return decoded


def _general_batch(messages: list[Message], model: ScoringModel) -> DecodedBatch:
    records, kept, dead, reasons = _decode_json(messages)
    encoded, seen = model.features.transform_with_records(records)
    for rej in encoded.rejected:
        dead.append(dead_letter(messages[kept[rej.row]], rej.field, rej.reason))
        reasons.append(reason_category(rej.field, rej.reason))
    return DecodedBatch(messages, model, records, kept, encoded, seen, dead, reasons)


def _typed_batch(messages: list[Message], model: ScoringModel, part: TypedPart) -> DecodedBatch:
    """The typed records encoded; the refused ones, and those the encoder rejects (their reason
    is worded by the general path), decoded the general way; rows merged in message order."""
    encoded = model.encoder.transform_batch(part.columns) if part.columns is not None else None
    general = sorted(part.refused + ([part.accepted[r.row] for r in encoded.rejected] if encoded else []))
    if not general:  # the usual batch: every record typed and scored
        return DecodedBatch(messages, model, None, part.accepted, encoded, None, [], [], part.ids)
    rest = _general_batch([messages[i] for i in general], model)
    rows_typed = encoded.rows.tolist() if encoded else []
    rows_rest = rest.encoded.rows.tolist()
    positions = [part.accepted[r] for r in rows_typed] + [general[rest.kept[r]] for r in rows_rest]
    order = np.argsort(positions, kind="stable")
    in_order = order.tolist()
    X = np.concatenate([encoded.X, rest.encoded.X]) if encoded else rest.encoded.X
    ids = None
    if model.id_field is not None:  # each scored record's id field as sent, typed or not
        sent = [part.ids[r] for r in rows_typed] + [rest.records[r].get(model.id_field) for r in rows_rest]
        ids = [sent[k] for k in in_order]
    merged = EncodedBatch(X=X[order], rows=np.arange(len(positions)))
    return DecodedBatch(messages, model, None, [positions[k] for k in in_order], merged, None,
                        rest.dead_letters, rest.reasons, ids)


def _decode_json(messages: list[Message]) -> tuple[list, list[int], list[Output], list[str]]:
    """The messages that are JSON, decoded; their positions; dead letters for the rest."""
    try:  # the usual batch, all JSON: decoded in one C-level pass
        return list(map(orjson.loads, map(_value, messages))), list(range(len(messages))), [], []
    except (orjson.JSONDecodeError, TypeError):
        pass
    dead: list[Output] = []
    reasons: list[str] = []
    records, kept = [], []
    for i, msg in enumerate(messages):
        if not msg.value:
            dead.append(dead_letter(msg, None, "empty message"))
            reasons.append("empty")
            continue
        try:
            records.append(orjson.loads(msg.value))
            kept.append(i)
        except orjson.JSONDecodeError as exc:
            dead.append(dead_letter(msg, None, f"not valid JSON: {exc}"))
            reasons.append("not_json")
    return records, kept, dead, reasons


def model_scores(decoded: DecodedBatch) -> np.ndarray:
    """The score of each encoded row, by the model's serving scorer (for torch models a graph
    that runs without the GIL: serve calls this on a thread while the last batch is written)."""
    X = decoded.encoded.X
    return decoded.model.score(X) if len(X) else np.zeros(0)


def result_of(decoded: DecodedBatch, scores: np.ndarray, top_k: int = 3,
              keep_records: bool = False) -> BatchResult:
    """Scores -> output records for flows-scores / flows-alerts (after the dead letters)."""
    model, messages, records, seen = decoded.model, decoded.messages, decoded.records, decoded.seen
    alerts = scores > model.threshold
    top = model.atypical_fields(decoded.encoded.X, top_k)
    # serve's hot path: comprehensions and C-level maps over plain lists, no numpy scalars
    threshold, version = model.threshold, model.version
    rows, score_list, flag_list = decoded.encoded.rows.tolist(), scores.tolist(), alerts.tolist()
    # rows and kept are increasing: when every message was scored, both map i to i
    scored = messages if len(rows) == len(messages) else [messages[i] for i in map(decoded.kept.__getitem__, rows)]
    sources = [f"{m.topic}:{m.partition}:{m.offset}" for m in scored]
    if model.id_field is None:
        ids = sources
    else:  # the record's own id where it has a usable one
        own = (decoded.raw_ids if decoded.raw_ids is not None  # (the typed path: one per scored row)
               else map(methodcaller("get", model.id_field), map(records.__getitem__, rows)))
        ids = [v if type(v) is str and v else (_id_text(v) or source) for v, source in zip(own, sources)]
    docs = list(map(ScoreDoc, ids, score_list, repeat(threshold), flag_list, repeat(version), top, sources))
    keys = list(map(str.encode, ids))
    outputs = list(decoded.dead_letters)
    outputs += [Output("alerts", _to_json({**msgspec.structs.asdict(docs[j]), "record": decoded.record_json(rows[j])}),
                       keys[j])
                for j in np.flatnonzero(alerts).tolist()]
    retained = None
    if keep_records:  # without windows, the bytes as received are the record the model saw
        seen_json = [m.value for m in scored] if seen is None else list(map(_to_json, seen))
        retained = ScoredColumns(ids, [version] * len(ids), score_list, alerts.astype(np.int8).tolist(), seen_json)
    return BatchResult(outputs, list(map(_to_json, docs)), keys, len(rows), int(alerts.sum()), decoded.reasons,
                       scores, retained)


def score_messages(messages: list[Message], model: ScoringModel, top_k: int = 3,
                   keep_records: bool = False, max_bytes: int = MAX_RECORD_BYTES) -> BatchResult:
    """The whole scoring of one batch, in line."""
    decoded = decode_batch(messages, model, max_bytes)
    return result_of(decoded, model_scores(decoded), top_k, keep_records)


def dead_letter(msg: Message, field_name: str | None, reason: str, keep_bytes: int | None = None) -> Output:
    """The original bytes, untouched, with the reason in headers (and the source position);
    past keep_bytes, only their start, and their whole size in a header."""
    headers = [(REASON_HEADER, reason[:MAX_REASON_CHARS].encode()),
               (SOURCE_HEADER, f"{msg.topic}:{msg.partition}:{msg.offset}".encode())]
    if field_name:
        headers.append((FIELD_HEADER, field_name[:MAX_FIELD_CHARS].encode()))
    value = msg.value or b""
    if keep_bytes is not None and len(value) > keep_bytes:
        headers.append((SIZE_HEADER, str(len(value)).encode()))
        value = value[:keep_bytes]
    return Output("deadletter", value, msg.key, headers)
