//! `unweight._unweight`: the Rust half of the `unweight` Python package. The functions wrap the
//! library's bundle API one to one, release the GIL while they work, and raise
//! `unweight.UnweightError` with the message the CLI prints. `python/unweight/__init__.py` turns
//! the raw tensors of [`load::load_raw`] into numpy arrays or torch tensors.

mod error;
mod load;
mod ops;

use pyo3::prelude::*;

#[pymodule]
fn _unweight(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("UnweightError", m.py().get_type::<error::UnweightError>())?;
    m.add_function(wrap_pyfunction!(ops::compress_file, m)?)?;
    m.add_function(wrap_pyfunction!(ops::decompress_file, m)?)?;
    m.add_function(wrap_pyfunction!(ops::verify_file, m)?)?;
    m.add_function(wrap_pyfunction!(load::load_raw, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
