//! compress_file / decompress_file / verify_file: the library's file-or-directory functions
//! (`unweight::model`) with the GIL released, their reports as dicts.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use unweight::bundle::{CompressOptions, Selection};
use unweight::codec::Encoding;
use unweight::model::{self, ModelReport};

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

/// The keys every report has: per shard (one for a file) its relative path and sizes, and for
/// a directory the index files rewritten and the other files copied.
fn common<'py, R>(py: Python<'py>, r: &ModelReport<R>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let shards = PyList::empty(py);
    for s in &r.shards {
        let d = PyDict::new(py);
        d.set_item("name", &s.name)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("bytes_out", s.bytes_out)?;
        // False: copied unchanged (compress selected nothing in it; decompress or verify found
        // a plain file).
        d.set_item("processed", s.report.is_some())?;
        shards.append(d)?;
    }
    out.set_item("is_dir", r.is_dir)?;
    out.set_item("shards", shards)?;
    out.set_item("indexes", &r.indexes)?;
    out.set_item("copied", &r.copied)?;
    out.set_item("bytes_in", r.bytes_in)?;
    out.set_item("bytes_out", r.bytes_out)?;
    Ok(out)
}

/// Compresses the selected BF16 tensors of the file or model directory `src` into `dst`.
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
        .detach(|| model::compress_path(&src, &dst, &opts, &|_| {}))
        .map_err(|e| error::model(py, &e))?;
    let rows = PyList::empty(py);
    let mut passed_through = 0;
    for s in &report.shards {
        let Some(r) = &s.report else { continue };
        passed_through += r.passed_through;
        for t in &r.tensors {
            let row = PyDict::new(py);
            row.set_item("shard", &s.name)?;
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
    }
    let out = common(py, &report)?;
    out.set_item("tensors", rows)?;
    out.set_item("passed_through", passed_through)?;
    Ok(out)
}

/// Restores every tensor and the original metadata of the bundle (or compressed directory)
/// `src` into `dst`.
#[pyfunction]
pub fn decompress_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| model::decompress_path(&src, &dst, &|_| {}))
        .map_err(|e| error::model(py, &e))?;
    let (decoded, passed_through) = report
        .shards
        .iter()
        .filter_map(|s| s.report.as_ref())
        .fold((0, 0), |(d, p), r| (d + r.decoded, p + r.passed_through));
    let out = common(py, &report)?;
    out.set_item("decoded", decoded)?;
    out.set_item("passed_through", passed_through)?;
    Ok(out)
}

/// Decodes every compressed tensor of `path` (a file or directory; hashes checked) and, with
/// `against`, compares everything with that original. Any mismatch raises, listing them all.
#[pyfunction]
#[pyo3(signature = (path, against = None))]
pub fn verify_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    against: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| model::verify_path(&path, against.as_deref(), &|_| {}))
        .map_err(|e| error::model(py, &e))?;
    let (decoded, compared) = report
        .shards
        .iter()
        .filter_map(|s| s.report.as_ref())
        .fold((0, 0), |(d, c), r| (d + r.decoded, c + r.compared));
    let failures = report.failures();
    if !failures.is_empty() {
        // The CLI's summary line (cli/verify.rs), then its mismatch lines.
        let compared = match &against {
            Some(o) if report.is_dir => format!(
                ", {compared} tensors and {} other files compared with {}",
                report.copied.len() + report.indexes.len(),
                o.display()
            ),
            Some(o) => format!(", {compared} tensors compared with {}", o.display()),
            None => String::new(),
        };
        let msg = format!(
            "{}: FAILED ({} problems{compared}): {}",
            path.display(),
            failures.len(),
            failures.join("; ")
        );
        return Err(error::new(
            py,
            &msg,
            Some(path.to_string_lossy().into_owned()),
            None,
            failures,
        ));
    }
    let out = common(py, &report)?;
    out.set_item("decoded", decoded)?;
    out.set_item("compared", compared)?;
    Ok(out)
}
