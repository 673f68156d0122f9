//! Two 4-bit palette indices per byte, element `2j` in the low nibble of byte `j`.

use rayon::prelude::*;

/// Pack indices (each < 16) into nibbles. `idx.len()` must be even (rows are padded to 64).
pub fn pack(idx: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; idx.len() / 2];
    out.par_chunks_mut(1 << 15)
        .zip(idx.par_chunks(1 << 16))
        .for_each(|(o, i)| {
            for (b, pair) in o.iter_mut().zip(i.chunks_exact(2)) {
                *b = (pair[0] & 15) | (pair[1] << 4);
            }
        });
    out
}

/// Unpack `nib` into one index per element, into `out` (`out.len() == 2 * nib.len()`).
#[inline]
pub fn unpack_into(nib: &[u8], out: &mut [u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(nib) {
        pair[0] = b & 15;
        pair[1] = b >> 4;
    }
}
