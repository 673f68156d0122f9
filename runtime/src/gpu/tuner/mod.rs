//! The autotuner: measures which plan wins per (shape, orientation, residency, batch bucket) on
//! this GPU and keeps the answer in a stamped tuning table that `Linear::plan_auto` reads.
//!
//! - [`table`]: the JSON table, its stamp, atomic writes, nearest-bucket lookup (CPU-tested).
//! - [`search`]: coordinate descent over the plan axes, and exhaustive search to compare
//!   (CPU-tested with synthetic costs).
//! - [`run`]: `unweight tune` on a GPU (CUDA-event timing from `harness::bench`).

pub mod search;
pub mod table;

pub use table::{Choice, Key, Stamp, Table, TableError};

use crate::gpu::device::GpuDevice;
use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::jit::nvrtc;

/// The CUDA driver's version (`cuDriverGetVersion`, e.g. 13000 for 13.0).
pub fn driver_version() -> Result<i32, GpuError> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: the driver library is loaded (a GpuDevice exists before this is called) and the
    // call writes one int through a valid pointer.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    r.result()
        .ctx(|| "querying the driver version".to_string())?;
    Ok(v)
}

/// The stamp a table measured now on `dev` gets (and a loaded one must match).
pub fn current_stamp(dev: &GpuDevice) -> Result<Stamp, GpuError> {
    Ok(Stamp::new(
        &dev.info.name,
        dev.info.sm_count,
        driver_version()?,
        nvrtc::version()?,
    ))
}
