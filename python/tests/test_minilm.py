"""Interop on real weights: all-MiniLM-L6-v2 (F32) rounded to BF16 as the Rust tests do it
(nearest even), compressed by the package, read back by unweight.load_file and compared with
what the `safetensors` package reads from the uncompressed file."""

import numpy as np
import pytest

import unweight
from conftest import bf16_bits, write_safetensors

MLP_SUFFIXES = ("intermediate.dense.weight", "output.dense.weight")


def _minilm_bf16_tensors(minilm):
    """name -> (safetensors dtype, shape, little-endian bytes) with every F32 tensor rounded to
    BF16 (MiniLM's one other tensor is I64), and the checkpoint's metadata."""
    from safetensors import safe_open

    out = {}
    with safe_open(minilm, framework="np") as f:
        metadata = f.metadata()
        for name in f.keys():
            a = f.get_tensor(name)
            if a.dtype == np.float32:
                out[name] = ("BF16", a.shape, bf16_bits(a).tobytes())
            else:
                assert a.dtype == np.int64, (name, a.dtype)
                out[name] = ("I64", a.shape, a.astype("<i8").tobytes())
    return out, metadata


def _check_compressed(report):
    names = [t["name"] for t in report["tensors"]]
    assert len(names) == 12, names  # 6 layers × 2 MLP weights
    assert all(n.endswith(MLP_SUFFIXES) and "attention" not in n for n in names)
    before = sum(t["bytes_before"] for t in report["tensors"])
    after = sum(t["bytes_after"] for t in report["tensors"])
    assert 100 * (before - after) / before >= 32.5  # the huffman saving the Rust tests require


def test_minilm_is_f32(minilm):
    from safetensors.numpy import load_file

    dtypes = {a.dtype for a in load_file(minilm).values()}
    assert np.dtype(np.float32) in dtypes
    assert dtypes <= {np.dtype(np.float32), np.dtype(np.int64)}, dtypes


def test_load_file_matches_safetensors_on_minilm(minilm, tmp_path):
    ml_dtypes = pytest.importorskip(
        "ml_dtypes", reason="safetensors' numpy loader reads BF16 only with ml_dtypes"
    )
    from safetensors.numpy import load_file, save_file

    tensors, metadata = _minilm_bf16_tensors(minilm)
    f32 = load_file(minilm)
    arrays = {}
    for name, (dtype, shape, data) in tensors.items():
        np_dtype = ml_dtypes.bfloat16 if dtype == "BF16" else "<i8"
        arrays[name] = np.frombuffer(data, dtype=np_dtype).reshape(shape)
        if dtype == "BF16":
            # The bit arithmetic rounds as ml_dtypes' own conversion does.
            assert arrays[name].tobytes() == f32[name].astype(ml_dtypes.bfloat16).tobytes()
    original = tmp_path / "minilm-bf16.safetensors"
    save_file(arrays, original, metadata=metadata)

    bundle = tmp_path / "minilm.uw.safetensors"
    _check_compressed(unweight.compress_file(original, bundle))
    want = load_file(original)
    assert any(a.dtype == ml_dtypes.bfloat16 for a in want.values())
    for got in (unweight.load_file(bundle), unweight.load_file(original)):
        assert got.keys() == want.keys()
        for name, a in want.items():
            assert got[name].dtype == a.dtype, name
            assert got[name].shape == a.shape, name
            assert got[name].tobytes() == a.tobytes(), name

    assert unweight.verify_file(bundle, against=original)["compared"] == len(want)
    back = tmp_path / "back.safetensors"
    unweight.decompress_file(bundle, back)
    restored = load_file(back)
    assert restored.keys() == want.keys()
    assert all(restored[n].tobytes() == a.tobytes() for n, a in want.items())
    from safetensors import safe_open

    with safe_open(back, framework="np") as f:
        assert f.metadata() == metadata


def test_minilm_round_trip_numpy_only(minilm, tmp_path, monkeypatch):
    """The same without ml_dtypes: BF16 comes back as uint16 bit patterns."""
    import sys

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    tensors, metadata = _minilm_bf16_tensors(minilm)
    original = tmp_path / "minilm-bf16.safetensors"
    write_safetensors(original, tensors, metadata)
    for encoding in ("huffman", "palette"):
        bundle = tmp_path / f"{encoding}.safetensors"
        report = unweight.compress_file(original, bundle, encoding=encoding)
        if encoding == "huffman":
            _check_compressed(report)
        got = unweight.load_file(bundle)
        for name, (dtype, shape, data) in tensors.items():
            assert got[name].dtype == {"BF16": np.uint16, "I64": np.int64}[dtype]
            assert got[name].shape == tuple(shape) and got[name].tobytes() == data, name
        back = tmp_path / f"{encoding}-back.safetensors"
        unweight.decompress_file(bundle, back)
        assert back.read_bytes() == original.read_bytes()
