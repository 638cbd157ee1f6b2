#!/bin/bash
# The GPU sweep behind docs/results.md: smoke test, KDDCUP99_Rev ablation (phase 1), then the
# two best configurations by validation AUC on all datasets with the baselines (phase 2).
# Usage: ARNSTREAM_DATA_DIR=... OUT=dir bash docs/experiments/device_sweep.sh
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-results}
W=${WORKERS:-14}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, sklearn, pandas, safetensors, yaml; print('torch', torch.__version__, torch.cuda.is_available())"
python3 -m arnstream.cli evaluate --dataset synthetic --model arn-g --epochs 1 --runs 1 --device cuda \
  --set model.params.output=clamp || { echo "SMOKE TEST FAILED"; exit 1; }
mkdir -p $OUT/p1 $OUT/p2
python3 scripts/sweep.py --plan docs/experiments/ablation_kddrev.txt --out $OUT/p1 --workers $W \
  --deadline ${P1_DEADLINE:-220} -- --device cuda --threads 1
python3 docs/experiments/phase2_plan.py $OUT/p1 docs/experiments/ablation_kddrev.txt 2 > $OUT/phase2.txt
cat $OUT/phase2.txt
python3 scripts/sweep.py --plan $OUT/phase2.txt --out $OUT/p2 --workers $W \
  --deadline ${P2_DEADLINE:-280} -- --device cuda --threads 1
tar czf $OUT/sweep.tgz -C $OUT p1 p2 phase2.txt
