//! The RS-form rmm's fragment layout (docs/CONTRACT.md, "Fragment layout"): the same blocks as
//! [`tiles`](super::tiles) (one per CTA row tile `i` and k block `b`, block `i * (k/64) + b`), but
//! inside a block the elements are ordered by WGMMA A-fragment: consumer thread `ct` (0..256)
//! owns 32 elements of the block, kept as 16-byte vectors at `(v * 256 + ct) * 16`, so its
//! vector loads from shared memory are conflict-free and need no address arithmetic per element.
//!
//! Element `e` (0..32) of thread `ct` is half `e % 2` of A register `(e / 2) % 4` of k16 step
//! `e / 8`; with `cw = ct / 128`, `w = (ct % 128) / 32`, `l = ct % 32` it is the weight at tile
//! row `64 cw + 16 w + l / 4 + 8 (reg & 1)` and k column `16 kk + 8 (reg >> 1) + 2 (l % 4) + half`
//! of the block (the m16n8k16 A layout per warp, HOPPER_NOTES §1.4). Both orientations use the
//! same logical order (RS wgmma has no transpose for A); the upload reads each weight from its
//! encoded position.

use unweight_codegen::abi::{self, BK, BM};

use crate::codec::Orientation;

use super::LayoutError;

const ROWS: usize = BM as usize;
const KB: usize = BK as usize;
const THREADS: usize = abi::FRAG_THREADS as usize;
const ELEMS: usize = abi::FRAG_ELEMS as usize;
const VEC: usize = abi::FRAG_VECTOR_BYTES as usize;

/// Bits per element of a component in fragment layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragElem {
    /// Palette indices, two per byte (element `e` in the low nibble when `e` is even).
    Nibble,
    /// Sign-mantissa bytes.
    Byte,
    /// Raw bf16 (the raw RS twin), little-endian.
    Bf16,
}

impl FragElem {
    fn bits(self) -> usize {
        match self {
            FragElem::Nibble => 4,
            FragElem::Byte => 8,
            FragElem::Bf16 => 16,
        }
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        ROWS * KB * self.bits() / 8
    }
}

/// (tile row, k column) of element `e` of consumer thread `ct` within a block.
pub fn logical(ct: usize, e: usize) -> (usize, usize) {
    let (cw, t) = (ct / 128, ct % 128);
    let (w, l) = (t / 32, t % 32);
    let (kk, reg, half) = (e / 8, (e / 2) % 4, e % 2);
    let row = 64 * cw + 16 * w + l / 4 + 8 * (reg & 1);
    let col = 16 * kk + 8 * (reg >> 1) + 2 * (l % 4) + half;
    (row, col)
}

/// Byte offset in its block of element `e` of thread `ct` (nibbles: the byte holding it).
pub fn offset(ct: usize, e: usize, elem: FragElem) -> usize {
    let at = e * elem.bits() / 8; // byte position in the thread's own stream
    (at / VEC * THREADS + ct) * VEC + at % VEC
}

/// Index into the encoded row-major matrix of weight `(n, kk)` (`n < n_out`, `kk < k`).
fn encoded(orientation: Orientation, n_out: usize, k: usize, n: usize, kk: usize) -> usize {
    match orientation {
        Orientation::Standard => n * k + kk,
        Orientation::Transposed => kk * n_out + n,
    }
}

fn check(
    len: usize,
    n_out: usize,
    k: usize,
    elem: FragElem,
    what: &'static str,
) -> Result<(), LayoutError> {
    if n_out == 0 || k == 0 || n_out % ROWS != 0 || k % KB != 0 {
        return Err(LayoutError::Untileable { n_out, k });
    }
    let need = n_out * k * elem.bits() / 8;
    if len != need {
        return Err(LayoutError::Length {
            what,
            unit: "bytes",
            have: len,
            need,
        });
    }
    Ok(())
}

fn get(src: &[u8], idx: usize, elem: FragElem) -> u16 {
    match elem {
        FragElem::Nibble => ((src[idx / 2] >> (4 * (idx % 2))) & 0xF) as u16,
        FragElem::Byte => src[idx] as u16,
        FragElem::Bf16 => u16::from_le_bytes([src[2 * idx], src[2 * idx + 1]]),
    }
}

fn put(dst: &mut [u8], at: usize, e: usize, v: u16, elem: FragElem) {
    match elem {
        FragElem::Nibble => dst[at] |= (v as u8 & 0xF) << (4 * (e % 2)),
        FragElem::Byte => dst[at] = v as u8,
        FragElem::Bf16 => dst[at..at + 2].copy_from_slice(&v.to_le_bytes()),
    }
}

/// Visits every element once: (block start in the fragment image, thread, element, encoded index).
fn for_each(
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: FragElem,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let (tiles_i, tiles_b) = (n_out / ROWS, k / KB);
    for i in 0..tiles_i {
        for b in 0..tiles_b {
            let block = (i * tiles_b + b) * elem.block_bytes();
            for ct in 0..THREADS {
                for e in 0..ELEMS {
                    let (r, c) = logical(ct, e);
                    f(
                        block,
                        ct,
                        e,
                        encoded(orientation, n_out, k, ROWS * i + r, KB * b + c),
                    );
                }
            }
        }
    }
}

/// Re-lays an encoded row-major component (nibbles: `cols / 2` bytes per row; bf16: two bytes
/// per element, little-endian) into fragment blocks. Needs `n_out % 128 == 0`, `k % 64 == 0`.
pub fn shuffle(
    src: &[u8],
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: FragElem,
) -> Result<Vec<u8>, LayoutError> {
    check(src.len(), n_out, k, elem, "encoded matrix")?;
    let mut out = vec![0u8; src.len()];
    for_each(orientation, n_out, k, elem, |block, ct, e, idx| {
        put(
            &mut out,
            block + offset(ct, e, elem),
            e,
            get(src, idx, elem),
            elem,
        )
    });
    Ok(out)
}

/// The inverse of [`shuffle`] (tests, and reading GPU-side fragment images back).
pub fn unshuffle(
    src: &[u8],
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: FragElem,
) -> Result<Vec<u8>, LayoutError> {
    check(src.len(), n_out, k, elem, "fragment blocks")?;
    let mut out = vec![0u8; src.len()];
    for_each(orientation, n_out, k, elem, |block, ct, e, idx| {
        let at = block + offset(ct, e, elem);
        let v = match elem {
            FragElem::Nibble => ((src[at] >> (4 * (e % 2))) & 0xF) as u16,
            FragElem::Byte => src[at] as u16,
            FragElem::Bf16 => u16::from_le_bytes([src[at], src[at + 1]]),
        };
        match elem {
            FragElem::Nibble => out[idx / 2] |= (v as u8) << (4 * (idx % 2)),
            FragElem::Byte => out[idx] = v as u8,
            FragElem::Bf16 => out[2 * idx..2 * idx + 2].copy_from_slice(&v.to_le_bytes()),
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_thread_element_is_one_block_position() {
        let cells: HashSet<(usize, usize)> = (0..THREADS)
            .flat_map(|ct| (0..ELEMS).map(move |e| logical(ct, e)))
            .collect();
        assert_eq!(cells.len(), ROWS * KB);
        assert!(cells.iter().all(|&(r, c)| r < ROWS && c < KB));
        for elem in [FragElem::Nibble, FragElem::Byte, FragElem::Bf16] {
            let mut seen = HashSet::new();
            for ct in 0..THREADS {
                for e in 0..ELEMS {
                    // Nibbles share a byte in pairs (e, e + 1); count (byte, nibble) positions.
                    let at = offset(ct, e, elem);
                    assert!(at < elem.block_bytes(), "{elem:?} {ct} {e}");
                    assert!(seen.insert((at, if elem == FragElem::Nibble { e % 2 } else { 0 })));
                }
            }
        }
    }

    #[test]
    fn a_fragment_follows_the_m16n8k16_layout() {
        // Thread 37 of warpgroup 1: warp 1, lane 5 -> rows 64 + 16 + 1 (+ 8), columns 2 (+1, +8, +9).
        let ct = 128 + 37;
        assert_eq!(logical(ct, 0), (81, 2)); // a0 low
        assert_eq!(logical(ct, 1), (81, 3)); // a0 high
        assert_eq!(logical(ct, 2), (89, 2)); // a1
        assert_eq!(logical(ct, 4), (81, 10)); // a2
        assert_eq!(logical(ct, 6), (89, 10)); // a3
        assert_eq!(logical(ct, 8), (81, 18)); // k16 step 1
                                              // A warp's first vectors are 512 contiguous bytes: conflict-free LDS.128.
        let firsts: Vec<usize> = (0..32).map(|l| offset(l, 0, FragElem::Byte)).collect();
        assert_eq!(firsts, (0..32).map(|l| 16 * l).collect::<Vec<_>>());
        assert_eq!(offset(3, 16, FragElem::Byte), 4096 + 48); // second sm vector
        assert_eq!(offset(3, 31, FragElem::Nibble), 48 + 15); // one nibble vector
        assert_eq!(offset(3, 24, FragElem::Bf16), 3 * 4096 + 48); // fourth bf16 vector
    }

    #[test]
    fn shuffle_round_trips_for_both_orientations() {
        let (n, k) = (256, 192);
        for o in [Orientation::Standard, Orientation::Transposed] {
            for elem in [FragElem::Nibble, FragElem::Byte, FragElem::Bf16] {
                let len = n * k * elem.bits() / 8;
                let src: Vec<u8> = (0..len).map(|x| (x * 131 % 251) as u8).collect();
                let f = shuffle(&src, o, n, k, elem).unwrap();
                assert_ne!(f, src, "{o} {elem:?}: the order changed");
                assert_eq!(unshuffle(&f, o, n, k, elem).unwrap(), src, "{o} {elem:?}");
            }
        }
    }

    #[test]
    fn a_thread_reads_its_logical_weights() {
        // Weight (n, kk) = n * 1000 + kk as bf16 bits; stored standard or as Wᵀ.
        let (n_out, k) = (256, 128);
        let val = |n: usize, kk: usize| (n * 1000 + kk) as u16;
        for o in [Orientation::Standard, Orientation::Transposed] {
            let mut enc = vec![0u8; n_out * k * 2];
            for n in 0..n_out {
                for kk in 0..k {
                    let idx = encoded(o, n_out, k, n, kk);
                    enc[2 * idx..2 * idx + 2].copy_from_slice(&val(n, kk).to_le_bytes());
                }
            }
            let f = shuffle(&enc, o, n_out, k, FragElem::Bf16).unwrap();
            // Block (i = 1, b = 1), thread 200, register a[kk][reg] as the kernel loads it.
            let block = &f[(2 + 1) * FragElem::Bf16.block_bytes()..];
            let (ct, l) = (200, 200 % 32);
            for kk in 0..4 {
                for reg in 0..4 {
                    let at = (kk * THREADS + ct) * VEC + 4 * reg;
                    let word = u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
                    let row = 128 + 64 + 16 * ((200 % 128) / 32) + l / 4 + 8 * (reg & 1);
                    let col = 64 + 16 * kk + 8 * (reg >> 1) + 2 * (l % 4);
                    let want = val(row, col) as u32 | (val(row, col + 1) as u32) << 16;
                    assert_eq!(word, want, "{o} kk {kk} reg {reg}");
                }
            }
        }
    }

    #[test]
    fn rejects_untileable_shapes_and_lengths() {
        let e = shuffle(
            &[0; 100 * 64],
            Orientation::Standard,
            100,
            64,
            FragElem::Byte,
        );
        assert!(e.unwrap_err().to_string().contains("n_out % 128"));
        let e = shuffle(&[0; 10], Orientation::Standard, 128, 64, FragElem::Nibble);
        assert!(e.unwrap_err().to_string().contains("expected 4096"));
    }
}
