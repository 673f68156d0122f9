#!/usr/bin/env bash
# The one script to run on the H200 machine (no cargo there), from the repository root, with
# .device/ carried (build it here with scripts/gpu-pack.sh). Steps, in order:
#   tests      the ignored GPU tests, smallest first (--include-ignored --test-threads=1),
#              tee'd to $OUT/gpu-tests.log
#   sanitizer  compute-sanitizer memcheck on gpu_sanitizer_small ($OUT/sanitizer.log) and
#              gpu_mlp_sanitizer_small ($OUT/sanitizer-mlp.log)
#   bench      `unweight bench` on Llama-3.1-8B's MLP shapes, M = 1 ... 2048
#              ($OUT/bench/results/<date>-<gpu>-8b.{json,md}, $OUT/bench-8b.log)
#   bench-70b  the same on Llama-3.1-70B's MLP shapes
#              ($OUT/bench/results/<date>-<gpu>-70b.{json,md}, $OUT/bench-70b.log)
#   bench-spread  the large-batch rows of both models' gate/up and down shapes, M = 256 ... 2048, three
#              times in one run with every rmm's CTA count sized by `--spread even`, `whole-splits` and
#              `persistent` (the default rule, one CTA per tile, persistent CTAs)
#              ($OUT/bench/results/<date>-<gpu>-spread-<spread>.{json,md}, $OUT/bench-spread-*.log);
#              UNWEIGHT_SPREAD_SHAPES and UNWEIGHT_SPREAD_M replace the shapes and batches
#   tune       `unweight tune --exhaustive` on 2 shapes x 3 buckets: descent vs exhaustive search
#              ($OUT/bench/results/<date>-tune-exhaustive.log), then `unweight tune` over the
#              bench's shapes and batches into the same table $OUT/tuning.json ($OUT/tune.log)
#   tune-table `unweight tune` alone (the table, no exhaustive comparison)
#   bench-auto `unweight bench --table $OUT/tuning.json` on the tuned shapes and buckets: plan_auto
#              beside the default plans (run after tune on the same machine;
#              $OUT/bench-auto/results/<date>-<gpu>-auto.{json,md}, $OUT/bench-auto.log)
#   bench-mlp  `unweight bench-mlp` (with --table $OUT/tuning.json when tune ran): the 32-layer
#              Llama-3.1-8B MLP stack beside cuBLAS ($OUT/bench-mlp/results/, $OUT/bench-mlp.log)
#   ncu        Nsight Compute on one launch of each UNWEIGHT_NCU_KERNEL (comma-separated regexes, default
#              huff_palette_sub256) in `unweight bench` on 14336x4096, M = UNWEIGHT_NCU_M (default 1)
#              ($OUT/ncu/: report, details, SASS source page, raw metrics, and <kernel>.timeline.txt,
#              the PM-sampling timeline from scripts/ncu_timeline.py); UNWEIGHT_NCU_ARGS: more bench
#              arguments (e.g. --spread whole-splits), UNWEIGHT_NCU_TAG: a suffix for the files' names
# Usage: bash scripts/gpu-run.sh [tests] [sanitizer] [bench] [bench-70b] [bench-spread] [tune] [tune-table] [bench-auto]
#        [bench-mlp] [ncu]
#        (default: tests sanitizer bench)
# One device command may run 10 minutes: run `tests sanitizer`, `bench` and `bench-70b` as three
# commands. Each bench step writes its files after every shape, so one cut short keeps the shapes
# it finished.
# Each step has a timeout (a hung kernel must not eat the session): UNWEIGHT_STEP_TIMEOUT (s).
# At the end every file under $OUT goes into one archive, $OUT/gpu-run-<UTC time>.tgz (the device tool returns at
# most 8 files); several gpu-run.sh calls in one command leave one archive each.
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

# The two halves of the default `unweight bench`, one step each (each must fit the step limit).
BENCH_8B=14336x4096,4096x14336,4096x14336t
BENCH_70B=28672x8192,8192x28672,8192x28672t

# run_bench TAG SHAPES [ARGS...]: `unweight bench --shapes SHAPES --tag TAG ARGS...`.
run_bench() {
  local tag=$1 shapes=$2 log="$OUT/bench-$1.log"
  shift 2
  mkdir -p "$OUT/bench/results"
  # `unweight bench` writes bench/results/ under its working directory: run it inside $OUT.
  ( cd "$OUT" && timeout -k 10 "$step_timeout" "$bin/unweight" bench --shapes "$shapes" --tag "$tag" "$@" ) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && [ "$tag" = 8b ] && grep -qiE "unrecognized subcommand|not built yet|not linked into this build" "$log"; then
    echo "gpu-run: this unweight has no bench subcommand; running the gpu_bench test instead" | tee -a "$log"
    UNWEIGHT_BENCH_OUT="$OUT/bench/results" timeout -k 10 "$step_timeout" "$bin/tests/gpu_bench" --ignored --nocapture \
      --test-threads=1 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
  fi
  [ "$rc" -eq 124 ] && rc="124 (TIMED OUT after ${step_timeout}s; the shapes it finished are in the files)"
  note "bench-$tag: rc=$rc $(ls "$OUT"/bench/results/*-"$tag".md 2>/dev/null | tr '\n' ' ')"
}

run_tune() {
  mkdir -p "$OUT/bench/results"
  local log="$OUT/bench/results/$(date -u +%Y-%m-%d)-tune-exhaustive.log"
  timeout -k 10 "$step_timeout" "$bin/unweight" tune --shapes 14336x4096,4096x14336 --m 1,16,256 \
    --exhaustive --out "$OUT/tuning.json" 2>&1 | tee "$log"
  note "tune --exhaustive: rc=${PIPESTATUS[0]} $log"
  run_tune_table
}

run_tune_table() {
  timeout -k 10 "$step_timeout" "$bin/unweight" tune --out "$OUT/tuning.json" 2>&1 | tee "$OUT/tune.log"
  note "tune: rc=${PIPESTATUS[0]} $OUT/tuning.json"
}

# Nsight Compute on one launch of each kernel in UNWEIGHT_NCU_KERNEL (comma-separated regexes; default the
# default palette decoder) inside `unweight bench` on 14336x4096 at M = UNWEIGHT_NCU_M (default 1): report,
# details page, per-SASS source page, raw metrics and every metric instance (PM sampling's timeline), named after the regex's letters.
run_ncu() {
  local ks="${UNWEIGHT_NCU_KERNEL:-huff_palette_sub256}" m="${UNWEIGHT_NCU_M:-1}" tag="${UNWEIGHT_NCU_TAG:-}"
  local extra=()
  read -ra extra <<< "${UNWEIGHT_NCU_ARGS:-}"
  command -v ncu >/dev/null || { note "ncu: not on PATH"; return; }
  mkdir -p "$OUT/ncu" /tmp/unweight-ncu-bench
  local k
  IFS=, read -ra kl <<< "$ks"
  for k in "${kl[@]}"; do
    local n
    n=$(echo "$k$tag" | tr -c 'A-Za-z0-9_\n' '_')
    ( cd /tmp/unweight-ncu-bench && timeout -k 10 "$step_timeout" ncu --clock-control none --set full \
        -k "regex:$k" -c 1 -f -o "$OUT/ncu/$n" "$bin/unweight" bench --shapes 14336x4096 --m "$m" --reps 50 \
        --decode-sms all --out /tmp/unweight-ncu-bench/results "${extra[@]}" ) > "$OUT/ncu/$n.run.log" 2>&1
    local rc=$?
    ncu --import "$OUT/ncu/$n.ncu-rep" --page details > "$OUT/ncu/$n.details.txt" 2>&1
    ncu --import "$OUT/ncu/$n.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu/$n.sass.csv" 2>&1
    ncu --import "$OUT/ncu/$n.ncu-rep" --page raw --csv > "$OUT/ncu/$n.raw.csv" 2>&1
    # Every instance of each metric (PM sampling's samples over the launch: where it ramps and drains).
    ncu --import "$OUT/ncu/$n.ncu-rep" --page raw --csv --print-metric-instances values > "$OUT/ncu/$n.inst.csv" 2>&1
    python3 "$root/scripts/ncu_timeline.py" "$OUT/ncu/$n.inst.csv" > "$OUT/ncu/$n.timeline.txt" 2>&1
    note "ncu $k: rc=$rc $(grep -E '^ +Duration' "$OUT/ncu/$n.details.txt" | head -1)"
  done
}

run_bench_mlp() {
  mkdir -p "$OUT/bench/results"
  # The 32-layer Llama-3.1-8B MLP stack beside cuBLAS (writes bench/results/ under its cwd).
  local table=()
  [ -f "$OUT/tuning.json" ] && table=(--table "$OUT/tuning.json")
  # Results beside the other benches' (two levels under $OUT: the device tool returns no deeper files).
  ( cd "$OUT" && timeout -k 10 "$step_timeout" "$bin/unweight" bench-mlp --out "$OUT/bench/results" "${table[@]}" ) \
    2>&1 | tee "$OUT/bench-mlp.log"
  note "bench-mlp: rc=${PIPESTATUS[0]} $(ls "$OUT"/bench/results/*-mlp.md 2>/dev/null | tr '\n' ' ')"
}

run_bench_auto() {
  mkdir -p "$OUT/bench-auto/results"
  # The shapes and buckets `tune` tuned (its defaults).
  ( cd "$OUT/bench-auto" && timeout -k 10 "$step_timeout" "$bin/unweight" bench --table "$OUT/tuning.json" \
      --shapes "$BENCH_8B" --m 1,16,64,256,1024 --tag auto --out "$OUT/bench-auto/results" ) 2>&1 | tee "$OUT/bench-auto.log"
  note "bench-auto: rc=${PIPESTATUS[0]} $(ls "$OUT"/bench-auto/results/*.md 2>/dev/null | tr '\n' ' ')"
}

for s in "${steps[@]}"; do
  case "$s" in
    tests) run_tests ;;
    sanitizer) run_sanitizer ;;
    bench) run_bench 8b "$BENCH_8B" ;;
    bench-70b) run_bench 70b "$BENCH_70B" ;;
    bench-spread)
      for sp in even whole-splits persistent; do
        run_bench "spread-$sp" "${UNWEIGHT_SPREAD_SHAPES:-14336x4096,4096x14336,28672x8192,8192x28672}" \
          --m "${UNWEIGHT_SPREAD_M:-256,512,1024,2048}" --decode-sms all --spread "$sp"
      done ;;
    tune) run_tune ;;
    tune-table) run_tune_table ;;
    ncu) run_ncu ;;
    bench-auto) run_bench_auto ;;
    bench-mlp) run_bench_mlp ;;
    *) echo "gpu-run: unknown step $s (tests, sanitizer, bench, bench-70b, bench-spread, tune, tune-table, bench-auto, bench-mlp, ncu)" >&2; exit 2 ;;
  esac
done

echo
echo "== gpu-run summary =="
printf '%s\n' "${summary[@]}"
# Each bench file: the copy bandwidth it measured, then its done-when table (issues 8 and 9).
for md in "$OUT"/bench/results/*.md "$OUT"/bench-auto/results/*.md; do
  [ -f "$md" ] || continue
  echo
  echo "== $(basename "$md")"
  grep -E "^Copy bandwidth" "$md"
  awk '/^Done-when/ {on=1; next} on && /^\|/ {print; seen=1; next} seen && !/^\|/ {exit}' "$md"
done

# The device tool brings back at most 8 files from $OUT (16 MiB each): every file this run left there goes into
# one archive, $OUT/gpu-run-<UTC time>.tgz (unpack it with tar xzf), except Nsight reports (*.ncu-rep, too large to
# come back; delete or keep them yourself) and archives of earlier runs in the same command. UNWEIGHT_LOOSE_OUT=1
# leaves the files as they are.
if [ "${UNWEIGHT_LOOSE_OUT:-0}" != 1 ]; then
  bundle="gpu-run-$(date -u +%H%M%S).tgz"
  ( cd "$OUT" && find . -type f ! -name 'gpu-run-*.tgz' ! -name '*.ncu-rep' | sort > /tmp/gpu-run-bundle.list
    if [ -s /tmp/gpu-run-bundle.list ]; then
      tar czf "$bundle" -T /tmp/gpu-run-bundle.list && xargs rm -f < /tmp/gpu-run-bundle.list \
        && find . -mindepth 1 -type d -empty -delete
      echo
      echo "== $OUT/$bundle: $(wc -l < /tmp/gpu-run-bundle.list) files (tar xzf it)"
    fi )
fi
