"""Model directories through the package: all-MiniLM-L6-v2 rounded to BF16, split into 3
shards with an index, a config and a tokenizer file; compressed and restored byte-identical
file for file, and the restored directory read with the plain `safetensors` reader, shard by
shard through its index."""

import json

import numpy as np
import pytest

import unweight
from conftest import cli_error, listing, write_safetensors
from test_minilm import _minilm_bf16_tensors

INDEX = "model.safetensors.index.json"
SHARDS = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]


@pytest.fixture
def model_dir(minilm, tmp_path):
    tensors, metadata = _minilm_bf16_tensors(minilm)
    names = sorted(tensors)
    parts = [names[i::3] for i in range(3)]
    d = tmp_path / "minilm"
    d.mkdir()
    weight_map = {}
    for shard, part in zip(SHARDS, parts):
        write_safetensors(d / shard, {n: tensors[n] for n in part}, metadata)
        weight_map.update({n: shard for n in part})
    total = sum(len(t[2]) for t in tensors.values())
    (d / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (d / "config.json").write_text('{"model_type": "bert", "hidden_size": 384}\n')
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "WordPiece"}}\n')
    return d, tensors


def _files(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_directory_round_trip_is_byte_identical(model_dir, tmp_path):
    src, tensors = model_dir
    before = _files(src)
    out = tmp_path / "minilm-uw"
    report = unweight.compress_file(src, out)
    assert report["is_dir"] and [s["name"] for s in report["shards"]] == SHARDS
    assert report["indexes"] == [INDEX]
    assert sorted(report["copied"]) == ["config.json", "tokenizer.json"]
    assert len(report["tensors"]) == 12
    assert {t["shard"] for t in report["tensors"]} <= set(SHARDS)

    # The compressed index points every component tensor at the shard holding it.
    from safetensors import safe_open

    wm = json.loads((out / INDEX).read_text())["weight_map"]
    assert any(".uw." in n for n in wm)
    for shard in SHARDS:
        with safe_open(out / shard, framework="np") as f:
            assert set(f.keys()) == {n for n, s in wm.items() if s == shard}

    assert unweight.verify_file(out, against=src)["compared"] == len(tensors)
    back = tmp_path / "minilm-back"
    unweight.decompress_file(out, back)
    assert _files(back) == before
    assert _files(src) == before, "the input changed"


def test_restored_directory_loads_through_its_index(model_dir, tmp_path):
    ml_dtypes = pytest.importorskip(
        "ml_dtypes", reason="safetensors' numpy loader reads BF16 only with ml_dtypes"
    )
    from safetensors import safe_open

    src, tensors = model_dir
    out, back = tmp_path / "uw", tmp_path / "back"
    unweight.compress_file(src, out, encoding="palette")
    unweight.decompress_file(out, back)
    wm = json.loads((back / INDEX).read_text())["weight_map"]
    assert wm.keys() == tensors.keys()
    for name, shard in wm.items():
        with safe_open(back / shard, framework="np") as f:
            a = f.get_tensor(name)
        dtype, shape, data = tensors[name]
        assert a.dtype == (ml_dtypes.bfloat16 if dtype == "BF16" else np.int64), name
        assert a.shape == tuple(shape) and a.tobytes() == data, name
    # unweight.load_file reads each compressed shard back to the original tensors.
    for shard in SHARDS:
        got = unweight.load_file(out / shard)
        want = {n: t for n, t in tensors.items() if wm[n] == shard}
        assert got.keys() == want.keys()
        assert all(got[n].tobytes() == want[n][2] for n in want)


def test_bad_directories_raise_like_the_cli(model_dir, tmp_path, cli, monkeypatch):
    src, _ = model_dir
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", SHARDS[0], SHARDS[1], INDEX):
        (broken / f).write_bytes((src / f).read_bytes())  # the index names a missing shard
    for bad in ("empty", "broken"):
        before = listing(tmp_path)
        with pytest.raises(unweight.UnweightError) as e:
            unweight.compress_file(bad, "out")
        assert listing(tmp_path) == before, "output left behind"
        status, _, stderr = cli("compress", bad, "-o", "out", cwd=tmp_path)
        assert status == 1 and str(e.value) == cli_error(stderr)
        assert e.value.path is not None
    with pytest.raises(unweight.UnweightError, match="^empty: no .safetensors file"):
        unweight.decompress_file("empty", "out")
