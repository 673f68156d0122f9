//! compress_file / decompress_file / verify_file: the library's functions with the GIL released,
//! their reports as dicts.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use unweight::bundle::{self, CompressOptions, Selection};
use unweight::codec::Encoding;

use crate::error;

fn encoding(py: Python<'_>, name: &str) -> PyResult<Encoding> {
    match name {
        "huffman" => Ok(Encoding::Huffman),
        "palette" => Ok(Encoding::Palette),
        other => Err(error::message(
            py,
            &format!("invalid encoding `{other}`: expected `huffman` or `palette`"),
        )),
    }
}

/// Compresses the selected BF16 tensors of `src` into a bundle at `dst` (see the README).
#[pyfunction]
#[pyo3(signature = (src, dst, *, encoding = "huffman", tensors = None, transpose = None))]
pub fn compress_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
    encoding: &str,
    tensors: Option<&str>,
    transpose: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = CompressOptions {
        encoding: self::encoding(py, encoding)?,
        selection: Selection::new(tensors, transpose).map_err(|m| error::message(py, &m))?,
    };
    let report = py
        .detach(|| bundle::compress_file(&src, &dst, &opts, &|_| {}))
        .map_err(|e| error::bundle(py, &e))?;
    let rows = PyList::empty(py);
    for t in &report.tensors {
        let row = PyDict::new(py);
        row.set_item("name", &t.name)?;
        row.set_item("shape", &t.shape)?;
        row.set_item("encoding", t.encoding.to_string())?;
        row.set_item("orientation", t.orientation.to_string())?;
        row.set_item("elements", t.elements)?;
        row.set_item("groups", t.groups)?;
        row.set_item("escapes", t.escapes)?;
        row.set_item("bytes_before", t.bytes_before)?;
        row.set_item("bytes_after", t.bytes_after)?;
        rows.append(row)?;
    }
    let out = PyDict::new(py);
    out.set_item("tensors", rows)?;
    out.set_item("passed_through", report.passed_through)?;
    Ok(out)
}

/// Restores every tensor and the original metadata of the bundle `src` into `dst`.
#[pyfunction]
pub fn decompress_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| bundle::decompress_file(&src, &dst, &|_| {}))
        .map_err(|e| error::bundle(py, &e))?;
    let out = PyDict::new(py);
    out.set_item("decoded", report.decoded)?;
    out.set_item("passed_through", report.passed_through)?;
    Ok(out)
}

/// Decodes every compressed tensor of `path` (hashes checked) and, with `against`, compares
/// every tensor and the metadata with that original. Any mismatch raises, listing them all.
#[pyfunction]
#[pyo3(signature = (path, against = None))]
pub fn verify_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    against: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| bundle::verify_file(&path, against.as_deref(), &|_| {}))
        .map_err(|e| error::bundle(py, &e))?;
    // The CLI's summary line (cli/verify.rs), then its mismatch lines.
    let compared = match &against {
        Some(o) => format!(
            ", {} tensors compared with {}",
            report.compared,
            o.display()
        ),
        None => String::new(),
    };
    if !report.ok() {
        let msg = format!(
            "{}: FAILED ({} problems{compared}): {}",
            path.display(),
            report.failures.len(),
            report.failures.join("; ")
        );
        return Err(error::new(
            py,
            &msg,
            Some(path.to_string_lossy().into_owned()),
            None,
            report.failures,
        ));
    }
    let out = PyDict::new(py);
    out.set_item("decoded", report.decoded)?;
    out.set_item("compared", report.compared)?;
    Ok(out)
}
