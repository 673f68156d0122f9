//! The CPU codec: BF16 ⇄ (palette, sign-mantissa bytes, escape groups, index stream).
//!
//! CONTRACT (other modules and the GPU runtime rely on these names; see docs/CONTRACT.md).
//! Bodies are filled in by the codec work; signatures may gain items but not lose these.

/// Elements per group (escape granularity, padding unit of a row).
pub const GROUP: usize = 64;
/// Longest Huffman code; decode tables have `1 << MAX_CODE_LEN` entries.
pub const MAX_CODE_LEN: u32 = 12;
/// Symbols per Huffman chunk (each chunk has its own bit offset).
pub const CHUNK_SYMBOLS: u32 = 1024;
