"""Raw records -> model matrix: the schema's traffic windows (when it has them), then the encoder.

The one object that turns records into features, in training and in serving alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .encoder import EncodedBatch, RecordEncoder, Rejected
from .windows import TrafficWindows


class FeaturePipeline:
    def __init__(self, encoder: RecordEncoder):
        self.encoder = encoder
        self.windows = TrafficWindows.from_schema(encoder.schema)

    def transform_batch(self, records: Sequence) -> EncodedBatch:
        return self.transform_with_records(records)[0]

    def transform_with_records(self, records: Sequence) -> tuple[EncodedBatch, list | None]:
        """The batch, plus each encoded row's record as the encoder saw it (window features
        included): what the feedback store keeps, since a window cannot be replayed later.
        None when the schema has no windows: the encoder saw the records as given."""
        if self.windows is None:
            return self.encoder.transform_batch(records), None
        derived, rows, rejected = self.windows.apply(records)
        batch = self.encoder.transform_batch(derived)
        positions = np.asarray(rows, dtype=np.int64)
        bad = [Rejected(row, field, reason) for row, field, reason in rejected]
        bad += [Rejected(int(positions[r.row]), r.field, r.reason) for r in batch.rejected]
        seen = [derived[i] for i in batch.rows.tolist()]
        return EncodedBatch(batch.X, positions[batch.rows], sorted(bad, key=lambda r: r.row)), seen


def derive(records: Sequence, encoder_schema) -> tuple[list, list[tuple[int, str | None, str]]]:
    """Training-side replay: the windowed records (fresh state, records in the given order)."""
    windows = TrafficWindows.from_schema(encoder_schema)
    if windows is None:
        return list(records), []
    derived, _, rejected = windows.apply(records)
    return derived, rejected
