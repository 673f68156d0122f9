//! The per-tensor integrity hash: XXH64, seed 0, over the original little-endian bytes.

use xxhash_rust::xxh64::Xxh64;

/// XXH64 (seed 0) of the little-endian bytes of `bits`.
pub fn hash_bits(bits: &[u16]) -> u64 {
    let mut h = Xxh64::new(0);
    // Hash through a small buffer so the result does not depend on the host's byte order.
    let mut buf = [0u8; 8192];
    for block in bits.chunks(buf.len() / 2) {
        for (dst, &v) in buf.chunks_exact_mut(2).zip(block) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..block.len() * 2]);
    }
    h.digest()
}
