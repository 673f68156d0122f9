#!/usr/bin/env bash
# Builds, on the development machine, everything scripts/gpu-run.sh needs on the H100 machine
# (which has no Rust toolchain and no network) into .device/ (gitignored; carry it). The device
# tool carries at most 64 MiB with the working tree, so everything is stripped and xz-packed:
#   .device/unweight.xz              release CLI (for `unweight bench`)
#   .device/tests/<name>.xz          release test executables: gpu_* and jit_cache
#   .device/minilm.safetensors.xz    all-MiniLM-L6-v2 as bf16, without the 30522x384 word
#                                    embedding (half the model; the synthetic odd shapes cover
#                                    what its row count would)
# Only these paths are replaced; anything else in .device/ is left alone.
# Usage: scripts/gpu-pack.sh   (then carry .device and run scripts/gpu-run.sh there)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/.device"
target="${CARGO_TARGET_DIR:-$root/target}"
rm -rf "$out/tests" "$out/unweight.xz" "$out/minilm.safetensors.xz"
mkdir -p "$out/tests"

echo "gpu-pack: building the CLI" >&2
cargo build --release -p unweight --bin unweight
cp "$target/release/unweight" "$out/unweight"
strip --strip-debug "$out/unweight"
xz -T0 -6 -f "$out/unweight"

echo "gpu-pack: building the test executables" >&2
# The JSON messages name each test executable; keep the GPU tests and the JIT cache test.
cargo test --release -p unweight-tests --no-run --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        name = m["target"]["name"]
        if name.startswith("gpu_") or name.startswith("jit_"):
            print(name, m["executable"])
' > "$out/tests.list"
while read -r name exe; do
  cp "$exe" "$out/tests/$name"
done < "$out/tests.list"
rm "$out/tests.list"
strip --strip-debug "$out"/tests/*
xz -T0 -6 -f "$out"/tests/*

echo "gpu-pack: MiniLM as bf16" >&2
minilm="${UNWEIGHT_MINILM:-}"
if [ -z "$minilm" ]; then
  minilm=$(grep -o '/[^"]*model.safetensors' "$root/.cache/env.sh" 2>/dev/null || true)
fi
[ -f "$minilm" ] || { echo "gpu-pack: MiniLM not found; run: source \$(scripts/setup-tools.sh)" >&2; exit 1; }
# The bf16 rounding below needs numpy; a fresh machine may not have it, so install it next to the
# other tools (.cache/pytools, never into the system) when the interpreter lacks it.
pyextra="$root/.cache/pynumpy"
if ! python3 -c 'import numpy' 2>/dev/null && ! PYTHONPATH="$pyextra" python3 -c 'import numpy' 2>/dev/null; then
  echo "gpu-pack: installing numpy into $pyextra" >&2
  python3 -m pip install --quiet --target "$pyextra" numpy >&2
fi
PYTHONPATH="$pyextra${PYTHONPATH:+:$PYTHONPATH}" python3 - "$minilm" "$out/minilm.safetensors" <<'PY'
# fp32 -> bf16 (round to nearest even), same names, shapes and metadata.
import json, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = raw[8 + n:]
out_header, chunks, offset = {}, [], 0
for name, info in sorted(header.items()):
    if name == "__metadata__":
        out_header[name] = info
        continue
    if name.endswith("word_embeddings.weight"):
        continue
    a, b = info["data_offsets"]
    data = body[a:b]
    if info["dtype"] == "F32":
        u = np.frombuffer(data, dtype="<u4").astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        nan = np.isnan(np.frombuffer(data, dtype="<f4"))
        u[nan] = 0x7FC0
        data, dtype = u.tobytes(), "BF16"
    else:
        dtype = info["dtype"]
    out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
h = json.dumps(out_header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for c in chunks:
        f.write(c)
PY
xz -T0 -6 -f "$out/minilm.safetensors"

du -sh "$out" "$out"/unweight.xz "$out"/minilm.safetensors.xz "$out"/tests/* >&2
total=$(du -sm "$out" | cut -f1)
if [ "$total" -gt 48 ]; then
  echo "gpu-pack: .device is ${total} MiB; with the working tree it may exceed the device tool's 64 MiB" >&2
fi
echo "gpu-pack: done; run on the GPU machine with .device carried: bash scripts/gpu-run.sh" >&2
