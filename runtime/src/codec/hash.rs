//! The integrity hashes: per tensor, XXH64 (seed 0) over the original little-endian bytes
//! (checked after decoding); and XXH3-64 over its description and stored components (checked
//! before decoding or uploading, since a GPU decoder cannot check the first).

use xxhash_rust::xxh3::{xxh3_64, Xxh3};
use xxhash_rust::xxh64::Xxh64;

use super::{CodecError, CompressedTensor, Encoding, Indices, Orientation};

/// XXH64 (seed 0) of the little-endian bytes of `bits`.
pub fn hash_bits(bits: &[u16]) -> u64 {
    let mut h = Xxh64::new(0);
    update(&mut h, bits);
    h.digest()
}

/// Feed the little-endian bytes of `bits` to `h`.
pub(super) fn update(h: &mut Xxh64, bits: &[u16]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: u16 has no padding and every byte pattern is a valid u8; the slice covers exactly
        // the 2 * len bytes of `bits`, u8 needs no alignment, and the borrow keeps them alive.
        let bytes =
            unsafe { std::slice::from_raw_parts(bits.as_ptr().cast::<u8>(), 2 * bits.len()) };
        h.update(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    {
        let mut buf = [0u8; 8192];
        for block in bits.chunks(buf.len() / 2) {
            for (dst, &v) in buf.chunks_exact_mut(2).zip(block) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            h.update(&buf[..block.len() * 2]);
        }
    }
}

/// The stored-components checksum of `t`: XXH3-64 (seed 0) of the XXH3-64 digests (8 bytes
/// little-endian each) of, first, its [`checksum_description`] (shape, orientation, encoding, encoded
/// dimensions, Huffman parameters: what a decoder reads besides the components, so a changed
/// shape or code length is caught like a changed byte), then its components' bytes as a bundle
/// stores them, in file order: `sm`, `palette`, `idx`, `chunk_offsets` (Huffman only),
/// `esc_bitmap`, `esc_exp`. Per-component digests let the large components hash in parallel.
pub fn components_checksum(t: &CompressedTensor) -> u64 {
    components_checksum_with_sm(t, &t.sm)
}

/// [`components_checksum`] of a tensor whose sign-mantissa plane `sm` is held elsewhere (its own
/// `sm` field is then not looked at): the bundle reader passes the plane from the mapped file.
pub fn components_checksum_with_sm(t: &CompressedTensor, sm: &[u8]) -> u64 {
    let (idx, offsets): (&[u8], Option<&[u32]>) = match &t.indices {
        Indices::Huffman(h) => {
            let used = usize::try_from(h.total_bits.div_ceil(8)).unwrap_or(usize::MAX);
            (&h.bits[..used.min(h.bits.len())], Some(&h.chunk_offsets))
        }
        Indices::Palette(v) | Indices::Exponent(v) => (v, None),
    };
    let ((sm, idx), (small, exp)) = rayon::join(
        || rayon::join(|| xxh3_64(sm), || xxh3_64(idx)),
        || {
            rayon::join(
                || {
                    (
                        xxh3_64(&t.palette),
                        offsets.map(|o| words(o.iter().map(|w| w.to_le_bytes()))),
                        words(t.escapes.bitmap.iter().map(|w| w.to_le_bytes())),
                    )
                },
                || xxh3_64(&t.escapes.exponents),
            )
        },
    );
    let (palette, offsets, bitmap) = small;
    let digests: Vec<u64> = [
        Some(xxh3_64(&checksum_description(t))),
        Some(sm),
        Some(palette),
        Some(idx),
        offsets,
        Some(bitmap),
        Some(exp),
    ]
    .into_iter()
    .flatten()
    .collect();
    let bytes: Vec<u8> = digests.iter().flat_map(|d| d.to_le_bytes()).collect();
    xxh3_64(&bytes)
}

/// The decode parameters of `t` outside its components, as FORMAT.md §7 fixes them: every
/// integer little-endian: the shape's rank (u64) and dimensions (u64 each), the orientation
/// (u8: 0 standard, 1 transposed), the encoding (u8: 0 huffman, 1 palette, 2 exponent), `rows`
/// and `cols` (u64), and for huffman the 16 code lengths (u8 each), `chunk_symbols` (u32) and
/// `total_bits` (u64).
pub fn checksum_description(t: &CompressedTensor) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + 8 * t.shape.len());
    b.extend_from_slice(&(t.shape.len() as u64).to_le_bytes());
    for &d in &t.shape {
        b.extend_from_slice(&(d as u64).to_le_bytes());
    }
    b.push(match t.orientation {
        Orientation::Standard => 0,
        Orientation::Transposed => 1,
    });
    b.push(match t.encoding() {
        Encoding::Huffman => 0,
        Encoding::Palette => 1,
        Encoding::Exponent => 2,
    });
    b.extend_from_slice(&(t.rows as u64).to_le_bytes());
    b.extend_from_slice(&(t.cols as u64).to_le_bytes());
    if let Indices::Huffman(h) = &t.indices {
        b.extend_from_slice(&h.code_lengths);
        b.extend_from_slice(&h.chunk_symbols.to_le_bytes());
        b.extend_from_slice(&h.total_bits.to_le_bytes());
    }
    b
}

/// XXH3-64 of little-endian words, streamed (the word arrays are small: offsets and bitmap).
fn words<const N: usize>(words: impl Iterator<Item = [u8; N]>) -> u64 {
    let mut h = Xxh3::new();
    let mut buf = Vec::with_capacity(8192);
    for w in words {
        buf.extend_from_slice(&w);
        if buf.len() >= 8192 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    h.digest()
}

impl CompressedTensor {
    /// Checks [`CompressedTensor::checksum`] against the components: a bundle altered after
    /// compression in a way that still decodes is refused here, before any decode or upload.
    pub fn check_checksum(&self) -> Result<(), CodecError> {
        self.check_checksum_with_sm(&self.sm)
    }

    /// [`check_checksum`](Self::check_checksum) with the sign-mantissa plane held elsewhere.
    pub fn check_checksum_with_sm(&self, sm: &[u8]) -> Result<(), CodecError> {
        let actual = components_checksum_with_sm(self, sm);
        if actual != self.checksum {
            return Err(CodecError::ChecksumMismatch {
                stored: self.checksum,
                actual,
            });
        }
        Ok(())
    }
}
