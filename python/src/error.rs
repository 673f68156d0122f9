//! `unweight.UnweightError`: every failure of the package, with the CLI's one-line message.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use unweight::bundle::BundleError;

create_exception!(
    unweight,
    UnweightError,
    PyValueError,
    "A file that cannot be read, compressed, decoded or written. The message is the line the \
     `unweight` CLI prints after `unweight: error: `; `path` and `tensor` name the file and the \
     tensor when known (else None), and `failures` lists verify's mismatches."
);

/// The CLI's rendering (cli::main): every line of the message trimmed, joined with `; `.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// An `UnweightError` with its attributes set.
pub fn new(
    py: Python<'_>,
    msg: &str,
    path: Option<String>,
    tensor: Option<String>,
    failures: Vec<String>,
) -> PyErr {
    let err = UnweightError::new_err(one_line(msg));
    let value = err.value(py);
    let set = value
        .setattr("path", path)
        .and_then(|()| value.setattr("tensor", tensor))
        .and_then(|()| value.setattr("failures", failures));
    match set {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// A message without a file (a bad argument).
pub fn message(py: Python<'_>, msg: &str) -> PyErr {
    new(py, msg, None, None, Vec::new())
}

pub fn bundle(py: Python<'_>, e: &BundleError) -> PyErr {
    new(
        py,
        &e.to_string(),
        Some(e.path.to_string_lossy().into_owned()),
        e.tensor.clone(),
        Vec::new(),
    )
}
