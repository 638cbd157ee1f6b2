"""Run many `arnstream evaluate` configurations in parallel and tabulate them.

Used for the ablations in docs/results.md. Hyper-parameters are compared on the
*validation* AUC of their runs (`val_auc`), never on the test AUC that the docs report.

    python scripts/sweep.py --plan docs/experiments/ablation.txt --out results/sweep \
        --workers 12 --deadline 300 -- --device cuda --threads 1

A plan file has one job per line: `NAME DATASET MODEL EPOCHS RUNS SEED [--set k=v ...]`.
Jobs still running at the deadline are stopped; what finished is still tabulated. --resume
skips the jobs whose result is already in --out. Jobs named
NAME_s0, NAME_s1, ... (one seed each, to spread the runs over workers) form one table row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_plan(path: Path) -> list[dict]:
    jobs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, dataset, model, epochs, runs, seed, *rest = shlex.split(line)
        jobs.append({"name": name, "args": ["--dataset", dataset, "--model", model, "--epochs", epochs,
                                            "--runs", runs, "--seed", seed, *rest]})
    return jobs


def run_jobs(jobs: list[dict], out: Path, workers: int, deadline: float, extra: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pending, running = list(jobs), []
    stop_at = time.monotonic() + deadline
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            cmd = [sys.executable, "-m", "arnstream.cli", "evaluate", *job["args"], *extra,
                   "--out", str(out / f"{job['name']}.json")]
            log = open(out / f"{job['name']}.log", "w")
            running.append((job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(1)
        for item in list(running):
            job, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"done {job['name']} rc={proc.returncode}", flush=True)
        if time.monotonic() > stop_at:
            for job, proc, log in running:
                proc.kill()
                print(f"stopped at deadline: {job['name']}", flush=True)
            running.clear()
            pending.clear()


def _group(stem: str) -> str:
    """Jobs named NAME_s0, NAME_s1, ... (one seed each) are one configuration."""
    head, _, tail = stem.rpartition("_s")
    return head if head and tail.isdigit() else stem


def table(out: Path) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        for run in r["runs"]:
            groups.setdefault((r["dataset"]["name"], _group(path.stem)), []).append(run)
            for alt, a in run.get("alternatives", {}).items():
                key = (r["dataset"]["name"], f"{_group(path.stem)} [{alt} score]")
                groups.setdefault(key, []).append({**a, "fit_seconds": run["fit_seconds"],
                                                   "auprc": a.get("auprc", float("nan"))})
    rows = []
    for (ds, name), runs in groups.items():
        auc = np.array([x["auc"] for x in runs])
        rows.append((ds, name, np.mean([x["val_auc"] for x in runs]), auc.mean(), auc.std(),
                     np.mean([x["auprc"] for x in runs]), np.mean([x["fit_seconds"] for x in runs]),
                     [round(float(a), 4) for a in auc]))
    rows.sort(key=lambda x: (x[0], -x[2]))
    lines = ["| dataset | config | val AUC | test AUC (mean ± std) | AUPRC | fit s/run | per run |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for ds, name, val, auc, std, auprc, fit, per in rows:
        lines.append(f"| {ds} | {name} | {val:.4f} | {auc:.4f} ± {std:.4f} | {auprc:.4f} | {fit:.0f} | {per} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=3600, help="seconds before running jobs are stopped")
    parser.add_argument("--resume", action="store_true", help="skip jobs whose result JSON is already in --out")
    parser.add_argument("extra", nargs="*", help="arguments for every evaluate call (after --)")
    args = parser.parse_args()
    jobs = parse_plan(args.plan)
    if args.resume:
        jobs = [j for j in jobs if not (args.out / f"{j['name']}.json").exists()]
    run_jobs(jobs, args.out, args.workers, args.deadline, args.extra)
    report = table(args.out)
    (args.out / "table.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
