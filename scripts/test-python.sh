#!/usr/bin/env bash
# The Python package's part of CI (called by scripts/test.sh): builds the wheel of python/ with
# maturin into a venv under .cache/pyenv (maturin, numpy, pytest, safetensors, ml_dtypes from
# PyPI; nothing outside .cache/ changes), installs it and runs the pytest suite
# python/tests. Idempotent: the venv is reused and cargo's target/ keeps the build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ -z "${UNWEIGHT_MINILM:-}" ]; then
  env_file=$(scripts/setup-tools.sh)
  # shellcheck disable=SC1090
  source "$env_file"
fi
venv="$root/.cache/pyenv"
py=${PYTHON:-python3}
if ! "$venv/bin/python" -c 'import maturin, numpy, pytest, safetensors, ml_dtypes' 2>/dev/null; then
  echo "test-python: creating $venv" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "maturin>=1.9.4,<2" numpy pytest safetensors ml_dtypes >&2
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# pip's build hook runs `maturin` from PATH.
export PATH="$venv/bin:$PATH"
# The wheel is built exactly as `pip install ./python` builds it, without fetching maturin again.
"$venv/bin/python" -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./python
# The error tests compare messages with the CLI's.
cargo build --release --quiet -p unweight --bin unweight
export UNWEIGHT_CLI="$CARGO_TARGET_DIR/release/unweight"
# From the root, so `import unweight` is the installed wheel, not python/unweight/.
"$venv/bin/python" -m pytest -q -rs -p no:cacheprovider python/tests
