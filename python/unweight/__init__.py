"""unweight: lossless compression of BF16 LLM weights in safetensors bundles.

The work is done by the Rust library (``unweight._unweight``), with the GIL released. Every
failure raises :class:`UnweightError` (a ``ValueError``) whose message is the line the
``unweight`` CLI prints after ``unweight: error:``.
"""

import os

from ._unweight import (
    UnweightError,
    __version__,
    compress_file,
    decompress_file,
    load_raw as _load_raw,
    verify_file,
)

__all__ = [
    "UnweightError",
    "__version__",
    "compress_file",
    "decompress_file",
    "load_file",
    "verify_file",
]

# safetensors dtype name -> numpy dtype name; the ml_dtypes ones need ml_dtypes (else a view of
# the same bytes as an unsigned integer of the same width).
_NUMPY = {
    "BOOL": "bool",
    "U8": "<u1",
    "I8": "<i1",
    "U16": "<u2",
    "I16": "<i2",
    "F16": "<f2",
    "U32": "<u4",
    "I32": "<i4",
    "F32": "<f4",
    "U64": "<u8",
    "I64": "<i8",
    "F64": "<f8",
    "C64": "<c8",
}
_ML_DTYPES = {
    "BF16": ("bfloat16", "<u2"),
    "F8_E4M3": ("float8_e4m3fn", "<u1"),
    "F8_E5M2": ("float8_e5m2", "<u1"),
    "F8_E8M0": ("float8_e8m0fnu", "<u1"),
}
_TORCH = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "F16": "float16",
    "BF16": "bfloat16",
    "U32": "uint32",
    "I32": "int32",
    "F32": "float32",
    "U64": "uint64",
    "I64": "int64",
    "F64": "float64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def _unsupported(path, name, dtype, framework):
    e = UnweightError(f"{os.fspath(path)}: tensor `{name}`: {dtype} has no {framework} dtype")
    e.path, e.tensor, e.failures = os.fspath(path), name, []
    return e


def _numpy_dtype(np, path, name, dtype):
    if dtype in _NUMPY:
        return np.dtype(_NUMPY[dtype])
    if dtype in _ML_DTYPES:
        ml_name, fallback = _ML_DTYPES[dtype]
        try:
            import ml_dtypes
        except ImportError:
            return np.dtype(fallback)
        return np.dtype(getattr(ml_dtypes, ml_name))
    raise _unsupported(path, name, dtype, "numpy")


def _to_numpy(path, raw):
    import numpy as np

    out = {}
    for name, dtype, shape, data in raw:
        arr = np.frombuffer(data, dtype=_numpy_dtype(np, path, name, dtype))
        out[name] = arr.reshape(shape)
    return out


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            'unweight.load_file(..., framework="pt") needs PyTorch: pip install torch'
        ) from e
    return torch


def _to_torch(path, raw):
    torch = _import_torch()
    out = {}
    for name, dtype, shape, data in raw:
        tdtype = getattr(torch, _TORCH.get(dtype, ""), None)
        if not isinstance(tdtype, torch.dtype):
            raise _unsupported(path, name, dtype, "torch")
        if len(data) == 0:
            # torch.frombuffer refuses empty buffers.
            out[name] = torch.empty(shape, dtype=tdtype)
        else:
            out[name] = torch.frombuffer(data, dtype=tdtype).reshape(shape)
    return out


def load_file(path, framework="np"):
    """Every tensor of a safetensors file, as ``safetensors.numpy.load_file`` returns them:
    a dict name -> array. For an unweight bundle these are the original tensors (compressed
    ones decoded, their hashes checked), not the bundle's component tensors.

    BF16 (and F8) tensors come back as ``ml_dtypes`` arrays when ml_dtypes is installed, as
    safetensors does it, and otherwise as ``uint16`` (``uint8``) views of the same bits.
    ``framework="pt"`` returns torch tensors instead (needs torch). The arrays are writable
    copies (nothing stays mapped).
    """
    if framework in ("np", "numpy"):
        convert = _to_numpy
    elif framework in ("pt", "torch"):
        _import_torch()  # before the work, not after it
        convert = _to_torch
    else:
        raise ValueError(f'framework must be "np" or "pt", not {framework!r}')
    return convert(path, _load_raw(path))
