//! [`CompressedTensor`] → BF16, and the plain reference decoders the GPU kernels are checked against.

use rayon::prelude::*;

use super::multilut::{MultiLut, LANES, SLACK};
use super::split;
use super::{nibbles, palette, CodecError, CompressedTensor, Escapes, Indices, Orientation, GROUP};

/// Elements per parallel task for the nibble and exponent planes (a multiple of 64).
const BLOCK_ELEMS: usize = 1 << 14;
/// Elements decoded before the hash catches up (the hash runs beside the next wave's decoding).
const WAVE_ELEMS: usize = 1 << 22;

/// Decompress to the original layout and shape; checks the hash.
pub fn decompress(t: &CompressedTensor) -> Result<Vec<u16>, CodecError> {
    let total = t.validate()?;
    if t.orientation == Orientation::Standard && t.padded_cols() == t.cols {
        // The decoded padded matrix is the output: hash each wave while decoding the next.
        let dec = Decoder::new(t)?;
        let mut out = super::buffers::zeroed_u16(total);
        // At least four waves, so that even a small tensor hashes mostly beside its decoding.
        let wave = WAVE_ELEMS.min(total.div_ceil(4)).div_ceil(dec.unit).max(1) * dec.unit;
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        let mut done: &[u16] = &[];
        for (w, chunk) in out.chunks_mut(wave).enumerate() {
            let (_, r) = rayon::join(
                || super::hash::update(&mut hasher, done),
                || dec.decode(w * wave, chunk),
            );
            r?;
            done = chunk;
        }
        super::hash::update(&mut hasher, done);
        return check_hash(t, out, hasher.digest());
    }
    let enc = decode_bf16_encoded(t)?;
    let out = match t.orientation {
        Orientation::Standard => enc,
        Orientation::Transposed => split::transpose(&enc, t.rows, t.cols),
    };
    let actual = super::hash_bits(&out);
    check_hash(t, out, actual)
}

fn check_hash(t: &CompressedTensor, out: Vec<u16>, actual: u64) -> Result<Vec<u16>, CodecError> {
    if actual != t.hash {
        return Err(CodecError::HashMismatch {
            stored: t.hash,
            actual,
        });
    }
    Ok(out)
}

/// BF16 values of the ENCODED matrix `[rows][cols]` (`Wᵀ` when transposed), padding dropped.
/// Does not check the hash (it covers the original layout; see [`decompress`]).
pub fn decode_bf16_encoded(t: &CompressedTensor) -> Result<Vec<u16>, CodecError> {
    let total = t.validate()?;
    let mut out = super::buffers::zeroed_u16(total);
    Decoder::new(t)?.decode(0, &mut out)?;
    Ok(drop_padding(out, t.rows, t.cols, t.padded_cols()))
}

/// Tables for decoding a validated tensor, and the element count of one parallel task.
struct Decoder<'a> {
    t: &'a CompressedTensor,
    unit: usize,
    /// Huffman: symbols → exponents, several per step.
    multi: Option<MultiLut>,
    /// Palette: nibble byte → its two exponents (low byte first).
    pairs: [u16; 256],
}

impl<'a> Decoder<'a> {
    /// `t` must have passed `validate`.
    fn new(t: &'a CompressedTensor) -> Result<Self, CodecError> {
        let pal = &t.palette;
        let pairs = std::array::from_fn(|b| pal[b & 15] as u16 | (pal[b >> 4] as u16) << 8);
        let (unit, multi) = match &t.indices {
            Indices::Huffman(h) => (
                h.chunk_symbols.max(1) as usize * LANES,
                Some(MultiLut::new(&h.code_lengths, pal)?),
            ),
            _ => (BLOCK_ELEMS, None),
        };
        Ok(Decoder {
            t,
            unit,
            multi,
            pairs,
        })
    }

    /// Decode padded elements `start .. start + out.len()` (`start` a multiple of `unit`).
    fn decode(&self, start: usize, out: &mut [u16]) -> Result<(), CodecError> {
        let t = self.t;
        let unit = self.unit;
        let scratch = unit.min(out.len()) + SLACK;
        out.par_chunks_mut(unit)
            .enumerate()
            .with_min_len((1 << 14) / unit + 1)
            .try_for_each_init(
                || vec![0u8; scratch],
                |exps, (k, o)| {
                    let at = start + k * unit;
                    let n = o.len();
                    let sm = &t.sm[at..at + n];
                    match &t.indices {
                        Indices::Exponent(e) => {
                            rebuild_all(sm, &e[at..at + n], o);
                            return Ok(());
                        }
                        Indices::Palette(nib) => {
                            for (pair, &b) in exps[..n]
                                .chunks_exact_mut(2)
                                .zip(&nib[at / 2..(at + n) / 2])
                            {
                                pair.copy_from_slice(&self.pairs[b as usize].to_le_bytes());
                            }
                        }
                        Indices::Huffman(h) => {
                            let multi = self.multi.as_ref().ok_or_else(|| CodecError::Stream {
                                problem: "no table".into(),
                            })?;
                            h.decode_chunks_mapped(at / unit * LANES, multi, n, exps)?;
                        }
                    }
                    apply_escapes(at, &mut exps[..n], &t.escapes);
                    rebuild_all(sm, &exps[..n], o);
                    Ok(())
                },
            )
    }
}

/// Overwrite the exponents of escaped groups among padded elements `start .. start + exps.len()`.
#[inline]
fn apply_escapes(start: usize, exps: &mut [u8], esc: &Escapes) {
    if esc.exponents.is_empty() || exps.is_empty() {
        return;
    }
    let end = start + exps.len();
    for g in start / GROUP..end.div_ceil(GROUP) {
        if let Some(ex) = esc.group_exponents(g) {
            let (lo, hi) = ((g * GROUP).max(start), ((g + 1) * GROUP).min(end));
            exps[lo - start..hi - start].copy_from_slice(&ex[lo - g * GROUP..hi - g * GROUP]);
        }
    }
}

/// `out[i] = rebuild(sm[i], exps[i])`, written so it vectorizes.
#[inline]
fn rebuild_all(sm: &[u8], exps: &[u8], out: &mut [u16]) {
    let n = out.len();
    let (sm, exps) = (&sm[..n], &exps[..n]);
    for i in 0..n {
        let (s, e) = (sm[i] as u16, exps[i] as u16);
        out[i] = ((s & 0x80) << 8) | (e << 7) | (s & 0x7F);
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
    plane
        .par_chunks_mut(BLOCK_ELEMS)
        .enumerate()
        .for_each(|(b, blk)| {
            for (k, grp) in blk.chunks_mut(GROUP).enumerate() {
                let g = b * (BLOCK_ELEMS / GROUP) + k;
                match escapes.group_exponents(g) {
                    Some(ex) => grp.copy_from_slice(ex),
                    None => grp
                        .iter_mut()
                        .for_each(|x| *x = t.palette[(*x & 15) as usize]),
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
            let mut plane = super::buffers::zeroed_u8(total);
            plane
                .par_chunks_mut(BLOCK_ELEMS)
                .zip(nib.par_chunks(BLOCK_ELEMS / 2))
                .for_each(|(o, n)| {
                    nibbles::unpack_into(n, o);
                });
            Ok((plane, t.escapes.clone()))
        }
        Indices::Exponent(e) => {
            let map = palette::index_map(&t.palette);
            let mut plane = super::buffers::zeroed_u8(total);
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
