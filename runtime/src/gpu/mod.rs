//! The GPU runtime: NVRTC JIT with a two-level cache, TMA tensor maps, device-resident weights,
//! the execution pipelines of `y = x·Wᵀ`, and the benchmark.
//!
//! Everything that can be checked without a GPU (cache keys, the disk cache, tensor-map rules,
//! tile escape tables, host images, grids, GEMM orientation, variant defaults) is unit-tested
//! here; the GPU tests live in tests/tests/gpu_*.rs and run on the H100 (scripts/gpu-run.sh).

pub mod bench;
pub mod cache;
pub mod check;
pub mod cublas;
pub mod demo;
pub mod device;
pub mod error;
pub mod host;
pub mod jit;
pub mod launch;
pub mod linear;
pub mod nvrtc;
pub mod pipelines;
pub mod scratch;
pub mod synth;
pub mod tile_esc;
pub mod tiles;
pub mod tma;
pub mod weights;

pub use device::{DeviceInfo, GpuDevice};
pub use error::GpuError;
pub use linear::Linear;
pub use pipelines::{default_variant, ExecPipeline, Plan};
pub use weights::DeviceWeights;
