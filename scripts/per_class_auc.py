"""One paper split, one fit, and the test AUC of normals against each attack class.

Where `arnstream evaluate` says how well a detector does, this says *where* it fails: the
probes behind docs/results.md's "Log-scaled counts and a discriminator ensemble".

    python scripts/per_class_auc.py --dataset kddcup99-rev --seed 2 --model arn-n --epochs 30 \\
        [--model-seed 7] [--linear] [--set discriminators=1 --set d_width=128]

--linear ignores the schema's `scale: log` (min-max on raw values, as before 2026-11-29);
--model-seed initialises the model differently on the same split. One torch thread.
For ARN it also prints the test AUC of each part of the model: the discriminator alone,
the reconstruction error alone, and the combined score (score_mode=combined).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.config import parse_assignment  # noqa: E402
from arnstream.data import load_dataset, paper_split  # noqa: E402
from arnstream.features import RecordEncoder  # noqa: E402
from arnstream.features.columns import take  # noqa: E402
from arnstream.models import make_detector  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kddcup99-rev")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed")
    parser.add_argument("--model-seed", type=int, default=None, help="the model's seed (default: --seed)")
    parser.add_argument("--model", default="arn-n")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--linear", action="store_true", help="ignore the schema's scale: log")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE")
    default_data = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--data-dir", default=os.environ.get("ARNSTREAM_DATA_DIR", default_data))
    args = parser.parse_args()
    torch.set_num_threads(1)

    ds = load_dataset(args.dataset, Path(args.data_dir))
    schema = ds.schema
    if args.linear:
        schema = dataclasses.replace(schema, fields=tuple(dataclasses.replace(f, scale="linear")
                                                          for f in schema.fields))
    split = paper_split(ds.y, args.seed)
    encoder = RecordEncoder(schema).fit(take(ds.columns, split.train))

    def encode(index):
        return encoder.transform(take(ds.columns, index))

    params = dict(parse_assignment(item) for item in args.set)
    if args.model != "iforest":
        params.setdefault("epochs", args.epochs)
    model_seed = args.seed if args.model_seed is None else args.model_seed
    detector = make_detector(args.model, seed=model_seed, **params)
    val_normal = split.val[ds.y[split.val] == 0]
    started = time.perf_counter()
    detector.fit(encode(split.train), feature_groups=[(g.start, g.stop) for g in encoder.categorical_groups_],
                 X_val=encode(val_normal))
    fit_seconds = time.perf_counter() - started

    y, classes = ds.y[split.test], ds.classes[split.test]
    X_test = encode(split.test)
    scores = detector.score(X_test)
    per_class = {}
    for name in np.unique(classes[y == 1]):
        attack = classes == name
        if attack.sum() >= 5:  # fewer rows give no meaningful AUC
            pick = (y == 0) | attack
            auc = roc_auc_score(y[pick], scores[pick])
            per_class[str(name)] = {"rows": int(attack.sum()), "auc": round(float(auc), 3)}
    report = {"dataset": args.dataset, "seed": args.seed, "model_seed": model_seed, "model": args.model,
              "linear": args.linear, "params": params, "fit_seconds": round(fit_seconds, 1),
              "auc": round(float(roc_auc_score(y, scores)), 4), "per_class": per_class}
    if hasattr(detector, "components"):
        d_logit, log_rec = detector.components(X_test)
        combined = detector.alternative_scores(X_test)["combined"]
        report["parts"] = {name: round(float(roc_auc_score(y, v)), 4) for name, v in
                           (("discriminator", d_logit), ("reconstruction", log_rec), ("combined", combined))}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
