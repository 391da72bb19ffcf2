#!/usr/bin/env bash
# The prepared GPU check (issue 12, item 7); benchmarks/gpu/README.md says what it measures.
#   OUT=/some/dir bash benchmarks/gpu/run.sh           real sizes, meant for one H200, ends within ~7.5 min
#   OUT=/tmp/gpu-smoke bash benchmarks/gpu/run.sh --smoke   tiny sizes, any machine (CPU is fine)
# Writes $OUT/gpu.md, $OUT/gpu.json and $OUT/log.txt. Each part is its own process under its own
# time limit, so one failure is recorded and the rest still run; the script itself exits 0.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
SMOKE=${VEMBED_GPU_SMOKE:-0}
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
FLAG=$([[ $SMOKE == 1 ]] && echo --smoke)
OUT=${OUT:-$ROOT/gpu-check-out}
WORK=$(mktemp -d /tmp/vembed-gpu.XXXXXX)
mkdir -p "$OUT" "$WORK/logs"
START=$(date +%s)
# Overall deadline (7.5 min on the GPU). A smoke run gets 3x each part's limit: on a shared
# 2-core CPU, importing torch and sentence-transformers alone can take a minute.
SCALE=$([[ $SMOKE == 1 ]] && echo 3 || echo 1)
DEADLINE=$((START + ${GPU_CHECK_SECONDS:-$((450 * SCALE))}))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true \
  HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 MPLBACKEND=Agg VEMBED_CACHE_DIR=$WORK/cache
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }

setup() {  # carried wheels, then the project
  say "vembed-bench GPU check, smoke=$SMOKE, work folder $WORK, python $(command -v python3)"

  # Carried wheels (bitsandbytes for QLoRA; hatchling & co. so the editable install builds offline).
  if compgen -G ".whl/*.whl" > /dev/null; then
    say "installing carried wheels: $(cd .whl && echo *.whl)"
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else say "wheel install FAILED (QLoRA will be skipped)"; fi
  fi
  # The project itself (no network: no build isolation, no index). The parts also put the
  # checkout first on sys.path, so a failed install is recorded but costs nothing else.
  if (cd /tmp && python3 -c "import sys, vembed_bench; sys.exit(not vembed_bench.__file__.startswith('$ROOT/'))") 2>/dev/null; then
    GPU_CHECK_INSTALL="already importable from this checkout"
  elif python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .; then
    GPU_CHECK_INSTALL="pip install --no-deps --no-build-isolation --no-index -e . succeeded"
  else
    GPU_CHECK_INSTALL="pip install -e . FAILED; the parts import vembed_bench from the checkout"
  fi
  export GPU_CHECK_INSTALL
  say "$GPU_CHECK_INSTALL"
}

run_part() {  # NAME LIMIT_SECONDS: run benchmarks/gpu/NAME.py under min(LIMIT, time left)
  local name=$1 budget=$(( $2 * SCALE )) left=$(( DEADLINE - $(date +%s) - 15 ))
  local limit=$(( budget < left ? budget : left )) t0
  if (( limit < 15 )); then
    say "$name: not started (${left}s left before the overall deadline)"
    printf '%s\tdeadline\t0\t%s\n' "$name" "$budget" >> "$WORK/status.tsv"; return
  fi
  say "$name: start (limit ${limit}s)"
  t0=$(date +%s)
  timeout -k 10 "$limit" python3 "benchmarks/gpu/$name.py" --work "$WORK" $FLAG 2>&1 | tee "$WORK/logs/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$WORK/status.tsv"
  say "$name: exit $rc after $(( $(date +%s) - t0 ))s"
}

parts() {
  run_part env 30
  run_part prepare 45
  run_part encode_minilm 75
  run_part encode_decoder 100
  run_part search 80
  run_part faiss_gpu 20
  run_part qlora 150
  run_part bidirectional 60
  run_part auto_batch 60
  python3 benchmarks/gpu/report.py --work "$WORK" --out "$OUT" --started "$START" $FLAG
  say "done: $OUT/gpu.md"
}

{ setup; parts; } 2>&1 | tee "$OUT/log.txt"
