#!/usr/bin/env bash
# The test command CI runs (README.md, .ci/run). Installs what the tests need (NVRTC 13.0, cuobjdump,
# nvdisasm, the all-MiniLM-L6-v2 checkpoint) into .cache/ when missing, then:
#   1. generated/ is exactly what the templates produce (names the stale files otherwise);
#   2. every test of the workspace: codec round trips (proptest, real MiniLM weights), bundle/CLI
#      bad-input handling, generator snapshots (unreferenced snapshots rejected), NVRTC compile of
#      every kernel variant for sm_90a with its ptxas/SASS checks. GPU tests are #[ignore]d here
#      ("needs an sm_90 GPU") and run on an H100 with scripts/gpu-run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
env_file=$(scripts/setup-tools.sh)
# shellcheck disable=SC1090
source "$env_file"
cargo xtask gen-kernels --check
cargo test --workspace --release
scripts/test-python.sh  # 3. the Python package: wheel built with maturin, pytest suite (python/tests)
