#!/usr/bin/env bash
# Paper-scale end-to-end cost on one GPU (8 minutes): run from the repo root on a CUDA machine.
#   DATA=<folder with polyp/ and breast-us/> OUT=<results folder> bash bench/gpu_scale.sh
# Wheels for packages the machine lacks can be put in .whl/ (as for bench/gpu_check.sh).
set -uo pipefail
OUT=${OUT:-gpu-scale}
DATA=${DATA:-../shared/datasets}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# the budget leaves ~1 minute of the 8 for start-up and copying; phases that would not fit are skipped
timeout "${SCALE_TIMEOUT:-470}" python3 bench/gpu_scale.py --data "$DATA" --out /tmp/gpu_scale --budget-s "${BUDGET:-420}" \
  --epochs "${EPOCHS:-15}" --seeds ${SEEDS:-0} "$@" 2>&1 | tee "$OUT/gpu_scale.log"
cp /tmp/gpu_scale/summary.json /tmp/gpu_scale/summary.md "$OUT/" 2>/dev/null || true
