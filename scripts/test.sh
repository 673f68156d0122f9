#!/usr/bin/env bash
# The test command CI runs (README.md, .ci/run). Installs what the tests need (NVRTC 13.0, cuobjdump,
# nvdisasm, the all-MiniLM-L6-v2 checkpoint) into .cache/ when missing, then:
#   1. formatting: `cargo fmt --all --check` (the whole workspace is rustfmt-clean);
#   2. lints: `cargo clippy --workspace --all-targets --release -- -D warnings` (release, so its
#      build of the dependencies is shared with the tests below);
#   3. generated/ is exactly what the templates produce (names the stale files otherwise);
#   4. every test of the workspace: codec round trips (proptest, real MiniLM weights), bundle/CLI
#      bad-input handling, generator snapshots (unreferenced snapshots rejected), the kernel ABI
#      tied to the codec's constants, NVRTC compile of every kernel variant for sm_90a with its
#      ptxas/SASS checks. GPU tests are #[ignore]d here ("needs an sm_90 GPU") but built, and run
#      on an H100/H200 with scripts/gpu-run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
env_file=$(scripts/setup-tools.sh)
# shellcheck disable=SC1090
source "$env_file"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo xtask gen-kernels --check
cargo test --workspace --release
scripts/test-python.sh  # 3. the Python package: wheel built with maturin, pytest suite (python/tests)
