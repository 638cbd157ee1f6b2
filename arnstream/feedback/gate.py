"""The validation gate: is a retrained candidate at least as good as the model in use?

Both models score the same held-out evidence, each through its own encoder:
- labelled feedback the candidate did not train on: held-out analyst anomalies (positives)
  against held-out analyst normals plus a held-out sample of recent unflagged traffic
  (negatives): AUC and AUPRC;
- the recent unflagged sample alone: the share each model would alert on at its own
  threshold. The model in use raised no alert on those records when it scored them, so
  for the candidate this is the extra alert rate it would add. It cannot tell a new true
  detection from a false alarm (an attack nobody labelled looks like traffic here), which is
  why it is a tolerance on alert volume rather than a strict zero;
- the recent alerts of the model in use that no analyst labelled (never training data):
  the share the candidate still raises. Labels teach what was missed; this catches a
  candidate that learned it and forgot what the current model already caught (measured:
  a short retraining that lifted beacon AUC dropped brute-force AUC to 0.07).

The candidate passes when neither AUC nor AUPRC trails the current model's by more than
`auc_tolerance`, its alert rate stays within `max(current, target_fpr) + fpr_tolerance`,
and it raises at least `min_alert_recall` of the recent alerts (checked from
MIN_ALERTS_FOR_RECALL alerts on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..evaluation.metrics import detection_metrics
from ..features import RecordEncoder

MIN_ALERTS_FOR_RECALL = 20  # fewer recent alerts than this say too little to gate on


@dataclass
class GateReport:
    passed: bool
    n_positive: int
    n_negative: int
    n_recent: int
    candidate: dict  # auc, auprc, alert_rate, alert_recall
    current: dict | None  # None when no model is in use
    n_alerts: int = 0
    reasons: list[str] = field(default_factory=list)  # why it failed; empty when it passed

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def fmt(m):
            return (f"AUC {m['auc']:.4f} AUPRC {m['auprc']:.4f} alert rate {m['alert_rate']:.4f} "
                    f"recent alerts kept {m['alert_recall']:.3f}" if m else "none")
        return (f"candidate {fmt(self.candidate)}; current {fmt(self.current)} "
                f"({self.n_positive} held-out anomalies, {self.n_negative} negatives, {self.n_recent} recent, "
                f"{self.n_alerts} recent alerts)")


def score_records(artifact, records: Sequence[dict]) -> np.ndarray:
    """p(anomaly | x) of stored (already windowed) records, through the artifact's own encoder.

    A record this encoder rejects scores NaN; the gate drops such rows for both models.
    """
    encoder = RecordEncoder.from_dict(artifact.encoder_state)
    batch = encoder.transform_batch(list(records))
    out = np.full(len(records), np.nan)
    if len(batch.X):
        out[batch.rows] = artifact.detector.score(batch.X)
    return out


def run_gate(candidate, current, positives: Sequence[dict], negatives: Sequence[dict],
             recent: Sequence[dict], *, auc_tolerance: float, fpr_tolerance: float,
             target_fpr: float, alerts: Sequence[dict] = (), min_alert_recall: float = 0.0) -> GateReport:
    """candidate/current: loaded artifacts (current may be None). negatives exclude `recent`;
    alerts: recent records the current model flagged (unlabelled)."""
    kind = np.r_[np.ones(len(positives)), np.zeros(len(negatives)), np.full(len(recent), -1)]  # -1: recent
    records = [*positives, *negatives, *recent]
    models = {"candidate": candidate, "current": current}
    scores = {name: score_records(a, records) for name, a in models.items() if a is not None}
    alert_scores = {name: score_records(a, alerts) for name, a in models.items() if a is not None}
    usable = np.logical_and.reduce([~np.isnan(s) for s in scores.values()])  # rows both models scored
    kind = kind[usable]
    is_positive = kind == 1
    is_recent = kind == -1

    def metrics(name: str) -> dict:
        s = scores[name][usable]
        if is_positive.any() and not is_positive.all():
            m = detection_metrics(is_positive, s)  # held-out anomalies against everything else
        else:
            m = {"auc": float("nan"), "auprc": float("nan")}
        threshold = models[name].detector.threshold_
        m["alert_rate"] = float((s[is_recent] > threshold).mean()) if is_recent.any() else 0.0
        kept = alert_scores[name][~np.isnan(alert_scores[name])] > threshold
        m["alert_recall"] = float(kept.mean()) if len(kept) else float("nan")
        return m

    c = metrics("candidate")
    k = metrics("current") if current is not None else None
    reasons = []
    if not is_positive.any():
        reasons.append("no held-out labelled anomaly to validate on")
    elif k is not None:
        for name in ("auc", "auprc"):
            if c[name] < k[name] - auc_tolerance:
                reasons.append(f"{name.upper()} {c[name]:.4f} < current {k[name]:.4f} - {auc_tolerance}")
    limit = max(k["alert_rate"] if k else 0.0, target_fpr) + fpr_tolerance
    if c["alert_rate"] > limit:
        reasons.append(f"alert rate on recent unflagged traffic {c['alert_rate']:.4f} > {limit:.4f}")
    if len(alerts) >= MIN_ALERTS_FOR_RECALL and c["alert_recall"] < min_alert_recall:
        reasons.append(f"raises {c['alert_recall']:.3f} of the current model's {len(alerts)} recent alerts "
                       f"< {min_alert_recall}")
    return GateReport(not reasons, int(is_positive.sum()), int((~is_positive).sum()), int(is_recent.sum()),
                      c, k, n_alerts=len(alerts), reasons=reasons)
