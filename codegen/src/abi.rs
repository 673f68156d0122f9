//! The kernel ABI: every number a generated kernel and the runtime that feeds it must agree on,
//! written once. No dependencies (available with `default-features = false`), so the runtime
//! imports it; `space.rs` derives the per-variant constants from it, the templates receive the
//! values through the Tera context and `static_assert` them, and the codec's own format
//! constants are tied to it by a test (runtime/src/codec/tests.rs).
//!
//! docs/CONTRACT.md describes the layouts these numbers size.

/// Weight rows of one rmm CTA tile: two consumer warpgroups × WGMMA m64.
pub const BM: u32 = 128;
/// k per block: one 128-byte swizzle atom of bf16.
pub const BK: u32 = 64;
/// Elements per group: the escape unit, the padding unit of a row and the Huffman output unit.
pub const GROUP: u32 = 64;
/// Longest Huffman code; the decode table has `1 << MAX_CODE_LEN` entries.
pub const MAX_CODE_LEN: u32 = 12;
/// Zero bytes appended to a Huffman bitstream at upload (the length then rounded up to 16 bytes).
/// The kernels read whole 32-bit words (refill `word`) or 16-byte blocks (refill `vec4`) and clamp
/// every load to the one holding the stream's last byte, so the upload must hold that block whole.
pub const BITS_TAIL: u32 = 16;

/// Symbols per resident sub-chunk offset of a Huffman weight: the upload's validating decode
/// (refill `word` / `vec4`) records the bit offset of every `SUB_SYMBOLS`-th symbol of each chunk,
/// and refill `sub256` decodes one such sub-chunk per lane. Chunks must hold whole sub-chunks.
pub const SUB_SYMBOLS: u32 = 256;

/// Opt-in dynamic shared memory per block on sm_90 (227 KB).
pub const SMEM_LIMIT: u32 = 232_448;

/// Consumer threads of an rmm CTA (two warpgroups); a stream-K partial is `[tile_n / 2][256]` f32.
pub const RMM_CONSUMER_THREADS: u32 = 256;

/// Bytes of one tiled block (one CTA tile × one k block) per weight component (docs/CONTRACT.md,
/// "Tiled layout"): sign-mantissa bytes and exponent bytes take one byte per element, palette
/// indices half a byte.
pub const SM_TILE_BYTES: u32 = BM * BK;
/// Exponent bytes of one tiled block.
pub const EXP_TILE_BYTES: u32 = BM * BK;
/// Palette-index nibbles of one tiled block.
pub const NIBBLE_TILE_BYTES: u32 = BM * BK / 2;

/// Fragment layout (docs/CONTRACT.md, "Fragment layout", read by the RS-form rmm): a block holds
/// the same elements as a tiled block, re-ordered so consumer thread `ct` (0..256) finds its 32
/// WGMMA A-fragment elements of the k block as 16-byte vectors: vector `v` of thread `ct` at
/// byte `(v * FRAG_THREADS + ct) * FRAG_VECTOR_BYTES`. A warp's loads of one vector are then 512
/// contiguous bytes (no bank conflicts).
pub const FRAG_VECTOR_BYTES: u32 = 16;
/// Threads that share one fragment block (both consumer warpgroups).
pub const FRAG_THREADS: u32 = RMM_CONSUMER_THREADS;
/// Elements of one thread per k block: 4 k16 steps × 4 registers × 2 bf16.
pub const FRAG_ELEMS: u32 = 32;
/// BF16 weights of one fragment block (the raw RS twin reads them; 4 vectors per thread).
pub const BF16_TILE_BYTES: u32 = BM * BK * 2;

/// One `tile_esc` record per (CTA tile, k block): u32 words, little-endian.
pub const ESC_RECORD_BYTES: u32 = 32;
/// u32 words per record.
pub const ESC_RECORD_WORDS: u32 = ESC_RECORD_BYTES / 4;
/// Words 0..4: the 128-bit mask of the tile's escaped local groups (bit j = local group j).
pub const ESC_MASK_WORDS: u32 = 4;
/// Word 4: slot of the tile's first escaped group in the tile-ordered escape exponents.
pub const ESC_FIRST_WORD: u32 = 4;
/// Word 5: number of the tile's escaped groups (words 6 and 7 are zero).
pub const ESC_COUNT_WORD: u32 = 5;

/// Where `huff_exponent` / `huff_palette` place their output, and where `huff_bf16` reads its
/// sign-mantissa bytes (the kernels' last parameter, `u32 layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum HuffLayout {
    /// `[rows][padded_cols]` (bytes) / `[rows][padded_cols / 2]` (nibbles), as the codec.
    RowMajor = 0,
    /// The rmm's tiled layout of a standard weight (encoded W [n_out][k]).
    TiledStandard = 1,
    /// The rmm's tiled layout of a transposed weight (encoded Wᵀ [k][n_out]).
    TiledTransposed = 2,
}

impl HuffLayout {
    pub const ALL: [HuffLayout; 3] = [
        HuffLayout::RowMajor,
        HuffLayout::TiledStandard,
        HuffLayout::TiledTransposed,
    ];

    /// The value the kernel receives.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// The error buffer of a `huff_*` kernel (its last parameter, `u32* err`): [`huff_err::WORDS`]
/// words, zero before the first launch. `err[0] |= reason bits`; `err[1] = max(!c)` over the
/// refused chunks `c`, so `!err[1]` is the first refused chunk and `err[1] == 0` names none.
pub mod huff_err {
    /// Words of the buffer: reasons, `!first refused chunk`.
    pub const WORDS: u32 = 2;
    /// Shape or stream sizes inconsistent (chunk size, chunk count, stream shorter than its bits,
    /// more than 2^32 bits).
    pub const ARGS: u32 = 1;
    /// A chunk's offset lies past the stream's end.
    pub const OFFSET: u32 = 2;
    /// A chunk's bits match no code.
    pub const NO_CODE: u32 = 4;
    /// A chunk's codes do not end where the chunk ends (the next chunk's offset, or the stream's end).
    pub const LENGTH: u32 = 8;
    /// An escape slot lies past the escape exponents.
    pub const ESCAPE: u32 = 16;
    /// Every reason, with its words.
    pub const ALL: [(u32, &str); 5] = [
        (ARGS, "shape or stream sizes are inconsistent"),
        (OFFSET, "a chunk offset lies past the stream"),
        (NO_CODE, "bits match no code"),
        (LENGTH, "the codes do not end where the chunk ends"),
        (ESCAPE, "an escape slot lies past the escape exponents"),
    ];

    /// The reasons set in `bits`, in words.
    pub fn describe(bits: u32) -> Vec<&'static str> {
        ALL.iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|&(_, text)| text)
            .collect()
    }
}

// The relations the kernels and the runtime rely on, checked when the crate compiles.
const _: () = {
    assert!(
        ESC_MASK_WORDS * 32 == BM,
        "one mask bit per local group of a tile"
    );
    assert!(ESC_FIRST_WORD >= ESC_MASK_WORDS && ESC_COUNT_WORD >= ESC_MASK_WORDS);
    assert!(ESC_FIRST_WORD != ESC_COUNT_WORD && ESC_COUNT_WORD < ESC_RECORD_WORDS);
    assert!(
        BK == GROUP && BM % GROUP == 0,
        "a tile row holds whole groups"
    );
    assert!(NIBBLE_TILE_BYTES * 2 == SM_TILE_BYTES);
    assert!(
        FRAG_THREADS * FRAG_ELEMS == BM * BK,
        "every element of a block in one thread's fragment"
    );
    assert!(
        NIBBLE_TILE_BYTES == FRAG_THREADS * FRAG_VECTOR_BYTES,
        "one nibble vector per thread"
    );
    // templates/huff.cu.tera: a tail of 15 bytes already holds the 16-byte block of the stream's
    // last byte (vec4), 3 bytes its last partial word (word).
    assert!(BITS_TAIL >= 15);
    assert!(SUB_SYMBOLS % GROUP == 0, "a sub-chunk holds whole groups");
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huff_err_reasons_are_distinct_bits() {
        let mut seen = 0;
        for (bit, _) in huff_err::ALL {
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(seen & bit, 0);
            seen |= bit;
        }
        assert_eq!(
            huff_err::describe(huff_err::NO_CODE | huff_err::ESCAPE),
            [
                "bits match no code",
                "an escape slot lies past the escape exponents"
            ]
        );
        assert!(huff_err::describe(0).is_empty());
    }

    #[test]
    fn layout_codes_are_dense() {
        for (i, l) in HuffLayout::ALL.into_iter().enumerate() {
            assert_eq!(l.code(), i as u32);
        }
    }
}
