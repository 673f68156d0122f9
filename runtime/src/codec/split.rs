//! Splitting BF16 values into exponent and sign-mantissa bytes, and the 2-D view of a tensor.

use rayon::prelude::*;

use super::CodecError;

/// Exponent byte of a BF16 value.
#[inline(always)]
pub fn exponent(bits: u16) -> u8 {
    ((bits >> 7) & 0xFF) as u8
}

/// Sign bit (bit 7) and the 7 mantissa bits (bits 0..7) of a BF16 value.
#[inline(always)]
pub fn sign_mantissa(bits: u16) -> u8 {
    (((bits >> 8) & 0x80) | (bits & 0x7F)) as u8
}

/// Inverse of the split: `bits = ((sm & 0x80) << 8) | (e << 7) | (sm & 0x7F)`.
#[inline(always)]
pub fn rebuild(sm: u8, e: u8) -> u16 {
    let sm = sm as u16;
    ((sm & 0x80) << 8) | ((e as u16) << 7) | (sm & 0x7F)
}

/// Element count of a shape, or an error when it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Result<usize, CodecError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CodecError::Overflow {
            what: format!("shape {shape:?}"),
        })
}

/// The 2-D view `[rows, cols]` of a tensor in its original layout: leading dims folded into rows,
/// the last dim is cols. A scalar is `[1, 1]`.
pub fn matrix_dims(shape: &[usize]) -> Result<(usize, usize), CodecError> {
    match shape.split_last() {
        None => Ok((1, 1)),
        Some((&cols, lead)) => Ok((element_count(lead)?, cols)),
    }
}

/// `ceil(cols / 64) * 64`.
pub fn padded(cols: usize) -> Result<usize, CodecError> {
    cols.div_ceil(super::GROUP)
        .checked_mul(super::GROUP)
        .ok_or_else(|| CodecError::Overflow {
            what: format!("{cols} columns"),
        })
}

/// Transpose a row-major `[rows][cols]` matrix of u16 into `[cols][rows]`, in cache-sized tiles.
pub fn transpose(src: &[u16], rows: usize, cols: usize) -> Vec<u16> {
    debug_assert_eq!(src.len(), rows * cols);
    const T: usize = 64;
    let mut dst = super::buffers::zeroed_u16(src.len());
    if src.is_empty() {
        return dst;
    }
    // Each task owns T output rows (= T input columns) and walks the input in T×T tiles.
    dst.par_chunks_mut(T * rows)
        .enumerate()
        .for_each(|(tile_col, out)| {
            let c0 = tile_col * T;
            let cw = out.len() / rows;
            for r0 in (0..rows).step_by(T) {
                let rh = T.min(rows - r0);
                for c in 0..cw {
                    let o = &mut out[c * rows + r0..c * rows + r0 + rh];
                    for (r, v) in o.iter_mut().enumerate() {
                        *v = src[(r0 + r) * cols + c0 + c];
                    }
                }
            }
        });
    dst
}

/// Histogram of the exponent bytes of all values.
pub fn histogram(bits: &[u16]) -> [u64; 256] {
    bits.par_chunks(1 << 16)
        .map(|block| {
            // Four sub-histograms break the store-to-load dependency on runs of equal exponents.
            let mut h = [[0u32; 256]; 4];
            let mut quads = block.chunks_exact(4);
            for q in &mut quads {
                h[0][exponent(q[0]) as usize] += 1;
                h[1][exponent(q[1]) as usize] += 1;
                h[2][exponent(q[2]) as usize] += 1;
                h[3][exponent(q[3]) as usize] += 1;
            }
            for &b in quads.remainder() {
                h[0][exponent(b) as usize] += 1;
            }
            let mut out = [0u64; 256];
            for sub in &h {
                for (o, &c) in out.iter_mut().zip(sub) {
                    *o += c as u64;
                }
            }
            out
        })
        .reduce(
            || [0u64; 256],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        )
}

/// Histogram of a sample of the exponents: 16 evenly spaced runs of 4096 values (all values for
/// tensors up to 2^16). Only a guess at the palette; the encoder checks it against exact counts
/// and repairs a wrong guess (see `encode.rs`), so a small sample costs little even when wrong.
pub fn histogram_sample(bits: &[u16]) -> [u64; 256] {
    const RUNS: usize = 16;
    const RUN: usize = 4096;
    if bits.len() <= RUNS * RUN {
        return histogram(bits);
    }
    let stride = bits.len() / RUNS;
    let mut h = [0u64; 256];
    for r in 0..RUNS {
        for &b in &bits[r * stride..r * stride + RUN] {
            h[exponent(b) as usize] += 1;
        }
    }
    h
}
