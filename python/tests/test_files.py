"""compress_file / decompress_file / verify_file / load_file on single files."""

import os
import subprocess
import sys

import numpy as np
import pytest

import unweight
from conftest import listing, write_safetensors

MLP = {"model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight"}


@pytest.mark.parametrize(
    "encoding,transpose", [("huffman", None), ("palette", None), ("huffman", "down_proj")]
)
def test_round_trip_is_byte_identical(tmp_path, model_file, encoding, transpose):
    original = model_file.read_bytes()
    bundle = tmp_path / "b.safetensors"
    report = unweight.compress_file(model_file, bundle, encoding=encoding, transpose=transpose)
    assert {t["name"] for t in report["tensors"]} == MLP
    assert report["passed_through"] == 2
    for t in report["tensors"]:
        assert t["encoding"] == encoding
        want = "transposed" if transpose and transpose in t["name"] else "standard"
        assert t["orientation"] == want
        assert t["bytes_before"] == 2 * t["elements"]
        assert t["bytes_after"] > 0
    assert bundle.read_bytes() != original
    back = tmp_path / "back.safetensors"
    r = unweight.decompress_file(str(bundle), str(back))
    assert (r["decoded"], r["passed_through"]) == (2, 2)
    assert back.read_bytes() == original
    assert model_file.read_bytes() == original, "the input changed"


def test_custom_selection(tmp_path, model_file):
    bundle = tmp_path / "b.safetensors"
    report = unweight.compress_file(model_file, bundle, tensors=r"q_proj")
    assert [t["name"] for t in report["tensors"]] == ["model.layers.0.self_attn.q_proj.weight"]
    assert report["passed_through"] == 3


def test_verify(tmp_path, model_file):
    bundle = tmp_path / "b.safetensors"
    unweight.compress_file(model_file, bundle)
    r = unweight.verify_file(bundle)
    assert (r["decoded"], r["compared"]) == (2, 0)
    r = unweight.verify_file(bundle, against=model_file)
    assert (r["decoded"], r["compared"]) == (2, 4)


def test_verify_against_another_original_lists_every_mismatch(tmp_path, model_file, cli):
    bundle = tmp_path / "b.safetensors"
    unweight.compress_file(model_file, bundle)
    # The same file with one element of one MLP weight and the bias changed.
    other = tmp_path / "other.safetensors"
    tensors = {n: (d, s, bytearray(b)) for n, (d, s, b) in _read(model_file).items()}
    tensors["model.layers.0.mlp.up_proj.weight"][2][0] ^= 1
    tensors["model.layers.0.mlp.up_proj.bias"][2][0] ^= 1
    write_safetensors(other, {n: (d, s, bytes(b)) for n, (d, s, b) in tensors.items()},
                      {"format": "pt", "note": "test"})
    with pytest.raises(unweight.UnweightError) as e:
        unweight.verify_file(bundle, against=other)
    failures = e.value.failures
    assert len(failures) == 2, failures
    assert all("bytes differ from the original" in f for f in failures)
    assert any("`model.layers.0.mlp.up_proj.weight`" in f for f in failures)
    assert any("`model.layers.0.mlp.up_proj.bias`" in f for f in failures)
    assert str(e.value).startswith(f"{bundle}: FAILED (2 problems, 4 tensors compared with {other})")
    # The CLI reports the same lines.
    status, _, stderr = cli("verify", bundle, "--against", other)
    assert status == 1
    assert [l[len("unweight: mismatch: "):] for l in stderr.splitlines()] == failures


def _read(path):
    """name -> (dtype, shape, bytes) of a safetensors file, with the stdlib only."""
    import json
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {
        k: (v["dtype"], tuple(v["shape"]), raw[base + v["data_offsets"][0] : base + v["data_offsets"][1]])
        for k, v in header.items()
    }


def _expected_numpy(path, bf16):
    return {
        n: np.frombuffer(b, dtype={"BF16": bf16, "F32": "<f4"}[d]).reshape(s)
        for n, (d, s, b) in _read(path).items()
    }


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for n in want:
        assert got[n].dtype == want[n].dtype, n
        assert got[n].shape == want[n].shape, n
        assert got[n].tobytes() == want[n].tobytes(), n


def test_load_file_returns_the_original_tensors_as_uint16_without_ml_dtypes(
    tmp_path, model_file, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` raises ImportError
    bundle = tmp_path / "b.safetensors"
    unweight.compress_file(model_file, bundle, encoding="palette")
    want = _expected_numpy(model_file, "<u2")
    for path in (bundle, model_file):
        got = unweight.load_file(path)
        _assert_same(got, want)
        assert all(a.flags.writeable for a in got.values())


def test_load_file_gives_ml_dtypes_bfloat16(tmp_path, model_file):
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    bundle = tmp_path / "b.safetensors"
    unweight.compress_file(model_file, bundle)
    got = unweight.load_file(bundle)
    _assert_same(got, _expected_numpy(model_file, ml_dtypes.bfloat16))
    w = got["model.layers.0.mlp.up_proj.weight"].astype(np.float32)
    assert 0.005 < float(np.std(w)) < 0.05


def test_load_file_torch(tmp_path, model_file):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    bundle = tmp_path / "b.safetensors"
    unweight.compress_file(model_file, bundle)
    got = unweight.load_file(bundle, framework="pt")
    want = _read(model_file)
    assert got.keys() == want.keys()
    for n, (d, s, b) in want.items():
        assert got[n].dtype == {"BF16": torch.bfloat16, "F32": torch.float32}[d]
        assert tuple(got[n].shape) == s
        assert got[n].contiguous().view(torch.uint8).numpy().tobytes() == b, n


def test_load_file_torch_missing_says_so(model_file):
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch is installed")
    with pytest.raises(ImportError, match=r'framework="pt"\) needs PyTorch'):
        unweight.load_file(model_file, framework="pt")


def test_load_file_rejects_an_unknown_framework(model_file):
    with pytest.raises(ValueError, match="framework must be"):
        unweight.load_file(model_file, framework="tf")


def test_load_file_of_an_empty_tensor(tmp_path):
    path = tmp_path / "e.safetensors"
    write_safetensors(path, {"empty": ("F32", (0, 3), b""), "x": ("BF16", (1,), b"\x80\x3f")})
    got = unweight.load_file(path)
    assert got["empty"].shape == (0, 3) and got["empty"].dtype == np.float32
    assert got["x"].view(np.uint16).tolist() == [0x3F80]


def test_work_runs_without_the_gil(tmp_path):
    """verify_file blocks in open() on a FIFO until a writer opens it; the writer is another
    thread, which can only run if verify_file released the GIL (with the GIL held, both wait
    for ever). Runs in a subprocess so that shows as a timeout, not a hung test run."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = f"""
import os, threading, time, unweight
start = threading.Event()
def writer():
    start.wait()
    time.sleep(0.3)  # let the main thread get into verify_file's open() first
    fd = os.open({str(fifo)!r}, os.O_WRONLY)
    os.write(fd, b"not a safetensors file")
    os.close(fd)
t = threading.Thread(target=writer)
t.start()
start.set()
try:
    unweight.verify_file({str(fifo)!r})
except unweight.UnweightError as e:
    print(e)
t.join()
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{fifo}: "), p.stdout
