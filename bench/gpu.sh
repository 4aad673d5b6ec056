#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 9 minutes:
#   1. tests/test_cuda.py and tests/test_batched_conv.py: graphed, bf16, fused, batched, EMA and
#      deterministic paths against eager fp32;
#   2. bench/costs.py: one studies/gpu.toml trial as it is, with the EMA generator, with
#      deterministic algorithms, and with both: steps/s, whole-run seconds, rerun |ΔFID|;
#   3. bench/ema.py on studies/gpu.toml: the paired-difference noise FID(λ) − FID(0), live and EMA,
#      over 12 seeds (the GPU's own noise, for the verdict's power);
#   4. bench/fused_variants.py: the fused step at K = 16, 64 per variant (grouped or batched
#      convolutions, TF32, channels_last, bf16, graph/eager);
#   5. studies/gpu.toml end to end: `lambda-search run` with 32 trials fused 16 at a time.
# Beside them, on the machine's idle CPU cores: the pre-registered EMA finding
# (studies/finding-ema-*.toml, device = "cpu"), 5 workers per race, then `confirm --seeds 14` for
# each, until 30 s before the end; its storage comes back as $OUT/finding-ema.db, and what is not
# finished resumes anywhere with the same commands (docs/finding.md).
# Dry run on a CPU: OUT=/tmp/out DRY_RUN=1 bash bench/gpu.sh (tiny sizes, same code paths, no finding).
# Installs nothing from the network: Python packages the device image lacks come as wheels in
# .whl/ (carry .whl). The 2026-12 image (Python 3.12, torch 2.11) lacked these; fetch them here first:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl optuna==5.1.0 \
#     sqlalchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 mako==1.4.3 mlxtend==0.25.0 plotly==7.1.0 filelock==4.3.2
# At most 8 files come back from $OUT: gpu.log, finding.log, finding-ema.db, results.tgz (the JSON).
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
  DEVICE=cuda; MEMBERS="16 64"; STEPS=100; WIDTH=64; TRIAL=""; SEEDS=12; EMA_STEPS=""
fi
started=$(date +%s)

# The finding: 4 workers per race on the CPU cores the GPU runs leave idle, then both confirmations.
finding() {
  local deadline=$(( started + ${FINDING_SECONDS:-480} )) study worker
  left() { local seconds=$(( deadline - $(date +%s) )); echo $(( seconds > 1 ? seconds : 1 )); }
  for study in generator discriminator; do
    for worker in 1 2 3 4; do
      timeout -s TERM "$(left)" python3 -m lambda_search run studies/finding-ema-$study.toml &
    done
  done
  wait
  for study in generator discriminator; do
    timeout -s TERM "$(left)" python3 -m lambda_search confirm \
      --storage sqlite:///studies/finding-ema.db --study finding-ema-$study --top 1 --seeds 14 &
  done
  wait
  python3 -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
    studies/finding-ema.db "$OUT/finding-ema.db"
}
if [ -z "${DRY_RUN:-}" ]; then
  finding > "$OUT/finding.log" 2>&1 &
  finding_pid=$!
fi

echo "== 1. CUDA and batched-convolution tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_batched_conv.py 2>&1 | tail -15
echo "== 2. one trial: as it is, EMA, deterministic ($(( $(date +%s) - started )) s)"
timeout 90 python3 bench/costs.py --device $DEVICE --repeats 3 $TRIAL | tee "$OUT/costs.txt"
echo "== 3. paired-difference noise, live and EMA, studies/gpu.toml ($(( $(date +%s) - started )) s)"
timeout 120 python3 bench/ema.py --config studies/gpu.toml --device $DEVICE --seeds $SEEDS --timing-repeats 3 \
  $EMA_STEPS | tee "$OUT/ema.txt"
echo "== 4. fused step variants ($(( $(date +%s) - started )) s)"
timeout 120 python3 bench/fused_variants.py --device $DEVICE --members $MEMBERS --steps $STEPS --width $WIDTH \
  | tee "$OUT/fused_variants.txt"
echo "== 5. studies/gpu.toml end to end ($(( $(date +%s) - started )) s)"
if [ -z "${DRY_RUN:-}" ]; then
  study_started=$(date +%s)
  timeout 60 python3 -m lambda_search run studies/gpu.toml --storage sqlite:////tmp/gpu.db 2>&1 | tail -8
  echo "wall: $(( $(date +%s) - study_started )) s for the whole study"
  timeout 30 python3 -m lambda_search status --storage sqlite:////tmp/gpu.db --study gpu 2>&1 | tail -6
  echo "== 6. waiting for the finding ($(( $(date +%s) - started )) s)"
  wait "$finding_pid"
  tail -30 "$OUT/finding.log"
fi
tar czf "$OUT/results.tgz" bench/results/*.json 2>/dev/null

echo "== summary ($(( $(date +%s) - started )) s)"
grep -v "^repeat" "$OUT/costs.txt" 2>/dev/null
grep -E "^run|^diff_|^fid_" "$OUT/ema.txt" 2>/dev/null
grep -v "^device" "$OUT/fused_variants.txt" 2>/dev/null | head -30
