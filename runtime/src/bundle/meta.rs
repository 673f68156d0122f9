//! The `unweight` entry of a bundle's `__metadata__`: a JSON string describing every compressed
//! tensor, so a reader can check each component's length before decoding anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{CompressedTensor, Encoding, Orientation};

/// Version of the bundle layout and of the codec format it stores.
/// Version 2 added `checksum` (of the stored components) to every tensor; version 3 makes it
/// cover the tensor's description too (shape, orientation, encoding, Huffman parameters).
pub const FORMAT_VERSION: u32 = 3;
/// Key of the entry in `__metadata__`.
pub const METADATA_KEY: &str = "unweight";
/// Separator between a compressed tensor's name and its component's name.
pub const COMPONENT_SEP: &str = ".uw.";

/// The whole `unweight` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMeta {
    pub format_version: u64,
    /// Whether the input had a `__metadata__` map at all; decompression then restores
    /// "absent" and "empty" exactly.
    pub input_had_metadata: bool,
    pub tensors: BTreeMap<String, TensorMeta>,
    /// The input file's header exactly as it was stored (JSON and padding): decompression
    /// writes it back verbatim and puts every tensor at the offsets it names, so the restored
    /// file is byte-identical to the input. Optional: without it, decompression writes a header
    /// of its own (same tensors, metadata and bytes; the layout of FORMAT.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_header: Option<String>,
}

/// One compressed tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorMeta {
    /// Always `BF16` (versions 1 to 3).
    pub dtype: String,
    /// The original tensor's shape.
    pub shape: Vec<u64>,
    /// `standard` or `transposed`.
    pub orientation: String,
    /// `huffman`, `palette` or `exponent`.
    pub encoding: String,
    /// The encoded matrix (after folding and transposition).
    pub rows: u64,
    pub cols: u64,
    pub groups: u64,
    pub escapes: u64,
    /// XXH64 (seed 0) of the original tensor's little-endian bytes, 16 lowercase hex digits.
    pub hash: String,
    /// XXH3-64 of the stored components (`codec::components_checksum`), 16 lowercase hex digits:
    /// checked before any decode or upload.
    pub checksum: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huffman: Option<HuffmanMeta>,
}

/// Parameters of a Huffman index stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuffmanMeta {
    /// Code length per palette index (0 = unused).
    pub code_lengths: [u8; 16],
    pub chunk_symbols: u32,
    pub total_bits: u64,
}

pub fn orientation_name(o: Orientation) -> &'static str {
    match o {
        Orientation::Standard => "standard",
        Orientation::Transposed => "transposed",
    }
}

pub fn parse_orientation(s: &str) -> Option<Orientation> {
    match s {
        "standard" => Some(Orientation::Standard),
        "transposed" => Some(Orientation::Transposed),
        _ => None,
    }
}

pub fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Huffman => "huffman",
        Encoding::Palette => "palette",
        Encoding::Exponent => "exponent",
    }
}

pub fn parse_encoding(s: &str) -> Option<Encoding> {
    match s {
        "huffman" => Some(Encoding::Huffman),
        "palette" => Some(Encoding::Palette),
        "exponent" => Some(Encoding::Exponent),
        _ => None,
    }
}

impl TensorMeta {
    /// Describes a compressed tensor.
    pub fn of(t: &CompressedTensor) -> Self {
        let huffman = match &t.indices {
            crate::codec::Indices::Huffman(h) => Some(HuffmanMeta {
                code_lengths: h.code_lengths,
                chunk_symbols: h.chunk_symbols,
                total_bits: h.total_bits,
            }),
            _ => None,
        };
        Self {
            dtype: "BF16".into(),
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            orientation: orientation_name(t.orientation).into(),
            encoding: encoding_name(t.encoding()).into(),
            rows: t.rows as u64,
            cols: t.cols as u64,
            groups: t.groups() as u64,
            escapes: t.escape_count() as u64,
            hash: format!("{:016x}", t.hash),
            checksum: format!("{:016x}", t.checksum),
            huffman,
        }
    }

    /// The same entry with every number that is only known after encoding set to its widest
    /// value: its JSON is at least as long as the real entry's, which bounds the header size
    /// before any tensor is encoded.
    pub fn widest(shape: &[usize], orientation: Orientation, encoding: Encoding) -> Self {
        Self {
            dtype: "BF16".into(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            orientation: orientation_name(orientation).into(),
            encoding: encoding_name(encoding).into(),
            rows: u64::MAX,
            cols: u64::MAX,
            groups: u64::MAX,
            escapes: u64::MAX,
            hash: "f".repeat(16),
            checksum: "f".repeat(16),
            huffman: (encoding == Encoding::Huffman).then_some(HuffmanMeta {
                code_lengths: [u8::MAX; 16],
                chunk_symbols: u32::MAX,
                total_bits: u64::MAX,
            }),
        }
    }
}

impl BundleMeta {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data always serializes")
    }
}
