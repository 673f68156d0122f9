//! The per-tensor integrity hash: XXH64, seed 0, over the original little-endian bytes.

use xxhash_rust::xxh64::Xxh64;

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
