"""Shared helpers of the unweight package's tests: a small safetensors writer (so the tests need
numpy only), synthetic BF16 weights, the CLI binary and the MiniLM checkpoint."""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

# Byte width per safetensors dtype the tests write.
WIDTH = {"F64": 8, "I64": 8, "F32": 4, "BF16": 2, "U8": 1}


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (name -> (dtype, shape, bytes)) as unweight's writer lays a file out:
    larger elements first, then by name; compact JSON header with sorted keys, space-padded to
    a multiple of 8. (At most one dtype per width, so that order is the format's own.)"""
    names = sorted(tensors, key=lambda n: (-WIDTH[tensors[n][0]], n))
    header, pos = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for n in names:
        dtype, shape, data = tensors[n]
        assert len(data) == WIDTH[dtype] * int(np.prod(shape, dtype=np.int64)), n
        header[n] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for n in names:
            f.write(tensors[n][2])


def bf16_bits(f32):
    """float32 -> BF16 bit patterns, rounded to nearest even (as half::bf16::from_f32 does for
    finite values; the Rust tests round MiniLM this way)."""
    bits = np.ascontiguousarray(f32, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def weights(rng, rows, cols):
    """BF16 bits of weight-like values (normal, std 0.02)."""
    return bf16_bits(rng.normal(0.0, 0.02, size=(rows, cols)).astype(np.float32))


@pytest.fixture
def model_file(tmp_path):
    """A small checkpoint: two MLP weights (compressed by the default selection), an attention
    weight and an F32 bias (passed through), and user metadata."""
    rng = np.random.default_rng(7)
    t = {
        "model.layers.0.mlp.up_proj.weight": ("BF16", (96, 64), weights(rng, 96, 64).tobytes()),
        "model.layers.0.mlp.down_proj.weight": ("BF16", (64, 96), weights(rng, 64, 96).tobytes()),
        "model.layers.0.self_attn.q_proj.weight": ("BF16", (64, 64), weights(rng, 64, 64).tobytes()),
        "model.layers.0.mlp.up_proj.bias": (
            "F32",
            (96,),
            rng.normal(size=96).astype("<f4").tobytes(),
        ),
    }
    path = tmp_path / "model.safetensors"
    write_safetensors(path, t, {"format": "pt", "note": "test"})
    return path


def listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture
def cli():
    """Runs the `unweight` binary (UNWEIGHT_CLI, else target/release/unweight): (status, stdout,
    stderr)."""
    exe = Path(os.environ.get("UNWEIGHT_CLI", REPO / "target" / "release" / "unweight"))
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: run `cargo build --release` (scripts/test-python.sh does)")

    def run(*args, cwd=None):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd)
        return p.returncode, p.stdout, p.stderr

    return run


def cli_error(stderr):
    """The message of the CLI's `unweight: error: MESSAGE` line."""
    lines = [l for l in stderr.splitlines() if l.startswith("unweight: error: ")]
    assert len(lines) == 1, stderr
    return lines[0][len("unweight: error: ") :]


@pytest.fixture
def minilm():
    """all-MiniLM-L6-v2's model.safetensors (UNWEIGHT_MINILM, set by scripts/setup-tools.sh)."""
    path = os.environ.get("UNWEIGHT_MINILM")
    if not path:
        pytest.fail("UNWEIGHT_MINILM is not set: run `source $(scripts/setup-tools.sh)` first")
    return Path(path)
