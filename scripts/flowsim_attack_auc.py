"""AUC and alert recall of each simulated attack, for a model trained as the demo does.

The demo's first model in miniature, without Kafka: per seed, 30,000 normal flows from the
simulator train ARN (12 epochs, batch 256: the demo's defaults), the alert threshold is
calibrated on 10,000 other normal flows at the demo's false-positive rate (0.1%, as
`arnstream train` does), and 30,000 fresh flows with every known attack mixed in (10%) are
scored. Per attack: AUC against the normal flows, and recall (share of its flows above the
threshold). Every scoring the model offers is reported from the same fit (ARN: the
discriminator alone and the combined score).
Tells whether a model change helps or hurts the demo's traffic before running the demo.

    python scripts/flowsim_attack_auc.py [--seeds 0 1 2] [--batch-size 256] [--set field_negatives=0]

One torch thread. Prints one line per seed, then the means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.config import parse_assignment  # noqa: E402
from arnstream.data.synthetic import KNOWN_ATTACKS  # noqa: E402
from arnstream.features import RecordEncoder  # noqa: E402
from arnstream.models import make_detector  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402


def attack_scores(seed: int, model: str, epochs: int, batch_size: int, params: dict, fpr: float) -> dict:
    train, _ = FlowSimulator(seed=seed).batch(30000)
    held_out, _ = FlowSimulator(seed=50 + seed).batch(10000)
    test, truth = FlowSimulator(seed=100 + seed, attacks=KNOWN_ATTACKS, attack_fraction=0.1).batch(30000)
    encoder = RecordEncoder(FlowSchema.load("flowsim")).fit(train)
    det = make_detector(model, epochs=epochs, batch_size=batch_size, device="cpu", seed=seed, **params)
    det.fit(encoder.transform(train), feature_groups=[(g.start, g.stop) for g in encoder.categorical_groups_])
    truth = np.asarray(truth)

    def scorings(X):  # every scoring the model offers; a model without alternatives has one
        return det.alternative_scores(X) or {"score": det.score(X)}

    calibration = scorings(encoder.transform(held_out))
    out = {}
    for scoring, scores in scorings(encoder.transform(test)).items():
        threshold = np.quantile(calibration[scoring], 1.0 - fpr)
        normal = scores[truth == "normal"]
        out[scoring] = {}
        for kind in KNOWN_ATTACKS:
            attack = scores[truth == kind]
            auc = roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(attack))], np.r_[normal, attack])
            out[scoring][kind] = {"auc": round(float(auc), 4), "recall": round(float((attack > threshold).mean()), 3)}
        out[scoring]["false_positive_rate"] = round(float((normal > threshold).mean()), 5)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="arn-n")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256, help="the demo's (`arnstream demo --batch-size`)")
    parser.add_argument("--fpr", type=float, default=0.001, help="false-positive rate the threshold is set for")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = dict(parse_assignment(item) for item in args.set)
    runs = []
    for seed in args.seeds:
        runs.append(attack_scores(seed, args.model, args.epochs, args.batch_size, params, args.fpr))
        print(json.dumps({"seed": seed, "params": params, **runs[-1]}), flush=True)
    mean = {scoring: {kind: {m: round(float(np.mean([r[scoring][kind][m] for r in runs])), 3)
                             for m in ("auc", "recall")} for kind in KNOWN_ATTACKS}
            for scoring in runs[0]}
    print(json.dumps({"mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
