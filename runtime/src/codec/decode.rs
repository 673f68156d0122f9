//! [`CompressedTensor`] → BF16, and the plain reference decoders the GPU kernels are checked against.

use rayon::prelude::*;

use super::split::{self, rebuild};
use super::{huffman, nibbles, palette, CodecError, CompressedTensor, Escapes, Indices, Orientation, GROUP};

/// Elements per parallel task for the nibble and exponent planes (a multiple of 64).
const BLOCK_ELEMS: usize = 1 << 14;

/// Decompress to the original layout and shape; checks the hash.
pub fn decompress(t: &CompressedTensor) -> Result<Vec<u16>, CodecError> {
    let enc = decode_bf16_encoded(t)?;
    let out = match t.orientation {
        Orientation::Standard => enc,
        Orientation::Transposed => split::transpose(&enc, t.rows, t.cols),
    };
    let actual = super::hash_bits(&out);
    if actual != t.hash {
        return Err(CodecError::HashMismatch { stored: t.hash, actual });
    }
    Ok(out)
}

/// BF16 values of the ENCODED matrix `[rows][cols]` (`Wᵀ` when transposed), padding dropped.
/// Does not check the hash (it covers the original layout; see [`decompress`]).
pub fn decode_bf16_encoded(t: &CompressedTensor) -> Result<Vec<u16>, CodecError> {
    let total = t.validate()?;
    let mut out = vec![0u16; total];
    let (sm, pal, esc) = (&t.sm[..], &t.palette, &t.escapes);
    match &t.indices {
        Indices::Exponent(e) => {
            out.par_chunks_mut(BLOCK_ELEMS).zip(sm.par_chunks(BLOCK_ELEMS)).zip(e.par_chunks(BLOCK_ELEMS)).for_each(
                |((o, s), e)| {
                    for ((o, &s), &e) in o.iter_mut().zip(s).zip(e) {
                        *o = rebuild(s, e);
                    }
                },
            );
        }
        Indices::Palette(nib) => {
            out.par_chunks_mut(BLOCK_ELEMS).enumerate().for_each_init(
                || vec![0u8; BLOCK_ELEMS],
                |idx, (b, o)| {
                    let start = b * BLOCK_ELEMS;
                    let idx = &mut idx[..o.len()];
                    nibbles::unpack_into(&nib[start / 2..(start + o.len()) / 2], idx);
                    rebuild_span(start, idx, &sm[start..start + o.len()], pal, esc, o);
                },
            );
        }
        Indices::Huffman(h) => {
            let lut = huffman::build_lut(&h.code_lengths)?;
            let cs = h.chunk_symbols as usize;
            out.par_chunks_mut(cs).enumerate().with_min_len(8).try_for_each_init(
                || vec![0u8; cs.min(total)],
                |idx, (c, o)| {
                    let start = c * cs;
                    let idx = &mut idx[..o.len()];
                    h.decode_chunk(c, &lut, idx)?;
                    rebuild_span(start, idx, &sm[start..start + o.len()], pal, esc, o);
                    Ok::<(), CodecError>(())
                },
            )?;
        }
    }
    Ok(drop_padding(out, t.rows, t.cols, t.padded_cols()))
}

/// Rebuild BF16 for the elements at flat positions `start..start + idx.len()` of the padded
/// matrix from their palette indices, applying escape groups.
#[inline]
fn rebuild_span(start: usize, idx: &[u8], sm: &[u8], pal: &[u8; 16], esc: &Escapes, out: &mut [u16]) {
    let mut i = 0;
    while i < idx.len() {
        let g = (start + i) / GROUP;
        let end = ((g + 1) * GROUP - start).min(idx.len());
        let (o, s, x) = (&mut out[i..end], &sm[i..end], &idx[i..end]);
        match esc.group_exponents(g) {
            Some(ex) => {
                let ex = &ex[(start + i) % GROUP..];
                for ((o, &s), &e) in o.iter_mut().zip(s).zip(ex) {
                    *o = rebuild(s, e);
                }
            }
            None => {
                for ((o, &s), &x) in o.iter_mut().zip(s).zip(x) {
                    *o = rebuild(s, pal[(x & 15) as usize]);
                }
            }
        }
        i = end;
    }
}

/// `[rows][padded_cols]` → `[rows][cols]`.
fn drop_padding(v: Vec<u16>, rows: usize, cols: usize, pc: usize) -> Vec<u16> {
    if pc == cols {
        return v;
    }
    let mut out = Vec::with_capacity(rows * cols);
    for row in v.chunks_exact(pc) {
        out.extend_from_slice(&row[..cols]);
    }
    out
}

/// Exponent bytes `[rows][padded_cols]` with escapes applied (padding positions: palette[0]).
pub fn decode_exponents(t: &CompressedTensor) -> Result<Vec<u8>, CodecError> {
    t.validate()?;
    if let Indices::Exponent(e) = &t.indices {
        return Ok(e.clone());
    }
    let (mut plane, escapes) = index_plane(t)?;
    plane.par_chunks_mut(BLOCK_ELEMS).enumerate().for_each(|(b, blk)| {
        for (k, grp) in blk.chunks_mut(GROUP).enumerate() {
            let g = b * (BLOCK_ELEMS / GROUP) + k;
            match escapes.group_exponents(g) {
                Some(ex) => grp.copy_from_slice(ex),
                None => grp.iter_mut().for_each(|x| *x = t.palette[(*x & 15) as usize]),
            }
        }
    });
    Ok(plane)
}

/// Palette nibbles `[rows][padded_cols / 2]` exactly as the palette encoding stores them
/// (escaped groups' indices 0).
pub fn decode_palette_indices(t: &CompressedTensor) -> Result<Vec<u8>, CodecError> {
    t.validate()?;
    if let Indices::Palette(n) = &t.indices {
        return Ok(n.clone());
    }
    Ok(nibbles::pack(&index_plane(t)?.0))
}

/// One palette index per element of the padded matrix, and the escape table. For the exponent
/// encoding both are derived from the exponents (a group is escaped when any exponent is outside
/// the palette; padding holds palette[0], so looking at all 64 positions is the same).
pub(super) fn index_plane(t: &CompressedTensor) -> Result<(Vec<u8>, Escapes), CodecError> {
    let total = t.validate()?;
    match &t.indices {
        Indices::Huffman(h) => Ok((h.decode_symbols(total)?, t.escapes.clone())),
        Indices::Palette(nib) => {
            let mut plane = vec![0u8; total];
            plane.par_chunks_mut(BLOCK_ELEMS).zip(nib.par_chunks(BLOCK_ELEMS / 2)).for_each(|(o, n)| {
                nibbles::unpack_into(n, o);
            });
            Ok((plane, t.escapes.clone()))
        }
        Indices::Exponent(e) => {
            let map = palette::index_map(&t.palette);
            let mut plane = vec![0u8; total];
            let parts: Vec<(Vec<bool>, Vec<u8>)> = plane
                .par_chunks_mut(BLOCK_ELEMS)
                .zip(e.par_chunks(BLOCK_ELEMS))
                .map(|(o, e)| {
                    let (mut flags, mut escaped) = (Vec::new(), Vec::new());
                    for (og, eg) in o.chunks_mut(GROUP).zip(e.chunks(GROUP)) {
                        let mut miss = 0u8;
                        for (x, &v) in og.iter_mut().zip(eg) {
                            *x = map[v as usize];
                            miss |= *x;
                        }
                        let esc = miss & 0x80 != 0;
                        flags.push(esc);
                        if esc {
                            escaped.extend_from_slice(eg);
                            og.fill(0);
                        }
                    }
                    (flags, escaped)
                })
                .collect();
            let (mut flags, mut escaped) = (Vec::with_capacity(total / GROUP), Vec::new());
            for (f, e) in parts {
                flags.extend(f);
                escaped.extend(e);
            }
            Ok((plane, Escapes::from_flags(&flags, escaped)))
        }
    }
}
