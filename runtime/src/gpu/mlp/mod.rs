//! MLP blocks over [`Linear`](crate::gpu::linear::Linear)s, the unit an engine calls per token:
//!
//! - [`layer`]: [`Mlp`], one SwiGLU (`down(silu(gate·x) ⊙ up·x)`) or GELU (`fc2(gelu(fc1·x))`)
//!   layer; the activation is a generated kernel (`act_silu_mul`, `act_gelu`).
//! - [`stack`]: [`MlpStack`], L layers, each easy (palette-resident) or hard (Huffman-resident),
//!   with preallocated buffers; the scheduler (`gpu::scheduler`) overlaps hard layers' decodes.
//! - [`budget`]: which layers are easy under a device-memory budget (CPU-tested).
//! - [`activation`]: the activation kernels' CPU reference, bit-exact with them.

pub mod activation;
pub mod budget;
pub mod layer;
pub mod load;
pub mod stack;

pub use budget::{BudgetPlan, LayerKind};
pub use layer::Mlp;
pub use load::{build_stack, load_stack, LoadReport, Naming, Residencies};
pub use stack::{MlpStack, PlanOptions, StackPlan};
