"""Bad input raises unweight.UnweightError with the CLI's message, and leaves no output behind."""

import pytest

import unweight
from conftest import cli_error, listing


def _raises_like_cli(cli, call, cli_args, *, cwd, tensor=None):
    """`call()` raises UnweightError whose message is the CLI's for `cli_args`, and neither
    writes nor leaves a file in `cwd`."""
    before = {p.name: p.read_bytes() for p in cwd.iterdir() if p.is_file()}
    with pytest.raises(unweight.UnweightError) as e:
        call()
    assert listing(cwd) == sorted(before), "output or temporary file left behind"
    assert {p.name: p.read_bytes() for p in cwd.iterdir() if p.is_file()} == before
    status, _, stderr = cli(*cli_args, cwd=cwd)
    assert status == 1
    assert str(e.value) == cli_error(stderr)
    assert listing(cwd) == sorted(before)
    assert e.value.tensor == tensor
    return e.value


def test_is_a_value_error():
    assert issubclass(unweight.UnweightError, ValueError)


def test_not_safetensors(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}")
    err = _raises_like_cli(
        cli,
        lambda: unweight.compress_file("junk.safetensors", "out.safetensors"),
        ["compress", "junk.safetensors", "-o", "out.safetensors"],
        cwd=tmp_path,
    )
    assert str(err).startswith("junk.safetensors: not a valid safetensors file: ")
    assert err.path == "junk.safetensors"
    for call in (
        lambda: unweight.decompress_file("junk.safetensors", "out.safetensors"),
        lambda: unweight.verify_file("junk.safetensors"),
        lambda: unweight.load_file("junk.safetensors"),
    ):
        with pytest.raises(unweight.UnweightError, match="^junk.safetensors: not a valid"):
            call()
    assert listing(tmp_path) == ["junk.safetensors"]


def test_missing_file(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _raises_like_cli(
        cli,
        lambda: unweight.decompress_file("nope.safetensors", "out.safetensors"),
        ["decompress", "nope.safetensors", "-o", "out.safetensors"],
        cwd=tmp_path,
    )
    assert str(err).startswith("nope.safetensors: cannot open: ")


def test_decompress_of_a_plain_file(model_file, cli, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    err = _raises_like_cli(
        cli,
        lambda: unweight.decompress_file(model_file.name, "out.safetensors"),
        ["decompress", model_file.name, "-o", "out.safetensors"],
        cwd=model_file.parent,
    )
    assert "is not an unweight bundle" in str(err)


def test_compress_of_a_bundle(model_file, cli, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    unweight.compress_file(model_file.name, "b.safetensors")
    _raises_like_cli(
        cli,
        lambda: unweight.compress_file("b.safetensors", "c.safetensors"),
        ["compress", "b.safetensors", "-o", "c.safetensors"],
        cwd=model_file.parent,
    )


def test_selected_tensor_not_bf16(model_file, cli, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    err = _raises_like_cli(
        cli,
        lambda: unweight.compress_file(model_file.name, "b.safetensors", tensors="bias"),
        ["compress", model_file.name, "-o", "b.safetensors", "--tensors", "bias"],
        cwd=model_file.parent,
        tensor="model.layers.0.mlp.up_proj.bias",
    )
    assert str(err) == (
        "model.safetensors: tensor `model.layers.0.mlp.up_proj.bias`: "
        "is F32, but only BF16 tensors can be compressed"
    )


@pytest.mark.parametrize(
    "kwargs,args",
    [
        ({"tensors": "(x"}, ["--tensors", "(x"]),
        ({"transpose": "[z"}, ["--transpose", "[z"]),
        ({"tensors": "nothing_matches"}, ["--tensors", "nothing_matches"]),
        ({"transpose": "q_proj"}, ["--transpose", "q_proj"]),
    ],
)
def test_bad_selection(model_file, cli, monkeypatch, kwargs, args):
    monkeypatch.chdir(model_file.parent)
    _raises_like_cli(
        cli,
        lambda: unweight.compress_file(model_file.name, "b.safetensors", **kwargs),
        ["compress", model_file.name, "-o", "b.safetensors", *args],
        cwd=model_file.parent,
    )


def test_output_is_the_input(model_file, cli, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    _raises_like_cli(
        cli,
        lambda: unweight.compress_file(model_file.name, model_file.name),
        ["compress", model_file.name, "-o", model_file.name],
        cwd=model_file.parent,
    )


def test_unknown_encoding(model_file, tmp_path):
    with pytest.raises(unweight.UnweightError, match="invalid encoding `zip`"):
        unweight.compress_file(model_file, tmp_path / "b.safetensors", encoding="zip")
    assert not (tmp_path / "b.safetensors").exists()


def _corrupt_bundle(model_file, cwd):
    """A bundle whose up_proj sign-mantissa bytes were changed after compression."""
    unweight.compress_file(model_file, cwd / "b.safetensors")
    raw = bytearray((cwd / "b.safetensors").read_bytes())
    import json
    import struct

    (n,) = struct.unpack("<Q", raw[:8])
    start, _ = json.loads(raw[8 : 8 + n])["model.layers.0.mlp.up_proj.weight.uw.sm"]["data_offsets"]
    raw[8 + n + start] ^= 0x01
    (cwd / "bad.safetensors").write_bytes(bytes(raw))
    (cwd / "b.safetensors").unlink()


def test_corrupt_bundle_names_the_tensor(model_file, cli, monkeypatch):
    cwd = model_file.parent
    monkeypatch.chdir(cwd)
    _corrupt_bundle(model_file, cwd)
    tensor = "model.layers.0.mlp.up_proj.weight"
    err = _raises_like_cli(
        cli,
        lambda: unweight.decompress_file("bad.safetensors", "out.safetensors"),
        ["decompress", "bad.safetensors", "-o", "out.safetensors"],
        cwd=cwd,
        tensor=tensor,
    )
    assert str(err).startswith(f"bad.safetensors: tensor `{tensor}`: ")
    with pytest.raises(unweight.UnweightError) as e:
        unweight.load_file("bad.safetensors")
    assert str(e.value) == str(err)
    with pytest.raises(unweight.UnweightError) as e:
        unweight.verify_file("bad.safetensors")
    assert e.value.failures == [str(err)]
    status, _, stderr = cli("verify", "bad.safetensors", cwd=cwd)
    assert status == 1 and f"unweight: mismatch: {err}" in stderr.splitlines()


def test_load_file_refuses_a_dtype_numpy_lacks(tmp_path):
    path = tmp_path / "f.safetensors"
    # By hand: conftest's writer knows only the dtypes the other tests use.
    import json
    import struct

    header = json.dumps({"x": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00")
    with pytest.raises(unweight.UnweightError, match=r"tensor `x`: F4 has no numpy dtype"):
        unweight.load_file(path)
