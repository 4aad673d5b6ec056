#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 9 minutes:
#   1. tests/test_cuda.py and tests/test_batched_conv.py: graphed, bf16, fused, batched, EMA and
#      deterministic paths against eager fp32;
#   2. the pre-registered GPU EMA finding (studies/finding-gpu-ema-*.toml: two races of 56 runs,
#      20 verdict seeds each), 4 workers per race on the GPU, until 330 s; its storage comes back as
#      $OUT/finding-gpu-ema.db, and what is not finished resumes anywhere with the same commands;
#   3. bench/costs.py: one studies/gpu.toml trial as it is, with the EMA generator, with
#      deterministic algorithms, and with both: steps/s, whole-run seconds, rerun |ΔFID|;
#   4. bench/ema.py on studies/gpu.toml: the paired-difference noise FID(λ) − FID(0), live and EMA;
#   5. bench/fused_variants.py at K = 64: grouped/batched convolutions in fp32, TF32, bf16;
#   6. studies/gpu.toml end to end: `lambda-search run` with 32 trials fused 16 at a time.
# 3–6 were measured on 2026-12-04 (bench/RESULTS.md); they run after the finding, with what is left.
# Dry run on a CPU: OUT=/tmp/out DRY_RUN=1 bash bench/gpu.sh (tiny sizes, same code paths, no finding).
# Installs nothing from the network: Python packages the device image lacks come as wheels in
# .whl/ (carry .whl). The 2026-12 image (Python 3.12, torch 2.11) lacked these; fetch them here first:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl optuna==5.1.0 \
#     sqlalchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 mako==1.4.3 mlxtend==0.25.0 plotly==7.1.0 filelock==4.3.2
# At most 8 files come back from $OUT: gpu.log, finding.log, finding-gpu-ema.db, results.tgz (the JSON), the .txt tables.
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
  DEVICE=cpu; MEMBERS="2 4"; STEPS=3; WIDTH=8; TRIAL="--steps 20 --fid-samples 200"; SEEDS=2; EMA_STEPS="--steps 20"
else
  DEVICE=cuda; MEMBERS="64"; STEPS=50; WIDTH=64; TRIAL=""; SEEDS=6; EMA_STEPS=""
fi
started=$(date +%s)

# The pre-registered GPU finding (studies/finding-gpu-ema-*.toml): 4 workers per race on the same GPU.
finding() {
  local deadline=$(( started + ${FINDING_SECONDS:-330} )) study worker
  left() { local seconds=$(( deadline - $(date +%s) )); echo $(( seconds > 1 ? seconds : 1 )); }
  for study in generator discriminator; do
    for worker in 1 2 3 4; do
      timeout -s TERM "$(left)" python3 -m lambda_search run studies/finding-gpu-ema-$study.toml &
    done
  done
  wait
  python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
    studies/finding-gpu-ema.db "$OUT/finding-gpu-ema.db"
}
echo "== 1. CUDA and batched-convolution tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_batched_conv.py 2>&1 | tail -15
if [ -z "${DRY_RUN:-}" ]; then
  echo "== 2. the pre-registered GPU EMA finding ($(( $(date +%s) - started )) s)"
  finding > "$OUT/finding.log" 2>&1
  grep -E "race verdict|holds" "$OUT/finding.log" | sort | uniq
fi
echo "== 3. one trial: as it is, EMA, deterministic ($(( $(date +%s) - started )) s)"
timeout 60 python3 bench/costs.py --device $DEVICE --repeats 2 $TRIAL | tee "$OUT/costs.txt"
echo "== 4. paired-difference noise, live and EMA, studies/gpu.toml ($(( $(date +%s) - started )) s)"
timeout 60 python3 bench/ema.py --config studies/gpu.toml --device $DEVICE --seeds $SEEDS --timing-repeats 1 \
  $EMA_STEPS | tee "$OUT/ema.txt"
echo "== 5. fused step variants ($(( $(date +%s) - started )) s)"
timeout 45 python3 bench/fused_variants.py --device $DEVICE --members $MEMBERS --steps $STEPS --width $WIDTH \
  --variants grouped-fp32 grouped-tf32 batched-tf32 grouped-bf16 --repeats 2 \
  | tee "$OUT/fused_variants.txt"
echo "== 6. studies/gpu.toml end to end ($(( $(date +%s) - started )) s)"
if [ -z "${DRY_RUN:-}" ]; then
  study_started=$(date +%s)
  timeout 60 python3 -m lambda_search run studies/gpu.toml --storage sqlite:////tmp/gpu.db 2>&1 | tail -8
  echo "wall: $(( $(date +%s) - study_started )) s for the whole study"
  timeout 30 python3 -m lambda_search status --storage sqlite:////tmp/gpu.db --study gpu 2>&1 | tail -6
fi
tar czf "$OUT/results.tgz" bench/results/*.json 2>/dev/null

echo "== summary ($(( $(date +%s) - started )) s)"
grep -v "^repeat" "$OUT/costs.txt" 2>/dev/null
grep -E "^run|^diff_|^fid_" "$OUT/ema.txt" 2>/dev/null
grep -v "^device" "$OUT/fused_variants.txt" 2>/dev/null | head -30
