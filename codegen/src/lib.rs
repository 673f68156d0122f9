//! unweight-codegen: the kernel variant space, template rendering and registry emission.
//!
//! - [`abi`]: the numbers kernels and runtime share (tile sizes, record layout, layout codes, limits);
//!   no dependencies.
//! - [`variant`]: the variant types and the one name function (no dependencies; the runtime uses it).
//! - [`space`]: the axes, their product, the budget check that prunes it and every derived constant.
//! - `render`, `registry`, `generate` (feature `generator`): templates/ → generated/.
//! - `nvrtc` (feature `jit`): the one NVRTC wrapper and option list, used by the runtime's JIT and
//!   by the compile check.
//! - `compile` (feature `nvrtc`): NVRTC + cuobjdump compile check of generated kernels, no GPU needed.

// `is_multiple_of` (Rust 1.87) is newer than the workspace's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]
pub mod abi;
pub mod space;
pub mod variant;

#[cfg(feature = "nvrtc")]
pub mod compile;
#[cfg(feature = "generator")]
pub mod generate;
#[cfg(feature = "jit")]
pub mod nvrtc;
#[cfg(feature = "generator")]
pub mod registry;
#[cfg(feature = "generator")]
pub mod render;

#[cfg(feature = "generator")]
pub use generate::{generate, Mode};
