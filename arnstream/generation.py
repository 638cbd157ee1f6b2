"""The generator API: normal records in, their generated "just abnormal" variants out.

The variants come back as records: numerics unscaled to their original units, each one-hot
group decoded to its category (`<unknown>` when the generator picked the unknown bucket).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import ModelError
from .features import RecordEncoder
from .models.base import Detector


def generate_variants(detector: Detector, encoder: RecordEncoder, records: Sequence[Mapping],
                      seed: int = 0) -> list[dict]:
    """One generated variant per valid input record (invalid records raise RecordError)."""
    if not hasattr(detector, "generate"):
        raise ModelError(f"{type(detector).__name__} has no generator; use an ARN model")
    X = encoder.transform(records)
    return encoder.inverse_transform(detector.generate(X, seed=seed))
