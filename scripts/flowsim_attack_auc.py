"""AUC of each simulated attack against normal flows, for a model trained as the demo does.

The demo's first model in miniature, without Kafka: per seed, 30,000 normal flows from the
simulator train ARN (12 epochs), and 30,000 fresh flows with every known attack mixed in
(10%) are scored. Tells whether a model change helps or hurts the demo's traffic before
running the demo itself.

    python scripts/flowsim_attack_auc.py [--seeds 0 1 2] [--set field_negatives=0]

One torch thread. Prints one line of per-attack AUCs per seed, then their means.
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


def attack_aucs(seed: int, model: str, epochs: int, params: dict) -> dict[str, float]:
    train, _ = FlowSimulator(seed=seed).batch(30000)
    test, truth = FlowSimulator(seed=100 + seed, attacks=KNOWN_ATTACKS, attack_fraction=0.1).batch(30000)
    encoder = RecordEncoder(FlowSchema.load("flowsim")).fit(train)
    det = make_detector(model, epochs=epochs, batch_size=1024, device="cpu", seed=seed, **params)
    det.fit(encoder.transform(train), feature_groups=[(g.start, g.stop) for g in encoder.categorical_groups_])
    scores, truth = det.score(encoder.transform(test)), np.asarray(truth)
    normal = scores[truth == "normal"]
    return {kind: round(float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones((truth == kind).sum())],
                                            np.r_[normal, scores[truth == kind]])), 4)
            for kind in KNOWN_ATTACKS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="arn-n")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = dict(parse_assignment(item) for item in args.set)
    runs = []
    for seed in args.seeds:
        runs.append(attack_aucs(seed, args.model, args.epochs, params))
        print(json.dumps({"seed": seed, "params": params, "auc": runs[-1]}), flush=True)
    print(json.dumps({"mean": {k: round(float(np.mean([r[k] for r in runs])), 4) for k in KNOWN_ATTACKS}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
