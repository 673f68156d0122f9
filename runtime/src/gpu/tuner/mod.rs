//! The autotuner: measures which plan wins per (shape, orientation, residency, batch bucket) on
//! this GPU and keeps the answer in a stamped tuning table that `Linear::plan_auto` reads.
//!
//! - [`table`]: the JSON table, its stamp, atomic writes, nearest-bucket lookup (CPU-tested).
//! - [`search`]: coordinate descent over the plan axes, and exhaustive search to compare
//!   (CPU-tested with synthetic costs).
//! - [`run`]: `unweight tune` on a GPU (CUDA-event timing from `harness::bench`).

pub mod run;
pub mod search;
pub mod split;
pub mod table;

pub use split::best_stack_split;
pub use table::{Choice, Key, Stamp, Table, TableError};

use unweight_codegen::variant::Variant;

use crate::gpu::device::GpuDevice;
use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::jit::{nvrtc, registry};
use crate::gpu::layout::Residency;
use crate::gpu::linear::Linear;
use crate::gpu::plan::{self, ctas_for, ExecPipeline, Plan};

/// Where a [`Linear::plan_auto`] plan came from (for logging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The table's entry for the nearest tuned batch bucket.
    Tuned { bucket: usize },
    /// The shape is not in the table: [`default_pipeline`] with its default variant.
    Default,
}

/// The pipeline an untuned weight of `residency` runs (and the tuner's starting point).
pub fn default_pipeline(residency: Residency) -> ExecPipeline {
    match residency {
        Residency::Huffman => ExecPipeline::Exponent,
        Residency::Palette => ExecPipeline::DirectPalette,
        Residency::Raw => ExecPipeline::Raw,
    }
}

/// [`Linear::plan_auto`]: the nearest tuned bucket's choice, else the default. At the tuned
/// bucket itself the measured CTA count is used; at another batch the CTA count is sized again
/// with the tuned spread (a count fixed for one batch can be invalid for another).
pub fn plan_auto(lin: &Linear, table: &Table, m: usize) -> Result<(Plan, Source), GpuError> {
    let w = lin.weights();
    let g = w.geometry;
    let residency = w.resident.residency();
    let Some(e) = table.nearest(g.n_out, g.k, g.orientation, residency, m) else {
        return Ok((lin.plan(default_pipeline(residency), m)?, Source::Default));
    };
    let c = &e.choice;
    let source = Source::Tuned {
        bucket: e.key.bucket,
    };
    let Some(name) = c.variant.as_deref() else {
        return Ok((lin.plan(c.pipeline, m)?, source));
    };
    let rmm = registry::find(name).ok_or_else(|| GpuError::UnknownVariant {
        name: name.to_string(),
    })?;
    // A choice tuned for the other block layout of this residency (tiled vs fragment palette)
    // cannot run on these buffers: the weight is untuned in its own layout.
    if let Variant::Rmm(v) = rmm.variant {
        if !w.resident.feeds(v.a_src) {
            return Ok((lin.plan(default_pipeline(residency), m)?, Source::Default));
        }
    }
    let mut plan = lin.plan_with(c.pipeline, m, rmm)?;
    if let Some(r) = plan.rmm {
        plan.ctas = if e.key.bucket == m && plan::ctas_valid(r, g.n_out, g.k, m, c.ctas) {
            c.ctas
        } else {
            ctas_for(r, g.n_out, g.k, m, w.device().info.sm_count, c.spread)
        };
    }
    Ok((plan, source))
}

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
