"""The validation gate: is a retrained candidate at least as good as the model in use?

Both models score the same held-out evidence, each through its own encoder:
- labelled feedback the candidate did not train on: held-out analyst anomalies (positives)
  against held-out analyst normals plus the reference records below, or without those a
  held-out sample of recent unflagged traffic (negatives): AUC and AUPRC;
- declared-normal reference records neither model trained on, the ones both thresholds
  were calibrated on (the model in use's reference, feedback/retrain.py): the
  false-positive rate each model's calibration gives out of sample, cross-fitted
  (cross_fitted_fpr), or its rate at its own threshold if that is higher (a threshold not
  calibrated on them). Without reference records, the recent unflagged sample stands in,
  at each model's own threshold (it holds every attack nobody labelled: a weaker check);
- the recent unflagged sample: the share the candidate would alert on. The model in use
  raised no alert on those records, so this is the alert volume the candidate adds, true
  detections of attacks nobody labelled and false alarms alike: an alert budget
  (`max_new_alert_rate`), not a false-positive rate;
- the recent alerts of the model in use that no analyst labelled (never training data):
  the share the candidate still raises. Labels teach what was missed; this catches a
  candidate that learned it and forgot what the current model already caught (measured:
  a short retraining that lifted beacon AUC dropped brute-force AUC to 0.07). Some of those
  alerts are the model in use's false alarms, which a better candidate drops: as many as
  its false-positive rate predicts over the records scored in their span (less those
  analysts already triaged) are discounted (expected_false_alerts).

The candidate passes when it ranks the held-out labelled anomalies above the negatives
better than chance with 95% confidence (beats_chance: a candidate that did not learn what
the labels teach is no reason to replace anything; an inverted-label candidate judged
against a model in use that ranks the labelled attack at chance was promoted without this,
docs/feedback.md), neither AUC nor AUPRC trails the current model's by more than
`auc_tolerance`, its false-positive rate stays within `max(current, target_fpr) +
fpr_tolerance`, it adds alerts on at most `max_new_alert_rate` of the recent traffic (both
rates: unless the evidence shows them above the limit with 95% confidence, clearly_above),
and it raises at least `min_alert_recall` of the recent alerts that are not expected false
alarms (checked from MIN_ALERTS_FOR_RECALL such alerts on).
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
    n_reference: int = 0  # declared-normal records the false-positive rate was cross-fitted on (0: recent stood in)
    false_alerts: float = 0.0  # how many of the recent alerts the current model's false-positive rate predicts
    reasons: list[str] = field(default_factory=list)  # why it failed; empty when it passed

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def fmt(m):
            return (f"AUC {m['auc']:.4f} AUPRC {m['auprc']:.4f} FPR {m['fpr']:.4f} "
                    f"new alerts {m['alert_rate']:.4f} recent alerts kept {m['alert_recall']:.3f}" if m else "none")
        fpr_on = (f"{self.n_reference} reference normals, cross-fitted" if self.n_reference
                  else "recent traffic, no reference")
        return (f"candidate {fmt(self.candidate)}; current {fmt(self.current)} "
                f"({self.n_positive} held-out anomalies, {self.n_negative} negatives, {self.n_recent} recent, "
                f"{self.n_alerts} recent alerts, ~{self.false_alerts:.0f} of them expected false; FPR on {fpr_on})")


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
             target_fpr: float, max_new_alert_rate: float = 1.0, alerts: Sequence[dict] = (),
             min_alert_recall: float = 0.0, reference: Sequence[dict] = (),
             alert_span: tuple[int, int] = (0, 0)) -> GateReport:
    """candidate/current: loaded artifacts (current may be None). negatives exclude `recent`;
    alerts: recent records the current model flagged (unlabelled); alert_span: records scored
    since the oldest of them, and flagged ones among those analysts labelled normal
    (FeedbackStore.alert_span); reference: the declared-normal records both models'
    thresholds were calibrated on."""
    # 1: held-out anomaly, 0: held-out labelled normal, 2: reference record, -1: recent unflagged
    kind = np.r_[np.ones(len(positives)), np.zeros(len(negatives)), np.full(len(reference), 2),
                 np.full(len(recent), -1)]
    records = [*positives, *negatives, *reference, *recent]
    models = {"candidate": candidate, "current": current}
    scores = {name: score_records(a, records) for name, a in models.items() if a is not None}
    alert_scores = {name: score_records(a, alerts) for name, a in models.items() if a is not None}
    usable = np.logical_and.reduce([~np.isnan(s) for s in scores.values()])  # rows both models scored
    kind = kind[usable]
    is_positive, is_reference, is_recent = kind == 1, kind == 2, kind == -1
    # ranked against clean normals where there are any: recent traffic holds unlabelled attacks,
    # and a candidate that learned to rank them high would be counted wrong for it
    ranked = is_positive | (kind == 0) | (is_reference if is_reference.any() else is_recent)

    def metrics(name: str) -> dict:
        s = scores[name][usable]
        if is_positive.any() and (ranked & ~is_positive).any():
            m = detection_metrics(is_positive[ranked], s[ranked])
        else:
            m = {"auc": float("nan"), "auprc": float("nan")}
        threshold = models[name].detector.threshold_
        m["alert_rate"] = float((s[is_recent] > threshold).mean()) if is_recent.any() else 0.0
        m["alert_recall"] = _share_above(alert_scores[name], threshold)
        if is_reference.any():  # a threshold not placed as calibrate would place it shows at its own rate
            m["fpr"] = max(float((s[is_reference] > threshold).mean()),
                           cross_fitted_fpr(s[is_reference], target_fpr))
        else:
            m["fpr"] = m["alert_rate"]
        return m

    c = metrics("candidate")
    k = metrics("current") if current is not None else None
    reasons = []
    n_positive, n_negative = int(is_positive.sum()), int((ranked & ~is_positive).sum())
    if not is_positive.any():
        reasons.append("no held-out labelled anomaly to validate on")
    elif not beats_chance(c["auc"], n_positive, n_negative):
        reasons.append(f"ranks the {n_positive} held-out labelled anomalies at AUC {c['auc']:.4f}, not better than "
                       f"chance with 95% confidence (that needs {chance_bar(n_positive, n_negative):.4f})")
    if is_positive.any() and k is not None:
        for name in ("auc", "auprc"):
            if c[name] < k[name] - auc_tolerance:
                reasons.append(f"{name.upper()} {c[name]:.4f} < current {k[name]:.4f} - {auc_tolerance}")
    limit = max(k["fpr"] if k and not np.isnan(k["fpr"]) else 0.0, target_fpr) + fpr_tolerance
    n_reference = int(is_reference.sum())
    n_fpr = n_reference or int(is_recent.sum())
    if len(reference) and not n_reference:
        reasons.append("no reference record could be scored: no false-positive rate to check")
    elif clearly_above(c["fpr"], n_fpr, limit):
        on = f"{n_reference} reference normals" if n_reference else "recent unflagged traffic"
        reasons.append(f"false-positive rate on {on} {c['fpr']:.4f} > {limit:.4f}")
    if clearly_above(c["alert_rate"], int(is_recent.sum()), max_new_alert_rate):
        reasons.append(f"alerts on {c['alert_rate']:.4f} of the recent traffic the current model let pass "
                       f"> {max_new_alert_rate} (retrain.max_new_alert_rate)")
    false_alerts = expected_false_alerts(k["fpr"] if k else float("nan"), alert_span, len(alerts))
    required = min_alert_recall * (1.0 - false_alerts / len(alerts)) if len(alerts) else 0.0
    if len(alerts) - false_alerts >= MIN_ALERTS_FOR_RECALL and c["alert_recall"] < required:
        reasons.append(f"raises {c['alert_recall']:.3f} of the current model's {len(alerts)} recent alerts "
                       f"< {required:.3f} ({min_alert_recall} of the ~{len(alerts) - false_alerts:.0f} its "
                       f"false-positive rate does not explain)")
    return GateReport(not reasons, n_positive, n_negative, int(is_recent.sum()), c, k, n_alerts=len(alerts),
                      n_reference=n_reference, false_alerts=false_alerts, reasons=reasons)


def cross_fitted_fpr(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The false-positive rate of a threshold calibrated on half of these normal scores
    (the 1 - target_fpr quantile, as `calibrate` places it) on the other half, averaged both
    ways. The thresholds in use were calibrated on all of them, so their own rate there is
    zero by construction; this is the out-of-sample estimate (for half as many records, so
    on the safe side). NaN when fewer than two scored."""
    scored = normal_scores[~np.isnan(normal_scores)]
    halves = scored[0::2], scored[1::2]
    if not len(halves[1]):
        return float("nan")
    rates = [(b > np.quantile(a, 1.0 - target_fpr, method="higher")).mean() for a, b in (halves, halves[::-1])]
    return float(np.mean(rates))


def expected_false_alerts(current_fpr: float, alert_span: tuple[int, int], n_alerts: int) -> float:
    """How many of the model in use's n_alerts recent unlabelled alerts its false-positive rate
    predicts: rate x records scored in their span, less the flagged records analysts labelled
    normal there (gone from the alerts), within [0, n_alerts]. 0 without a rate or a span."""
    scored, triaged = alert_span
    if not scored or np.isnan(current_fpr):
        return 0.0
    return float(min(n_alerts, max(0.0, current_fpr * scored - triaged)))


def chance_bar(n_positive: int, n_negative: int, z: float = 1.645) -> float:
    """The AUC above which a ranking of n_positive against n_negative records is better than
    chance with 95% confidence (one-sided): the Mann-Whitney statistic's standard error when
    both come from one distribution is sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg)). Five
    held-out anomalies against 2,000 normals need 0.71; one needs 0.98."""
    if n_positive <= 0 or n_negative <= 0:
        return float("nan")
    return 0.5 + z * float(np.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative)))


def beats_chance(auc: float, n_positive: int, n_negative: int) -> bool:
    bar = chance_bar(n_positive, n_negative)
    return bool(not np.isnan(auc) and not np.isnan(bar) and auc > bar)


def clearly_above(share: float, n: int, limit: float, z: float = 1.645) -> bool:
    """Is a share measured on n records above `limit` with 95% confidence (Wilson's one-sided
    lower bound)? A rate near 0.001 measured on a few hundred records is one or two
    records: a plain comparison would reject a sound candidate for one unlucky record
    (about one time in four at 300 reference records)."""
    if n <= 0:
        return False
    z2 = z * z
    centre = share + z2 / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return bool((centre - spread) / (1 + z2 / n) > limit)


def _share_above(scores: np.ndarray, threshold: float) -> float:
    """The share of the scored (non-NaN) records above the threshold; NaN when none scored."""
    scored = scores[~np.isnan(scores)]
    return float((scored > threshold).mean()) if len(scored) else float("nan")
