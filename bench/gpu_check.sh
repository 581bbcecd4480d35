#!/usr/bin/env bash
# GPU check, run on a CUDA machine from the repo root: the CUDA tests, the CUDA code paths (bf16 autocast,
# channels_last, compiled teacher, evaluation on the GPU) and the GPU speed figures.
#   DATA=<folder with kvasir-seg/ and cvc-clinicdb/> OUT=<results folder> bash bench/gpu_check.sh
# Wheels for packages the machine lacks can be put in .whl/ (see the device notes in the README).
set -uo pipefail
OUT=${OUT:-gpu-results}
DATA=${DATA:-../shared/datasets/polyp}
EPOCHS=${EPOCHS:-40}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
echo "== the CUDA tests: compiled teacher on a side stream (every model), class-mean methods on the GPU"
timeout 300 python3 -m pytest -q -rs --noconftest -p no:cacheprovider tests/unit/test_teacher.py \
  tests/unit/test_classmean.py 2>&1 | tee "$OUT/pytest_cuda.txt"
echo "== speed: paper U-Net 64..1024, 256x256, batch 16, bf16 autocast + channels_last"
python3 bench/speed.py --device cuda --size 256 --batch 16 --steps 10 --reps 5 --json "$OUT/speed_cuda.json" 2>&1 | tee "$OUT/speed_cuda.txt"
echo "== speed: the same in float32 without channels_last (for comparison)"
python3 bench/speed.py --device cuda --size 256 --batch 16 --steps 10 --reps 5 --no-amp --no-channels-last \
  --teacher-modes eager compile+stream 2>&1 | tee "$OUT/speed_cuda_fp32.txt"
echo "== polyp cross-dataset, paper U-Net at 256x256, $EPOCHS epochs, 3 seeds"
timeout "${POLYP_TIMEOUT:-420}" python3 bench/polyp_cross.py --data "$DATA" --out /tmp/polyp_gpu --device cuda \
  --size 256 --widths 64 128 256 512 1024 --epochs "$EPOCHS" --batch 16 2>&1 | tee "$OUT/polyp_gpu.log"
cp /tmp/polyp_gpu/report.md /tmp/polyp_gpu/report.json "$OUT/" 2>/dev/null || true
