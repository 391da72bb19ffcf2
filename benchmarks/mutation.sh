#!/usr/bin/env bash
# Mutation testing of the core modules: do the fast tests notice when a number-computing line is
# changed? mutmut 3 rewrites one operator, constant or call at a time (a "mutant") and runs the
# tests that execute the changed function; a mutant the tests still pass on ("survived") marks
# code whose values no test checks. Not run in CI (about 10 minutes for all modules on 2 cores);
# run it after changing a core module and keep every module at >= 90% killed. A survivor is
# either a test gap (add a test that checks the value) or an equivalent mutant (list it, with
# the reason, in benchmarks/mutation_equivalents.tsv).
#
# Setup, once, into the project venv (mutmut is deliberately not a project dependency):
#   uv sync --frozen --extra torch --extra vision --extra llm --extra train --extra faiss \
#       --extra mteb --extra report --extra demo
#   uv pip install mutmut==3.8.1
#
# Usage:
#   benchmarks/mutation.sh                         # every module in DEFAULT_MODULES
#   benchmarks/mutation.sh vembed_bench/metrics.py # only these modules (each needs a TESTS entry)
#   MUTATION_TESTS="tests/test_cache_results.py" benchmarks/mutation.sh vembed_bench/cache.py
#                                                  # a module without a TESTS entry
# Environment: MUTATION_JOBS (parallel mutants, default 2), MUTATION_WORKDIR (scratch copies,
# default .cache/mutation), MUTATION_REPORT (default benchmarks/results/mutation.md when the
# default modules are run, else $MUTATION_WORKDIR/mutation.md).
#
# Each module is tested in its own scratch copy of the working tree (vembed_bench/, tests/,
# tasks/, trainers/, pyproject.toml + a [tool.mutmut] section), so the worktree is never
# modified. The report lists, per module, killed / total, the equivalent mutants (named with a
# reason in benchmarks/mutation_equivalents.tsv) and the diff of every other survivor.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Module -> the fast test files that check its values (seconds each; never the end-to-end ones).
declare -A TESTS=(
  [vembed_bench/metrics.py]="tests/test_metrics.py"
  [vembed_bench/search/topk.py]="tests/test_topk.py tests/test_search.py"
  [vembed_bench/results.py]="tests/test_results_record.py tests/test_runner.py"
  [vembed_bench/evaluation/identity.py]="tests/test_results_record.py tests/test_runner.py tests/test_matryoshka.py"
  [vembed_bench/data/files.py]="tests/test_data_files.py tests/test_data_bad_inputs.py tests/test_beir_loader.py"
  [vembed_bench/data/beir.py]="tests/test_beir_loader.py tests/test_data_files.py tests/test_data_bad_inputs.py"
  [vembed_bench/data/loading.py]="tests/test_data_loading.py tests/test_beir_loader.py tests/test_data_bad_inputs.py tests/test_runner.py"
  # vembed_bench/cache.py: add "tests/test_cache_results.py" once its rewrite has landed.
)
DEFAULT_MODULES=(
  vembed_bench/metrics.py
  vembed_bench/search/topk.py
  vembed_bench/results.py
  vembed_bench/evaluation/identity.py
  vembed_bench/data/files.py
  vembed_bench/data/beir.py
  vembed_bench/data/loading.py
)

PY="$ROOT/.venv/bin/python"
MUTMUT="$ROOT/.venv/bin/mutmut"
if [[ ! -x "$MUTMUT" ]]; then
  echo "error: mutmut is not in .venv; run: uv pip install mutmut==3.8.1" >&2
  exit 2
fi

if [[ $# -gt 0 ]]; then
  MODULES=("$@")
  default_report="${MUTATION_WORKDIR:-$ROOT/.cache/mutation}/mutation.md"
else
  MODULES=("${DEFAULT_MODULES[@]}")
  default_report="$ROOT/benchmarks/results/mutation.md"
fi
WORKDIR="${MUTATION_WORKDIR:-$ROOT/.cache/mutation}"
REPORT="${MUTATION_REPORT:-$default_report}"
JOBS="${MUTATION_JOBS:-2}"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# mutmut forks each mutant from a process that already ran the tests; an OpenMP pool (faiss,
# torch) started there deadlocks in the child and every such mutant would "time out". One thread
# starts no pool (and suits this 2-core machine).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export VEMBED_CACHE_DIR="$WORKDIR/vembed-cache"
mkdir -p "$WORKDIR"

toml_list() {  # toml_list a b c -> ["a", "b", "c"]
  local out="" item
  for item in "$@"; do out+="${out:+, }\"$item\""; done
  printf '[%s]' "$out"
}

report_args=()
for module in "${MODULES[@]}"; do
  [[ -f "$module" ]] || { echo "error: $module not found (give paths like vembed_bench/metrics.py)" >&2; exit 2; }
  tests="${TESTS[$module]:-${MUTATION_TESTS:-}}"
  [[ -n "$tests" ]] || { echo "error: no tests mapped to $module; add it to TESTS in $0 or set MUTATION_TESTS" >&2; exit 2; }
  read -r -a test_files <<<"$tests"
  for t in "${test_files[@]}"; do [[ -f "$t" ]] || { echo "error: $t (mapped to $module) not found" >&2; exit 2; }; done

  slug="${module//\//_}"; slug="${slug%.py}"
  scratch="$WORKDIR/$slug"
  rm -rf "$scratch"
  mkdir -p "$scratch"
  cp -r vembed_bench tests tasks trainers pyproject.toml "$scratch/"
  find "$scratch" -name __pycache__ -prune -exec rm -rf {} +
  cat >>"$scratch/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["vembed_bench"]
only_mutate = $(toml_list "$module")
also_copy = ["tasks", "trainers"]
timeout_multiplier = 5.0
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
pytest_add_cli_args_test_selection = $(toml_list "${test_files[@]}")
EOF

  echo "== $module  (tests: $tests)"
  start=$SECONDS
  (cd "$scratch" && "$MUTMUT" run --max-children "$JOBS" >run.log 2>&1) || {
    echo "error: mutmut failed for $module; see $scratch/run.log" >&2; tail -20 "$scratch/run.log" >&2; exit 1; }
  echo "   $((SECONDS - start)) s"
  report_args+=("$module" "$scratch" "$tests")
done

"$PY" "$ROOT/benchmarks/mutation_report.py" --output "$REPORT" \
  --equivalents "$ROOT/benchmarks/mutation_equivalents.tsv" \
  --command "benchmarks/mutation.sh $*" -- "${report_args[@]}"
echo "report: $REPORT"
