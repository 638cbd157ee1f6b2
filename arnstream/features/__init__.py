"""Record batch -> model matrix. The same code runs in training and in serving."""

from .columns import columns_to_records, records_to_columns
from .encoder import CategoricalGroup, EncodedBatch, RecordEncoder, Rejected

__all__ = [
    "CategoricalGroup",
    "EncodedBatch",
    "RecordEncoder",
    "Rejected",
    "columns_to_records",
    "records_to_columns",
]
