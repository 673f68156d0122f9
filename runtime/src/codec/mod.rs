//! The CPU codec: BF16 ⇄ (palette, sign-mantissa bytes, escape groups, index stream).
//!
//! CONTRACT: other modules and the GPU runtime rely on these names; see docs/CONTRACT.md and
//! FORMAT.md. Every function that takes a [`CompressedTensor`] validates it first and returns a
//! [`CodecError`] for malformed values instead of panicking: bundles are untrusted input.

mod buffers;
mod code;
mod decode;
mod encode;
mod escapes;
mod hash;
mod huffman;
mod multilut;
mod nibbles;
mod palette;
mod parallel;
mod simd;
mod split;
mod tensor;
#[cfg(test)]
mod tests;

pub use buffers::copied_u8;
pub use code::{build_lut, canonical_codes, code_lengths, LUT_SIZE};
pub use decode::{
    decode_bf16_encoded, decode_exponents, decode_palette_indices, decompress, decompress_batch,
    decompress_contiguous, decompress_into_parts, decompress_into_parts_notify,
    decompress_into_parts_sm,
};
pub use encode::{compress, compress_batch, transcode, CompressInput};
pub use hash::{checksum_description, components_checksum, hash_bits};
pub use palette::{choose as choose_palette, index_map as palette_index_map, NOT_IN_PALETTE};
pub use split::{exponent, rebuild, sign_mantissa};

/// Elements per group (escape granularity, padding unit of a row).
pub const GROUP: usize = 64;
/// Longest Huffman code; decode tables have `1 << MAX_CODE_LEN` entries.
pub const MAX_CODE_LEN: u32 = 12;
/// Symbols per Huffman chunk (each chunk has its own bit offset).
pub const CHUNK_SYMBOLS: u32 = 1024;

/// Which matrix is encoded: the weight as stored (`Standard`, groups along its columns) or its
/// transpose (`Transposed`, groups along the original rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Orientation {
    Standard,
    Transposed,
}

/// How the per-element palette indices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Canonical length-limited Huffman code, chunked bitstream (distribution, smallest).
    Huffman,
    /// 4-bit index per element, two per byte (inference-resident).
    Palette,
    /// The real exponent byte per element, escapes applied (inference scratch).
    Exponent,
}

/// Escape groups (groups with an exponent outside the palette).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escapes {
    /// Bit `g % 64` (LSB first) of word `g / 64` is set when group `g` is escaped.
    pub bitmap: Vec<u64>,
    /// `prefix[w]` = escaped groups in words `0..w`.
    pub prefix: Vec<u32>,
    /// 64 exponent bytes per escaped group, in slot (= increasing group) order.
    pub exponents: Vec<u8>,
}

/// A chunked Huffman bitstream of palette indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanStream {
    /// Code length per palette index (0 = unused).
    pub code_lengths: [u8; 16],
    /// Symbols per chunk.
    pub chunk_symbols: u32,
    /// Bit position of each chunk's first code.
    pub chunk_offsets: Vec<u32>,
    /// The MSB-first bitstream, zero-filled to a whole byte.
    pub bits: Vec<u8>,
    /// Bits used in `bits`.
    pub total_bits: u64,
}

/// The index stream in one of the three encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indices {
    Huffman(HuffmanStream),
    /// Nibbles `[rows][padded_cols / 2]`, element `2j` in the low nibble of byte `j`.
    Palette(Vec<u8>),
    /// Exponent bytes `[rows][padded_cols]`.
    Exponent(Vec<u8>),
}

/// One compressed BF16 tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedTensor {
    /// Original shape.
    pub shape: Vec<usize>,
    pub orientation: Orientation,
    /// Rows of the encoded matrix (`Wᵀ` when transposed).
    pub rows: usize,
    /// Columns of the encoded matrix.
    pub cols: usize,
    pub palette: [u8; 16],
    /// Sign-mantissa bytes `[rows][padded_cols]`.
    pub sm: Vec<u8>,
    pub escapes: Escapes,
    pub indices: Indices,
    /// XXH64 (seed 0) of the original tensor's little-endian bytes.
    pub hash: u64,
    /// [`components_checksum`] of the components as compressed (bundle metadata `checksum`).
    pub checksum: u64,
}

/// Errors of the codec. Messages name the problem; callers add the file and tensor.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("shape {shape:?} has {expected} elements but {actual} values were given")]
    ShapeMismatch {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("{what} is too large")]
    Overflow { what: String },
    #[error("inconsistent dimensions: {problem}")]
    Dims { problem: String },
    #[error("{what} has {actual} bytes, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("bad escape table: {problem}")]
    Escapes { problem: String },
    #[error("bad huffman code lengths {lengths:?}: {problem}")]
    CodeLengths { lengths: [u8; 16], problem: String },
    #[error("bad huffman stream: {problem}")]
    Stream { problem: String },
    #[error("hash mismatch: stored {stored:016x}, decoded data hashes to {actual:016x}")]
    HashMismatch { stored: u64, actual: u64 },
    #[error("stored-components checksum mismatch: stored {stored:016x}, the components hash to {actual:016x} (altered after compression)")]
    ChecksumMismatch { stored: u64, actual: u64 },
    #[error("unknown {kind} `{name}` (expected one of {expected})")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: &'static str,
    },
}

impl Orientation {
    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::Standard => "standard",
            Orientation::Transposed => "transposed",
        }
    }
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Huffman => "huffman",
            Encoding::Palette => "palette",
            Encoding::Exponent => "exponent",
        }
    }
}

impl std::fmt::Display for Orientation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Orientation {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Orientation::Standard),
            "transposed" => Ok(Orientation::Transposed),
            _ => Err(CodecError::UnknownName {
                kind: "orientation",
                name: s.into(),
                expected: "standard, transposed",
            }),
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "huffman" => Ok(Encoding::Huffman),
            "palette" => Ok(Encoding::Palette),
            "exponent" => Ok(Encoding::Exponent),
            _ => Err(CodecError::UnknownName {
                kind: "encoding",
                name: s.into(),
                expected: "huffman, palette, exponent",
            }),
        }
    }
}
