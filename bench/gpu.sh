#!/usr/bin/env bash
# Everything that needs a GPU, in one call (sections 3 and 4 of the fast-sweeps issue):
#   1. tests/test_cuda.py: graph replay, bf16 and fused members against eager fp32;
#   2. bench/single.py: one trial's steps/s per variant, fraction of the measured peak, bf16's FID;
#   3. bench/fused.py: K fused trials vs K sequential ones (graphed, then eager for K=16);
#   4. studies/gpu.toml end to end: `lambda-search run` with 32 trials fused 16 at a time.
# Installs nothing from the network: Python packages the device image lacks come as wheels in
# .whl/ (a LeNet cache may ride in .whl/cache/). Prints a short table last; logs and JSON under $OUT.
# The 2026-11 image (Python 3.12, torch 2.11) lacked these; fetch them here before the call:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl optuna==5.0.0 sqlalchemy==2.1.9 alembic==1.20.1 \
#     colorlog==6.12.0 mako==1.4.3 mlxtend==0.25.0 plotly==7.1.0
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
mkdir -p "$OUT" bench/results
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LAMBDA_SEARCH_CACHE=/tmp/lambda-search-cache
mkdir -p "$LAMBDA_SEARCH_CACHE" && cp .whl/cache/* "$LAMBDA_SEARCH_CACHE"/ 2>/dev/null
if ! python3 -c "import optuna, mlxtend, plotly" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
exec > >(tee "$OUT/gpu.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
date -u +%FT%TZ

echo "== 1. CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15
echo "== 2. one trial"
timeout 200 python3 bench/single.py --device cuda | tee "$OUT/single.txt"
echo "== 3. fused"
timeout 150 python3 bench/fused.py --device cuda --members 1 4 16 64 --steps 300 | tee "$OUT/fused.txt"
timeout 100 python3 bench/fused.py --device cuda --members 16 --steps 300 --no-cuda-graph | tee -a "$OUT/fused.txt"
echo "== 4. studies/gpu.toml end to end"
started=$(date +%s)
timeout 200 python3 -m lambda_search run studies/gpu.toml --storage sqlite:////tmp/gpu.db 2>&1 | tail -8
echo "wall: $(( $(date +%s) - started )) s for the whole study (LeNet cached: $(ls "$LAMBDA_SEARCH_CACHE" | tr '\n' ' '))"
timeout 60 python3 -m lambda_search status --storage sqlite:////tmp/gpu.db --study gpu 2>&1 | tail -6
cp bench/results/*-cuda*.json "$OUT"/ 2>/dev/null

echo "== summary"
cat "$OUT/single.txt" "$OUT/fused.txt" 2>/dev/null | grep -v "^device" | head -40
