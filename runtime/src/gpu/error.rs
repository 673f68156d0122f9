//! Errors of the GPU runtime. Each names the variant, tensor or shape it concerns, so a failure
//! on the H100 machine reads without a debugger.

use cudarc::cublas::result::CublasError;
use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{library} could not be loaded ({detail}); put it on LD_LIBRARY_PATH")]
    LibraryMissing { library: &'static str, detail: &'static str },
    #[error("NVRTC failed to compile {variant} with options [{options}]:\n{log}")]
    Compile { variant: String, log: String, options: String },
    #[error("NVRTC call {call} failed for {variant}: {source}")]
    Nvrtc { variant: String, call: &'static str, source: NvrtcError },
    #[error("loading the CUBIN of {variant} failed: {}", driver_text(source))]
    Load { variant: String, source: DriverError },
    #[error("no kernel variant fits {shape}: {reason}")]
    NoVariantFits { shape: String, reason: String },
    #[error("no variant named `{name}` in the registry (generated/registry.rs)")]
    UnknownVariant { name: String },
    #[error("device {device} has compute capability {major}.{minor}; the kernels need sm_90 (Hopper)")]
    NotHopper { device: String, major: i32, minor: i32 },
    #[error("{context}: {}", driver_text(source))]
    Driver { context: String, source: DriverError },
    #[error("cuBLAS {context}: {source:?}")]
    Cublas { context: String, source: CublasError },
    #[error("tensor map for {what}: {reason}")]
    TensorMap { what: String, reason: String },
    #[error("weights {tensor}: {reason}")]
    Weights { tensor: String, reason: String },
    #[error("{what}: {reason}")]
    Shape { what: String, reason: String },
    /// The GPU Huffman decoder refused a stream (its error word, `unweight_codegen::space::huff_err`).
    #[error("weights {tensor}: the GPU Huffman decoder refused the stream{}: {reason}", chunk.map_or(String::new(), |c| format!(" (first bad chunk {c})")))]
    CorruptStream { tensor: String, chunk: Option<u32>, reason: String },
    #[error("pipeline {pipeline} needs {needs}-resident weights, but {tensor} is {actual}-resident")]
    Residency { pipeline: &'static str, needs: &'static str, actual: &'static str, tensor: String },
    #[error("codec: {0}")]
    Codec(#[from] crate::codec::CodecError),
}

/// `DriverError`'s `Display` is its `Debug`; print the CUDA name and text instead.
pub(crate) fn driver_text(e: &DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// Shorthand for wrapping a driver result with what was being done.
pub(crate) trait DriverContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError>;
}

impl<T> DriverContext<T> for Result<T, DriverError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError> {
        self.map_err(|source| GpuError::Driver { context: context(), source })
    }
}

pub(crate) trait CublasContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError>;
}

impl<T> CublasContext<T> for Result<T, CublasError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError> {
        self.map_err(|source| GpuError::Cublas { context: context(), source })
    }
}
