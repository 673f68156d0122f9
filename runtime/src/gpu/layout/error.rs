//! Why a weight cannot be laid out for the kernels, without the tensor's name: the caller that
//! knows it (`DeviceWeights`, the checks) wraps it as `GpuError::Weights { tensor, problem }`,
//! as `BundleError` wraps a `Problem`.

use unweight_codegen::abi::{BK, BM, GROUP, SUB_SYMBOLS};

use crate::codec::{CodecError, Encoding};

use super::Residency;

/// What is wrong with a weight's layout for the kernels.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the tiled layout needs n_out % {BM} == 0 and k % {BK} == 0, got {n_out}x{k}")]
    Untileable { n_out: usize, k: usize },
    #[error("palette residency needs n_out % {BM} == 0 and k % {BK} == 0 (got {shape}); keep it Huffman-resident")]
    PaletteShape { shape: String },
    #[error("{what}: {have} {unit}, expected {need}")]
    Length {
        what: &'static str,
        unit: &'static str,
        have: usize,
        need: usize,
    },
    #[error(
        "escape bitmap has {words} words and prefix {prefix} entries; {groups} groups need {need}"
    )]
    EscapeBitmap {
        words: usize,
        prefix: usize,
        groups: usize,
        need: usize,
    },
    #[error("{escaped} escaped groups need {need} exponent bytes, the table has {have}")]
    EscapeExponents {
        escaped: usize,
        need: usize,
        have: usize,
    },
    #[error("{residency} residency needs the {needs} encoding, got {got}")]
    Encoding {
        residency: Residency,
        needs: Encoding,
        got: Encoding,
    },
    #[error("chunk of {0} symbols is not a positive multiple of {GROUP}")]
    ChunkSymbols(u32),
    #[error("{0} symbols exceed the GPU decoder's 2^32 limit")]
    TooManySymbols(usize),
    #[error("no sub-chunk offsets were uploaded (chunks of {0} symbols do not hold whole sub-chunks of {SUB_SYMBOLS}); decode with refill vec4")]
    NoSubOffsets(u32),
    #[error("no sign-mantissa bytes were uploaded")]
    NoSignMantissa,
    #[error("no tiled rmm tables were uploaded (the shape is not rmm-eligible)")]
    NoRmmTables,
    #[error("{0}")]
    Codec(#[from] CodecError),
}
