//! Errors of the GPU runtime. Each names the variant, tensor or shape it concerns, so a failure
//! on the H100 machine reads without a debugger.

use cudarc::cublas::result::CublasError;
use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;

use super::layout::{LayoutError, Residency};

/// Every failure of the GPU runtime, naming the variant, tensor, buffer or call it is about.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{library} could not be loaded ({detail}); put it on LD_LIBRARY_PATH")]
    LibraryMissing {
        library: &'static str,
        detail: &'static str,
    },
    #[error("NVRTC failed to compile {variant} with options [{options}]:\n{log}")]
    Compile {
        variant: String,
        log: String,
        options: String,
    },
    #[error("NVRTC call {call} failed for {variant}: {source}")]
    Nvrtc {
        variant: String,
        call: &'static str,
        source: NvrtcError,
    },
    #[error("loading the CUBIN of {variant} failed: {}", driver_text(source))]
    Load {
        variant: String,
        source: DriverError,
    },
    #[error(
        "{variant} needs {need} CTAs per SM resident at once (its stream-K CTAs wait on each other), \
         but the device fits {got}"
    )]
    Occupancy {
        variant: String,
        need: u32,
        got: u32,
    },
    #[error("no kernel variant fits {shape}: {reason}")]
    NoVariantFits { shape: String, reason: String },
    #[error("no variant named `{name}` in the registry (generated/registry.rs)")]
    UnknownVariant { name: String },
    #[error(
        "device {device} has compute capability {major}.{minor}; the kernels need sm_90 (Hopper)"
    )]
    NotHopper {
        device: String,
        major: i32,
        minor: i32,
    },
    #[error("{context}: {}", driver_text(source))]
    Driver {
        context: String,
        source: DriverError,
    },
    #[error("cuBLAS {context}: {source:?}")]
    Cublas {
        context: String,
        source: CublasError,
    },
    #[error("tensor map for {what}: {reason}")]
    TensorMap { what: String, reason: String },
    #[error("weights {tensor}: {problem}")]
    Weights {
        tensor: String,
        #[source]
        problem: LayoutError,
    },
    /// The weight's components no longer match their stored checksum: refused before upload.
    #[error("weights {tensor}: {source}; refused before upload")]
    Checksum {
        tensor: String,
        #[source]
        source: crate::codec::CodecError,
    },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    #[error("{what}: {reason}")]
    Shape { what: String, reason: String },
    #[error("{what} holds {have} bytes, need {need}")]
    BufferTooSmall {
        what: String,
        have: usize,
        need: usize,
    },
    #[error("{what} = {value} exceeds {limit}")]
    TooLarge {
        what: String,
        value: usize,
        limit: usize,
    },
    #[error("the plan {plan} does not fit {tensor}: {reason}")]
    PlanMismatch {
        plan: String,
        tensor: String,
        reason: String,
    },
    #[error("{variant} is not an {expected} variant")]
    WrongVariant { variant: String, expected: String },
    #[error("no execution pipeline named `{name}` (expected one of {expected})")]
    UnknownPipeline { name: String, expected: String },
    #[error("{pipeline} needs {needs}-resident weights, but {tensor} is {actual}-resident")]
    Residency {
        pipeline: String,
        needs: Residency,
        actual: Residency,
        tensor: String,
    },
    /// The GPU Huffman decoder refused a stream (its error word, `unweight_codegen::abi::huff_err`).
    #[error(
        "weights {tensor}: the GPU Huffman decoder refused the stream{}: {reason}",
        first_chunk(*chunk)
    )]
    CorruptStream {
        tensor: String,
        /// The first refused chunk, when the kernel named one.
        chunk: Option<u32>,
        reason: String,
    },
    /// An MLP layer or stack that cannot be built or run as asked.
    #[error("MLP {layer}: {reason}")]
    Mlp { layer: String, reason: String },
    #[error("codec: {0}")]
    Codec(#[from] crate::codec::CodecError),
}

fn first_chunk(chunk: Option<u32>) -> String {
    chunk.map_or(String::new(), |c| format!(" (first bad chunk {c})"))
}

/// `DriverError`'s `Display` is its `Debug`; print the CUDA name and text instead.
pub(crate) fn driver_text(e: &DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
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
        self.map_err(|source| GpuError::Driver {
            context: context(),
            source,
        })
    }
}

pub(crate) trait CublasContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError>;
}

impl<T> CublasContext<T> for Result<T, CublasError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GpuError> {
        self.map_err(|source| GpuError::Cublas {
            context: context(),
            source,
        })
    }
}

/// A layout problem of the weight `tensor`.
pub fn weights_error(tensor: &str, problem: LayoutError) -> GpuError {
    GpuError::Weights {
        tensor: tensor.to_string(),
        problem,
    }
}
