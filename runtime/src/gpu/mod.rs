//! The GPU runtime, laid out along the data path of `y = x·Wᵀ`:
//!
//! - [`layout`]: host images of the weights exactly as the kernels read them (geometry, tiled
//!   blocks, per-tile escape records); no cudarc, CPU-tested.
//! - [`weights`]: uploads those images ([`DeviceWeights`]).
//! - [`plan`]: which pipeline and variant a call runs ([`ExecPipeline`], [`Plan`]), the default
//!   variant per batch size (`plan::select`) and stream-K sizing (`plan::stream_k`).
//! - [`jit`]: variant name → loaded function (NVRTC, the disk cache, the generated registry).
//! - [`launch`]: the kernels' argument ABIs and TMA tensor maps.
//! - [`device`]: one GPU's context, preprocess scratch and cuBLAS handle ([`GpuDevice`]).
//! - [`linear`]: the engine API ([`Linear`]).
//! - [`tuner`]: the tuning table and plan search (`unweight tune`, `Linear::plan_auto`).
//! - [`harness`]: correctness checks, synthetic data, the benchmark and the demo.
//!
//! Everything that can be checked without a GPU (cache keys, the disk cache, tensor-map rules,
//! tile escape tables, host images, grids, GEMM orientation, variant defaults) is unit-tested
//! here; the GPU tests live in tests/tests/gpu_*.rs and run on the H200 (scripts/gpu-run.sh).

pub mod device;
pub mod error;
pub mod harness;
pub mod jit;
pub mod launch;
pub mod layout;
pub mod linear;
pub mod mlp;
pub mod plan;
pub mod relayout;
pub mod scheduler;
pub mod tuner;
pub mod weights;

pub use device::{DeviceInfo, GpuDevice};
pub use error::GpuError;
pub use layout::Residency;
pub use linear::Linear;
pub use plan::{default_variant, ExecPipeline, Plan};
pub use weights::DeviceWeights;
