//! unweight: lossless compression of BF16 LLM weights with fused decompression on Hopper GPUs.
pub mod bundle;
pub mod cli;
pub mod codec;
pub mod demo;
pub mod gpu;
pub mod kernels;
