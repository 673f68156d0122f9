//! unweight: lossless compression of BF16 LLM weights with fused decompression on Hopper GPUs.
// `is_multiple_of` (Rust 1.87) is newer than the workspace's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]
pub mod bundle;
pub mod cli;
pub mod codec;
pub mod demo;
pub mod gpu;
pub mod minilm;
pub mod model;
pub mod rng;
