"""Phase 2 of the device sweep: the best ARN configurations of phase 1 (by validation AUC
on KDDCUP99_Rev, seeds 100-102) on every dataset, next to the baselines, seeds 0-2."""

import json
import shlex
import sys
from pathlib import Path

phase1, plan, top = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
lines = {}
for line in plan.read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        parts = shlex.split(line)
        lines[parts[0]] = parts
scored = []
for path in phase1.glob("*.json"):
    r = json.loads(path.read_text())
    if r["spec"]["model"].startswith("arn"):
        scored.append((r["summary"]["val_auc"]["mean"], path.stem))
best = [name for _, name in sorted(scored, reverse=True)[:top]]
print(f"# chosen on validation AUC: {best}", file=sys.stderr)
datasets = [("kddcup99-inv", 15), ("kddcup99", 15), ("kddcup99-rev", 30), ("nsl-kdd", 60), ("bank", 60)]
for ds, epochs in datasets:
    for name in best:
        _, _, model, _, runs, _, *rest = lines[name]
        print(shlex.join([f"{ds}_{name[4:]}", ds, model, str(epochs), runs, "0", *rest]))
    for base in ("ae", "iforest"):
        print(shlex.join([f"{ds}_{base}", ds, base, str(epochs), "3", "0"]))
