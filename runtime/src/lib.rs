//! unweight: lossless compression of BF16 LLM weights with fused decompression on Hopper GPUs.
pub mod codec;
