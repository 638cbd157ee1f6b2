"""What analysts' labels teach, as a score of its own: a small classifier of the labelled
anomalies against normal traffic, beside ARN's discriminator.

Why: ARN's discriminator learns labelled anomalies the paper's way (eq. 4), among generated
variants and under noisy labels, and gives every clearly abnormal record about one logit: a
plateau that the top 0.1% of normal traffic reaches too. Retrained on 14 labelled beacons it
ranked fresh beacons at AUC 0.97-0.99, yet none crossed a 0.1% false-positive threshold: the
beacons sat on the plateau, their median 1.24 and the normals' 99.9th percentile 1.25 in the
either score's units (docs/feedback.md, "What the labels teach"). Trained on clean labels
alone, this head has no such ceiling; `score_mode: either` takes it as a third part.

Its scale is not fitted on normal rows as the other parts' are: retraining's normals are recent
traffic, which holds unlabelled instances of the labelled attack (about 1% in the demo), and
their 99th percentile lands among them. The head's own decision boundary sets the scale
instead: a row on it (logit 0) sits at 1, where the other parts put their normal tail, and
the labelled rows' median logit at 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 32
STEPS = 300  # full-batch Adam steps: the loss is flat well before (a few thousand rows, a few labels)
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 1e-4  # keeps the boundary smooth around a handful of labelled rows
MAX_NORMAL_ROWS = 20000  # a full batch: more normal rows add time, not boundary
MIN_SCALE = 1.0  # a head that barely separates its own labels (median logit under 1) gets no steeper slope


class LabelHead(nn.Sequential):
    """x -> logit of "like the labelled anomalies": one hidden ReLU layer, no normalisation
    (a LayerNorm would bound the logit, the ceiling this head is here to avoid)."""

    def __init__(self, n_features: int, hidden: int = HIDDEN):
        super().__init__(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


def fit_label_head(normal: torch.Tensor, anomalies: torch.Tensor, seed: int) -> LabelHead:
    """Train on normal rows (0) against labelled anomalies (1), each class weighing half of the
    loss: a few labels must count against thousands of normals, some of which may be unlabelled
    instances of the same attack (retraining's normals are recent traffic)."""
    if len(normal) > MAX_NORMAL_ROWS:
        pick = torch.randperm(len(normal), generator=torch.Generator().manual_seed(seed))[:MAX_NORMAL_ROWS]
        normal = normal[pick.to(normal.device)]
    with torch.random.fork_rng(devices=[]):  # the head's initial weights leave the caller's RNG alone
        torch.manual_seed(seed)
        head = LabelHead(normal.shape[1])
    head = head.to(normal.device)
    opt = torch.optim.Adam(head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    zeros, ones = torch.zeros(len(normal), device=normal.device), torch.ones(len(anomalies), device=normal.device)
    with torch.enable_grad():
        for _ in range(STEPS):
            loss = (F.binary_cross_entropy_with_logits(head(normal), zeros)
                    + F.binary_cross_entropy_with_logits(head(anomalies), ones))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head.eval().requires_grad_(False)


@torch.no_grad()
def label_scale(head: LabelHead, anomalies: torch.Tensor) -> list[float]:
    """The head's row of ARN's reference_ ([centre, spread, tail], read as (logit - centre) / tail):
    logit 0 -> 1, the labelled anomalies' median logit -> 2."""
    m = max(float(head(anomalies).median()), MIN_SCALE)
    return [-m, m, m]
