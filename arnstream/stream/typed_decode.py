"""Serve's fast path: JSON straight into typed structs, then columns.

orjson builds a dict per record, every field included; msgspec decodes each record into a
struct of the schema's fields, the features typed as the encoder needs them (numbers as
floats, categories as strings), and checks those types in C while it parses: on the reference
machine ~0.9 against ~1.6 us per record, and the columns come out as floats with no
per-value conversion left (docs/streaming.md).

It takes only what orjson would read the same way: the struct holds every field the schema
names and no other (a field the schema does not name would be skipped unread, invalid UTF-8 or
an out-of-range number included), the other fields are JSON scalars, and an integer id is a
64-bit one. A record it does not accept (not JSON, not an object, a missing or unknown field, a
wrong type, a bool where a number belongs) is *refused*: serve decodes the refused records the
general way, which finds and words each problem, so the records scored, their vectors and the
dead letters are the general path's either way. Past a quarter of a batch refused (a producer
whose records all carry a field the schema does not name), `decode` gives up, serve decodes the
whole batch the general way, and the typed path sits out the next 1, 2, 4, ... 64 batches (it
tries again after each pause), so such a stream costs what the general path alone does.
Each message is decoded on its own, never spliced into one document, so one message cannot
pass as two.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Annotated

import msgspec
import numpy as np
from msgspec.structs import astuple

from ..features.columns import Columns
from ..schema import FlowSchema

# orjson reads integers beyond [-2**63, 2**64) as floats, msgspec keeps them exact: such an id
# would be another id by each path, so the typed one takes only 64-bit signed integers
_ORJSON_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_SCALAR = str | _ORJSON_INT | float | bool | None  # a field the encoder does not read (timestamp, label)
# msgspec.DecodeError (ValidationError is one), invalid UTF-8 (ValueError), a None value
# (TypeError), nesting deeper than the parser goes (RecursionError)
_REFUSALS = (msgspec.DecodeError, ValueError, TypeError, RecursionError)


@dataclass
class TypedPart:
    """What the typed path took of a batch: the accepted records as columns, and the refused."""

    columns: Columns | None  # of the accepted records, in order (None when it took none)
    ids: list | None  # each accepted record's id field as sent (None: the schema has no id field)
    accepted: list[int]  # positions in the batch, increasing
    refused: list[int]


MAX_SIT_OUT = 64  # the longest pause (in batches) of the typed path after batches it gave up on


class TypedDecoder:
    """Feature columns (and the raw id values) of a batch of JSON records, for one schema."""

    def __init__(self, schema: FlowSchema, id_field: str | None):
        fields = schema.feature_fields  # numeric or categorical
        self.names = [f.name for f in fields]
        self.numeric = {f.name for f in fields if f.kind == "numeric"}
        spec: list = [(f"f{i}", float if f.kind == "numeric" else str) for i, f in enumerate(fields)]
        others = [f.name for f in schema.fields if not f.is_feature and f.name != id_field]
        spec += [(f"o{i}", _SCALAR, None) for i in range(len(others))]
        if id_field is not None:
            spec.append(("record_id", str | _ORJSON_INT | None, None))  # absent: the id is topic:partition:offset
        # attributes f0.., o0.. renamed to the fields' names: any name a schema uses works
        rename = {**{f"f{i}": name for i, name in enumerate(self.names)},
                  **{f"o{i}": name for i, name in enumerate(others)},
                  **({"record_id": id_field} if id_field is not None else {})}
        # gc=False: strings and numbers only, no cycles, so the collector need not track them
        record_type = msgspec.defstruct("DecodedRecord", spec, rename=rename, gc=False, forbid_unknown_fields=True)
        self._decode = msgspec.json.Decoder(record_type).decode
        self._has_id = id_field is not None
        self._sit_out = 0  # batches left to leave to the general path
        self._next_sit_out = 1

    def decode(self, values: list) -> TypedPart | None:
        """The batch's records it accepts, as columns, and the positions of those it refuses;
        None when it refuses more than a quarter of them, or sits out after such batches (the
        general path then takes all, as it takes an empty batch)."""
        if not values:
            return None
        if self._sit_out:
            self._sit_out -= 1
            return None
        records: list = []
        refused: list[int] = []
        limit = max(1, len(values) // 4)
        start = 0
        while True:
            before = len(records)
            try:  # extend keeps the records decoded before a refusal: we go on after it
                records.extend(map(self._decode, islice(values, start, None)))
                break
            except _REFUSALS:
                refused.append(start + len(records) - before)
                if len(refused) > limit:
                    self._sit_out, self._next_sit_out = self._next_sit_out, min(2 * self._next_sit_out, MAX_SIT_OUT)
                    return None
                start = refused[-1] + 1
        self._next_sit_out = 1
        accepted = list(range(len(values)))
        if refused:
            out = set(refused)
            accepted = [i for i in accepted if i not in out]
        if not records:
            return TypedPart(None, None, accepted, refused)
        fields = list(zip(*map(astuple, records)))  # the features in order, the other fields, the id last
        columns: Columns = {name: np.array(values_of_field, dtype=np.float64 if name in self.numeric else object)
                            for name, values_of_field in zip(self.names, fields)}
        return TypedPart(columns, list(fields[-1]) if self._has_id else None, accepted, refused)
