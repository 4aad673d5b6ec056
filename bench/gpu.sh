#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 8 minutes (the GPU-throughput issue):
#   1. tests/test_cuda.py and tests/test_batched_conv.py: graphed, bf16, fused and batched paths against eager fp32;
#   2. bench/fused_variants.py: the fused step at K = 16, 64, 256 per variant (grouped or batched
#      convolutions, TF32, channels_last, bf16, graph/eager): steps/s, TFLOP/s, share of the measured
#      fp32/bf16 peaks, MiB per member;
#   3. bench/fused_parity.py: paired FID of the faster variants against the fp32 grouped path
#      (3 seeds × 2 λ, 2,000 steps), beside the noise of the same computation run twice;
#   4. studies/gpu.toml end to end: `lambda-search run` with 32 trials fused 16 at a time.
# Dry run on a CPU: OUT=/tmp/out DRY_RUN=1 bash bench/gpu.sh (tiny sizes, same code paths).
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

if [ -n "${DRY_RUN:-}" ]; then
  DEVICE=cpu; MEMBERS="2 4"; STEPS=3; PARITY_STEPS=5; SAMPLES=200; WIDTH=8
else
  DEVICE=cuda; MEMBERS="16 64 256"; STEPS=100; PARITY_STEPS=2000; SAMPLES=5000; WIDTH=64
fi

echo "== 1. CUDA and batched-convolution tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_batched_conv.py 2>&1 | tail -15
echo "== 2. fused step variants"
timeout 200 python3 bench/fused_variants.py --device $DEVICE --members $MEMBERS --steps $STEPS --width $WIDTH \
  | tee "$OUT/fused_variants.txt"
echo "== 3. FID parity of the variants"
timeout 120 python3 bench/fused_parity.py --device $DEVICE --steps $PARITY_STEPS --fid-samples $SAMPLES \
  --width $WIDTH | tee "$OUT/fused_parity.txt"
echo "== 4. studies/gpu.toml end to end"
if [ -z "${DRY_RUN:-}" ]; then
  started=$(date +%s)
  timeout 60 python3 -m lambda_search run studies/gpu.toml --storage sqlite:////tmp/gpu.db 2>&1 | tail -8
  echo "wall: $(( $(date +%s) - started )) s for the whole study"
  timeout 30 python3 -m lambda_search status --storage sqlite:////tmp/gpu.db --study gpu 2>&1 | tail -6
fi
cp bench/results/fused-*.json "$OUT"/ 2>/dev/null

echo "== summary"
cat "$OUT/fused_variants.txt" "$OUT/fused_parity.txt" 2>/dev/null | grep -v "^device" | head -60
