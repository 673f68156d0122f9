//! NVRTC for the JIT: `unweight_codegen::nvrtc` (the one wrapper and option list, shared with the
//! compile check) with its failures named by variant as [`GpuError`]s.

use unweight_codegen::nvrtc::{self as wrapper, NvrtcFailure};
pub use unweight_codegen::nvrtc::{
    compile_count, options as compile_options, render_log, Cubin, ARCH,
};

use crate::gpu::error::GpuError;

fn gpu_error(variant: &str, options: &[String], e: NvrtcFailure) -> GpuError {
    match e {
        NvrtcFailure::Missing => GpuError::LibraryMissing {
            library: "libnvrtc (NVRTC 13)",
            detail: "needed to compile kernels",
        },
        NvrtcFailure::Call { call, source } => GpuError::Nvrtc {
            variant: variant.to_string(),
            call,
            source,
        },
        NvrtcFailure::Compile { log } => GpuError::Compile {
            variant: variant.to_string(),
            log,
            options: options.join(" "),
        },
    }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), GpuError> {
    wrapper::version().map_err(|e| gpu_error("the version query", &[], e))
}

/// Compiles `source` (whose kernel is `name`) to a CUBIN for [`ARCH`].
pub fn compile(name: &str, source: &str, options: &[String]) -> Result<Cubin, GpuError> {
    wrapper::compile(name, source, options).map_err(|e| gpu_error(name, options, e))
}
