"""Analyst feedback: labels, the store that joins them to scored records, retraining and its gate.

Nothing here talks to Kafka (stream/feedback.py does); retraining runs from the store alone,
so `arnstream retrain` works without a broker.
"""

from .labels import Label, make_label, parse_label, read_label_csv
from .retrain import RetrainOutcome, retrain, retrain_due
from .store import FeedbackStore

__all__ = ["FeedbackStore", "Label", "RetrainOutcome", "make_label", "parse_label", "read_label_csv",
           "retrain", "retrain_due"]
