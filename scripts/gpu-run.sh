#!/usr/bin/env bash
# The one script to run on the H100 machine (no cargo there), from the repository root, with
# .device/ carried (build it here with scripts/gpu-pack.sh). Steps, in order:
#   tests      the ignored GPU tests, smallest first (--include-ignored --test-threads=1),
#              tee'd to $OUT/gpu-tests.log
#   sanitizer  compute-sanitizer memcheck on gpu_sanitizer_small ($OUT/sanitizer.log) and
#              gpu_mlp_sanitizer_small ($OUT/sanitizer-mlp.log)
#   bench      `unweight bench` ($OUT/bench/results/<date>-<gpu>.{json,md}, $OUT/bench.log)
#   tune       `unweight tune --exhaustive` on 2 shapes x 3 buckets: descent vs exhaustive search
#              ($OUT/bench/results/<date>-tune-exhaustive.log), then `unweight tune` over the
#              bench's shapes and batches into the same table $OUT/tuning.json ($OUT/tune.log)
#   bench-auto `unweight bench --table $OUT/tuning.json`: plan_auto beside the default plans
#              (run after tune on the same machine; $OUT/bench-auto/results/, $OUT/bench-auto.log)
#   bench-mlp  `unweight bench-mlp` (with --table $OUT/tuning.json when tune ran): the 32-layer
#              Llama-3.1-8B MLP stack beside cuBLAS ($OUT/bench-mlp/results/, $OUT/bench-mlp.log)
# Usage: bash scripts/gpu-run.sh [tests] [sanitizer] [bench] [tune] [bench-auto] [bench-mlp]
#        (default: the first three)
# One device command may run 10 minutes: run `tests sanitizer` and `bench` as two commands.
# Each step has a timeout (a hung kernel must not eat the session): UNWEIGHT_STEP_TIMEOUT (s).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev="$root/.device"
OUT="${OUT:-$root/gpu-out}"
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests sanitizer bench)
step_timeout="${UNWEIGHT_STEP_TIMEOUT:-420}"
[ -f "$dev/unweight.xz" ] || { echo "gpu-run: $dev/unweight.xz missing; run scripts/gpu-pack.sh on the dev machine and carry .device" >&2; exit 2; }

# Unpack the xz-packed executables (gpu-pack.sh) to the machine's disk.
unxz_to() {
  xz -dc "$1" > "$2" 2>/dev/null \
    || python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"
}
bin=/tmp/unweight-bin
mkdir -p "$bin/tests"
unxz_to "$dev/unweight.xz" "$bin/unweight" && chmod +x "$bin/unweight"
for f in "$dev"/tests/*.xz; do
  n=$(basename "$f" .xz)
  unxz_to "$f" "$bin/tests/$n" && chmod +x "$bin/tests/$n"
done

# The JIT cache lives on the machine's disk: the first test process compiles, the rest load.
export UNWEIGHT_CACHE_DIR="${UNWEIGHT_CACHE_DIR:-/tmp/unweight-jit}"
export RUST_BACKTRACE=1
if [ -f "$dev/minilm.safetensors.xz" ] && [ ! -f /tmp/minilm.safetensors ]; then
  unxz_to "$dev/minilm.safetensors.xz" /tmp/minilm.safetensors
fi
export UNWEIGHT_MINILM="${UNWEIGHT_MINILM:-/tmp/minilm.safetensors}"

summary=()
note() { summary+=("$1"); }

run_tests() {
  local log="$OUT/gpu-tests.log"
  {
    echo "# unweight GPU tests, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  } | tee "$log"
  # Smallest first: one CTA, then the decoders, then every pipeline, then the JIT cache.
  # jit_cache is a CPU test and runs in CI against the pinned NVRTC 13.0.88; this image's NVRTC
  # leaves the program log empty under --ptxas-options=-v (seen 2026-11-22), which that test checks.
  for t in gpu_smoke gpu_huffman gpu_linear gpu_sanitizer gpu_mlp gpu_demo gpu_tune; do
    local exe="$bin/tests/$t"
    [ -x "$exe" ] || { note "$t: MISSING"; continue; }
    echo "## $t" | tee -a "$log"
    timeout -k 10 "$step_timeout" "$exe" --include-ignored --test-threads=1 2>&1 | tee /tmp/unweight-step.log
    local rc=${PIPESTATUS[0]}
    cat /tmp/unweight-step.log >> "$log"
    local res
    res=$(grep -E "^test result:" /tmp/unweight-step.log | tail -1)
    [ -z "$res" ] && res="no test summary (crashed?)"
    [ "$rc" -eq 124 ] && res="TIMED OUT after ${step_timeout}s"
    note "$t: rc=$rc ${res#test result: }"
  done
}

run_sanitizer() {
  local exe="$bin/tests/gpu_sanitizer"
  [ -x "$exe" ] || { note "sanitizer: gpu_sanitizer MISSING"; return; }
  command -v compute-sanitizer >/dev/null || { note "sanitizer: compute-sanitizer not on PATH"; return; }
  timeout -k 10 "$step_timeout" compute-sanitizer --tool memcheck --error-exitcode 86 \
    "$exe" --ignored --exact gpu_sanitizer_small --test-threads=1 2>&1 | tee "$OUT/sanitizer.log"
  local rc=${PIPESTATUS[0]}
  note "sanitizer: rc=$rc $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1)"
  local mlp="$bin/tests/gpu_mlp"
  [ -x "$mlp" ] || { note "sanitizer: gpu_mlp MISSING"; return; }
  timeout -k 10 "$step_timeout" compute-sanitizer --tool memcheck --error-exitcode 86 \
    "$mlp" --ignored --exact gpu_mlp_sanitizer_small --test-threads=1 2>&1 | tee "$OUT/sanitizer-mlp.log"
  rc=${PIPESTATUS[0]}
  note "sanitizer (mlp): rc=$rc $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer-mlp.log" | tail -1)"
}

run_bench() {
  mkdir -p "$OUT/bench/results"
  # `unweight bench` writes bench/results/ under its working directory: run it inside $OUT.
  ( cd "$OUT" && timeout -k 10 "$step_timeout" "$bin/unweight" bench ) 2>&1 | tee "$OUT/bench.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && grep -qiE "unrecognized subcommand|unexpected argument|not built yet|not linked into this build" "$OUT/bench.log"; then
    echo "gpu-run: this unweight has no bench subcommand; running the gpu_bench test instead" | tee -a "$OUT/bench.log"
    UNWEIGHT_BENCH_OUT="$OUT/bench/results" timeout -k 10 "$step_timeout" "$bin/tests/gpu_bench" --ignored --nocapture \
      --test-threads=1 2>&1 | tee -a "$OUT/bench.log"
    rc=${PIPESTATUS[0]}
  fi
  note "bench: rc=$rc $(ls "$OUT"/bench/results/*.md 2>/dev/null | tr '\n' ' ')"
}

run_tune() {
  mkdir -p "$OUT/bench/results"
  local log="$OUT/bench/results/$(date -u +%Y-%m-%d)-tune-exhaustive.log"
  timeout -k 10 "$step_timeout" "$bin/unweight" tune --shapes 14336x4096,4096x14336 --m 1,16,256 \
    --exhaustive --out "$OUT/tuning.json" 2>&1 | tee "$log"
  note "tune --exhaustive: rc=${PIPESTATUS[0]} $log"
  timeout -k 10 "$step_timeout" "$bin/unweight" tune --out "$OUT/tuning.json" 2>&1 | tee "$OUT/tune.log"
  note "tune: rc=${PIPESTATUS[0]} $OUT/tuning.json"
}

run_bench_mlp() {
  mkdir -p "$OUT/bench-mlp/results"
  # The 32-layer Llama-3.1-8B MLP stack beside cuBLAS (writes bench/results/ under its cwd).
  local table=()
  [ -f "$OUT/tuning.json" ] && table=(--table "$OUT/tuning.json")
  ( cd "$OUT/bench-mlp" && timeout -k 10 "$step_timeout" "$bin/unweight" bench-mlp "${table[@]}" ) \
    2>&1 | tee "$OUT/bench-mlp.log"
  note "bench-mlp: rc=${PIPESTATUS[0]} $(ls "$OUT"/bench-mlp/results/*.md 2>/dev/null | tr '\n' ' ')"
}

run_bench_auto() {
  mkdir -p "$OUT/bench-auto/results"
  ( cd "$OUT/bench-auto" && timeout -k 10 "$step_timeout" "$bin/unweight" bench --table "$OUT/tuning.json" ) \
    2>&1 | tee "$OUT/bench-auto.log"
  note "bench-auto: rc=${PIPESTATUS[0]} $(ls "$OUT"/bench-auto/results/*.md 2>/dev/null | tr '\n' ' ')"
}

for s in "${steps[@]}"; do
  case "$s" in
    tests) run_tests ;;
    sanitizer) run_sanitizer ;;
    bench) run_bench ;;
    tune) run_tune ;;
    bench-auto) run_bench_auto ;;
    bench-mlp) run_bench_mlp ;;
    *) echo "gpu-run: unknown step $s (tests, sanitizer, bench, tune, bench-auto, bench-mlp)" >&2; exit 2 ;;
  esac
done

echo
echo "== gpu-run summary =="
printf '%s\n' "${summary[@]}"
md=$(ls "$OUT"/bench/results/*.md 2>/dev/null | tail -1)
if [ -n "$md" ]; then
  echo
  grep -E "^\| " "$md" | head -60
fi
