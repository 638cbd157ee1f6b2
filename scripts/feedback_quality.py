"""How much do a few analyst labels teach? The feedback loop offline, over several seeds.

Per seed: train a model on simulated normal traffic (as `arnstream train` does, so alerting
on training.score_mode; D-scored first models before 2026-11-30, 17:00 UTC); score live traffic with 1% `beacon`
attacks (which that model ranks below normal traffic) into a feedback store; label K of the
scored records (beacons as anomalies, a few normal records as confirmed normals); retrain
through the real retraining and gate code; then score fresh traffic no model saw with both
versions. Also retrains on inverted labels, which the gate must reject.

    python scripts/feedback_quality.py [--seeds 0,1,2] [--labels 20] [--live 8000] [--attacks beacon,...]
                                      [--normal 6000] [--epochs 8] [--retrain-epochs 16] [--warm-start]
                                      [--retrain-lr-d 1e-4] [--score-mode combined|either|discriminator]
                                      [--inverted-first]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arnstream.config import load_config  # noqa: E402
from arnstream.feedback import FeedbackStore, make_label, retrain  # noqa: E402
from arnstream.feedback.gate import score_records  # noqa: E402
from arnstream.registry import Registry  # noqa: E402
from arnstream.schema import FlowSchema  # noqa: E402
from arnstream.stream.simulator import FlowSimulator  # noqa: E402
from arnstream.trainer import alerting_params, train_on_records  # noqa: E402


def quality(artifact, seed: int, attacks: tuple[str, ...]) -> dict:
    """Beacon AUC, FPR and beacon recall on fresh traffic; AUC and recall of every other attack too."""
    from sklearn.metrics import roc_auc_score

    records, truth = FlowSimulator(seed=1000 + seed, attacks=attacks, attack_fraction=min(0.5, 0.2 * len(attacks)),
                                   prefix="fresh").batch(5000 * len(attacks))
    kinds = np.array(truth, dtype=object)
    s = score_records(artifact, records)
    thr = artifact.detector.threshold_
    normal = kinds == "normal"
    out = {"fpr": float((s[normal] > thr).mean())}
    for kind in attacks:
        pick = normal | (kinds == kind)
        out[f"auc_{kind}"] = roc_auc_score(kinds[pick] == kind, s[pick])
        out[f"recall_{kind}"] = float((s[kinds == kind] > thr).mean())
    out["auc"], out["recall"] = out["auc_beacon"], float((s[kinds == "beacon"] > thr).mean())
    return out


def one_seed(seed: int, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"feedback-q{seed}-"))
    cfg = load_config(None, {}, {"training.epochs": args.epochs, "training.batch_size": 256,
                                 "runtime.device": "cpu", "retrain.epochs": args.retrain_epochs,
                                 "training.score_mode": args.score_mode,
                                 "retrain.warm_start": args.warm_start,
                                 "retrain.params": {"lr_d": args.retrain_lr_d} if args.retrain_lr_d else {},
                                 "registry.dir": str(work / "registry"),
                                 "feedback.store": str(work / "store.sqlite3")})
    registry = Registry(cfg.registry.dir)
    normal, _ = FlowSimulator(seed=seed, prefix="train").batch(args.normal)
    first = train_on_records(normal, FlowSchema.load("flowsim"), cfg, alerting_params(cfg), registry=registry,
                             source={"script": "feedback_quality"}, seed=seed).version
    v1 = registry.load(first)
    attacks = tuple(args.attacks.split(","))
    live, truth = FlowSimulator(seed=100 + seed, attacks=attacks, attack_fraction=0.01 * len(attacks),
                                prefix="live").batch(args.live)
    scores = score_records(v1, live)
    store = FeedbackStore(cfg.feedback.store)
    store.put_scored([(r["flow_id"], first, float(s), bool(s > v1.detector.threshold_), orjson.dumps(r))
                      for r, s in zip(live, scores)])
    n_anomaly = round(args.labels * 0.7)
    beacons = [r["flow_id"] for r, t in zip(live, truth) if t == "beacon"][:n_anomaly]
    normals = [r["flow_id"] for r, t in zip(live, truth) if t == "normal"][:args.labels - len(beacons)]
    for rid in beacons:
        store.add_label(make_label(rid, "anomaly", "script"))
    for rid in normals:
        store.add_label(make_label(rid, "normal", "script"))
    if args.inverted_first:  # judged against the first model, which ranks the labelled attack at chance
        bad = retrain(cfg, store, registry, seed=seed, invert_labels=True)
    good = retrain(cfg, store, registry, seed=seed)
    after = quality(registry.load(good.candidate), seed, attacks) if good.candidate else None
    if not args.inverted_first:
        bad = retrain(cfg, store, registry, seed=seed, invert_labels=True)
    store.close()
    return {"seed": seed, "before": quality(v1, seed, attacks), "after": after, "outcome": good.outcome,
            "bad_outcome": bad.outcome, "gate": good.gate.summary() if good.gate else good.detail,
            "seconds": good.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--labels", type=int, default=20)
    ap.add_argument("--live", type=int, default=8000, help="live records scored into the store")
    ap.add_argument("--attacks", default="beacon", help="attacks in live traffic, 1%% each (beacon first)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--retrain-epochs", type=int, default=16)
    ap.add_argument("--normal", type=int, default=6000, help="normal records the first model trains on")
    ap.add_argument("--warm-start", action="store_true", help="retrain from the current model (retrain.warm_start)")
    ap.add_argument("--retrain-lr-d", type=float, help="discriminator learning rate when retraining")
    ap.add_argument("--inverted-first", action="store_true",
                    help="retrain on inverted labels first, against the first model (docs/feedback.md, Not solved)")
    ap.add_argument("--score-mode", default=load_config(None, {}, {}).training.score_mode,
                    help="what both models alert on (training.score_mode)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    rows = [one_seed(int(s), args) for s in args.seeds.split(",")]
    print(f"| seed | beacon AUC before | after {args.labels} labels | FPR before | after | recall after "
          "| good candidate | inverted-label candidate | retrain s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        b, a = r["before"], r["after"] or {"auc": float("nan"), "fpr": float("nan"), "recall": float("nan")}
        print(f"| {r['seed']} | {b['auc']:.3f} | {a['auc']:.3f} | {b['fpr']:.4f} | {a['fpr']:.4f} | "
              f"{a['recall']:.3f} | {r['outcome']} | {r['bad_outcome']} | {r['seconds']:.0f} |")
    for r in rows:
        print(f"seed {r['seed']} gate: {r['gate']}")
    others = [k[4:] for k in rows[0]["before"] if k.startswith("auc_") and k != "auc_beacon"]
    for r in rows:
        if others and r["after"]:
            print(f"seed {r['seed']} other attacks, AUC (recall at the threshold) before -> after: " + ", ".join(
                f"{k} {r['before']['auc_' + k]:.3f} ({r['before']['recall_' + k]:.2f}) -> "
                f"{r['after']['auc_' + k]:.3f} ({r['after']['recall_' + k]:.2f})" for k in others))


if __name__ == "__main__":
    main()
