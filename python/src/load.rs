//! load_raw: every tensor of a safetensors file (plain or bundle) as (name, dtype, shape,
//! bytearray of its little-endian bytes), compressed tensors decoded with their hashes checked.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyTuple};
use unweight::bundle::bytes::bytes_of;
use unweight::bundle::{decode_entries, Bundle, CompressedEntry};

use crate::error;

/// Decoded bytes held at once (besides the Python copies): a window of tensors decodes in
/// parallel, is copied into bytearrays, and is freed before the next.
const WINDOW_BYTES: usize = 1 << 30;

fn entry(
    py: Python<'_>,
    name: &str,
    dtype: safetensors::Dtype,
    shape: &[usize],
    data: &[u8],
) -> PyResult<Py<PyTuple>> {
    // The header's dtype names (`BF16`, `F32`, …) are the enum's variant names.
    let t = (
        name,
        format!("{dtype:?}"),
        shape.to_vec(),
        PyByteArray::new(py, data),
    );
    Ok(t.into_pyobject(py)?.unbind())
}

/// The tensors of `path` in name order.
#[pyfunction]
pub fn load_raw<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let bundle = py
        .detach(|| Bundle::open(&path))
        .map_err(|e| error::bundle(py, &e))?;
    let mut out: Vec<(String, Py<PyTuple>)> = Vec::new();
    for t in &bundle.layout.plain {
        let item = entry(py, &t.name, t.dtype, &t.shape, bundle.slice(&t.range))?;
        out.push((t.name.clone(), item));
    }
    let entries: Vec<&CompressedEntry> = bundle.layout.compressed.iter().collect();
    let mut rest = &entries[..];
    while !rest.is_empty() {
        let mut n = 0;
        let mut size = 0usize;
        while n < rest.len() && (n == 0 || size < WINDOW_BYTES) {
            size += rest[n].parts.rows * rest[n].parts.cols * 2;
            n += 1;
        }
        let (window, tail) = rest.split_at(n);
        rest = tail;
        let decoded = py.detach(|| decode_entries(&bundle, window));
        for (e, bits) in window.iter().zip(decoded) {
            let bits = bits.map_err(|err| error::bundle(py, &err))?;
            let item = entry(
                py,
                &e.name,
                safetensors::Dtype::BF16,
                &e.parts.shape,
                &bytes_of(&bits),
            )?;
            out.push((e.name.clone(), item));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    PyList::new(py, out.into_iter().map(|(_, t)| t))
}
