//! [`CompressedTensor`] → BF16, and the plain reference decoders the GPU kernels are checked against.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::multilut::{MultiLut, LANES, SLACK};
use super::split;
use super::{nibbles, palette, CodecError, CompressedTensor, Escapes, Indices, Orientation, GROUP};

/// Elements per parallel task for the nibble and exponent planes (a multiple of 64).
const BLOCK_ELEMS: usize = 1 << 14;
/// Elements per decode piece (rounded to whole Huffman units): large enough that claiming a
/// piece and hashing it are negligible, small enough that the hash trails closely and two
/// threads share even a small tensor evenly.
const PIECE_ELEMS: usize = 1 << 14;

/// Decompress to the original layout and shape; checks the hash.
pub fn decompress(t: &CompressedTensor) -> Result<Vec<u16>, CodecError> {
    let total = checked(t)?;
    decompress_valid(t, total)
}

/// Elements of the padded matrix once `t` is structurally valid and its stored-components
/// checksum matches: what every public decoder checks first.
fn checked(t: &CompressedTensor) -> Result<usize, CodecError> {
    let total = t.validate()?;
    t.check_checksum()?;
    Ok(total)
}

/// [`decompress`] of a tensor [`checked`] gave `total` for.
fn decompress_valid(t: &CompressedTensor, total: usize) -> Result<Vec<u16>, CodecError> {
    if t.orientation == Orientation::Standard && t.padded_cols() == t.cols {
        // The decoded padded matrix is the output: hash it in order while it is decoded.
        let dec = Decoder::new(t)?;
        let (out, hash) =
            super::parallel::fill_hashed(total, dec.piece, |at, dst, s| dec.fill(at, dst, s))?;
        return check_hash(t, out, hash);
    }
    let enc = decode_encoded_valid(t, total)?;
    let out = match t.orientation {
        Orientation::Standard => enc,
        Orientation::Transposed => split::transpose(&enc, t.rows, t.cols),
    };
    let actual = super::hash_bits(&out);
    check_hash(t, out, actual)
}

/// [`decompress`] of several tensors, in parallel over the tensors as well as within each one.
/// This is what the bundle reader uses for the tensors of a file.
pub fn decompress_batch(ts: &[&CompressedTensor]) -> Vec<Result<Vec<u16>, CodecError>> {
    super::parallel::map_shared(ts.len(), |i| decompress(ts[i]))
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| Err(super::parallel::not_run(i))))
        .collect()
}

/// [`decompress`] of several tensors into ONE vector, back to back in the given order (tensor
/// `i` starts after the elements of tensors `0..i`), in parallel over the tensors as well as
/// within each. One allocation instead of one per tensor: a large batch then gets huge pages
/// and few page faults (with 4 KiB pages, faulting in fresh output costs about as much as
/// decoding it on the development machine). The bundle reader decodes a file this way. On
/// failure, the index of the first tensor that failed and its error.
pub fn decompress_contiguous(ts: &[&CompressedTensor]) -> Result<Vec<u16>, (usize, CodecError)> {
    let mut sizes = Vec::with_capacity(ts.len());
    let mut total = 0usize;
    for (i, t) in ts.iter().enumerate() {
        let n = split::element_count(&t.shape).map_err(|e| (i, e))?;
        total = total.checked_add(n).ok_or_else(|| {
            let what = format!("{} tensors of {total}+ elements", ts.len());
            (i, CodecError::Overflow { what })
        })?;
        sizes.push(n);
    }
    let mut out = super::buffers::uninit_u16(total);
    let mut parts = Vec::with_capacity(ts.len());
    let mut rest = &mut out.spare_capacity_mut()[..total];
    for &n in &sizes {
        let (head, tail) = rest.split_at_mut(n);
        parts.push(head);
        rest = tail;
    }
    decompress_into_parts(ts, parts)?;
    // SAFETY: the parts partition the first `total` elements, and `decompress_into_parts`
    // returned Ok, i.e. wrote every element of each.
    unsafe { out.set_len(total) };
    Ok(out)
}

/// [`decompress`] of several tensors, tensor `i` into `parts[i]` (exactly its element count),
/// in parallel over the tensors as well as within each; hashes checked. The destinations may
/// be anywhere, e.g. slices of a memory-mapped output file, so the decoded values are written
/// once, where they end up. On `Ok` every element of every part is written; on failure, the
/// index of the first tensor that failed and its error.
pub fn decompress_into_parts(
    ts: &[&CompressedTensor],
    parts: Vec<&mut [MaybeUninit<u16>]>,
) -> Result<(), (usize, CodecError)> {
    decompress_into_parts_sm(ts, &vec![None; ts.len()], parts)
}

/// [`decompress_into_parts`] where tensor `i`'s sign-mantissa plane is `sms[i]` when that is
/// given (its own `sm` field is then not used and may be empty): the bundle reader passes the
/// plane straight from the mapped file instead of copying half the data into fresh memory.
pub fn decompress_into_parts_sm(
    ts: &[&CompressedTensor],
    sms: &[Option<&[u8]>],
    parts: Vec<&mut [MaybeUninit<u16>]>,
) -> Result<(), (usize, CodecError)> {
    decompress_into_parts_notify(ts, sms, parts, &|_, _| {})
}

/// [`decompress_into_parts_sm`] that also calls `decoded(i, n)` whenever the first `n`
/// elements of `parts[i]` are final (decoded and hashed; `n` grows, several times per tensor
/// on the common path, last with the whole length once a non-empty tensor is decoded), so
/// that a caller writing
/// into a file can start writing that prefix back while the rest is decoded. A tensor whose
/// hash then fails still fails as a whole.
pub fn decompress_into_parts_notify(
    ts: &[&CompressedTensor],
    sms: &[Option<&[u8]>],
    parts: Vec<&mut [MaybeUninit<u16>]>,
    decoded: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), (usize, CodecError)> {
    if parts.len() != ts.len() || sms.len() != ts.len() {
        return Err((
            0,
            CodecError::Length {
                what: "decompress destinations",
                expected: ts.len(),
                actual: parts.len().min(sms.len()),
            },
        ));
    }
    let parts: Vec<std::sync::Mutex<Option<&mut [MaybeUninit<u16>]>>> = parts
        .into_iter()
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    let results = super::parallel::map_shared(ts.len(), |i| {
        let mut slot = parts[i].lock().unwrap_or_else(|e| e.into_inner());
        match slot.take() {
            Some(dst) => decompress_into(ts[i], sms[i], dst, &|n| decoded(i, n)),
            None => Err(CodecError::Stream {
                problem: "output part taken twice".into(),
            }),
        }
    });
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err((i, e)),
            None => return Err((i, super::parallel::not_run(i))),
        }
    }
    Ok(())
}

/// [`decompress`] into `dst` (exactly the tensor's element count), the sign-mantissa plane
/// read from `sm` when given; on `Ok` every element of `dst` is written. `decoded(n)`: see
/// [`decompress_into_parts_notify`].
fn decompress_into(
    t: &CompressedTensor,
    sm: Option<&[u8]>,
    dst: &mut [MaybeUninit<u16>],
    decoded: &(dyn Fn(usize) + Sync),
) -> Result<(), CodecError> {
    let total = t.validate_with_sm(sm.map_or(t.sm.len(), <[u8]>::len))?;
    t.check_checksum_with_sm(sm.unwrap_or(&t.sm))?;
    if t.orientation == Orientation::Standard && t.padded_cols() == t.cols && dst.len() == total {
        let mut dec = Decoder::new(t)?;
        if let Some(sm) = sm {
            dec.sm = sm;
        }
        let hash = super::parallel::fill_hashed_into(
            dst,
            dec.piece,
            |at, d, s| dec.fill(at, d, s),
            decoded,
        )?;
        return check_hash(t, (), hash);
    }
    // Transposed or padded: the general path, on a tensor that owns its plane.
    let owned;
    let t = match sm {
        Some(sm) => {
            let mut c = t.clone();
            c.sm = sm.to_vec();
            owned = c;
            &owned
        }
        None => t,
    };
    let v = decompress_valid(t, total)?;
    if v.len() != dst.len() {
        return Err(CodecError::Length {
            what: "decompress destination",
            expected: v.len(),
            actual: dst.len(),
        });
    }
    for (d, &x) in dst.iter_mut().zip(&v) {
        *d = MaybeUninit::new(x);
    }
    decoded(dst.len());
    Ok(())
}

fn check_hash<T>(t: &CompressedTensor, out: T, actual: u64) -> Result<T, CodecError> {
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
    let total = checked(t)?;
    decode_encoded_valid(t, total)
}

fn decode_encoded_valid(t: &CompressedTensor, total: usize) -> Result<Vec<u16>, CodecError> {
    let dec = Decoder::new(t)?;
    let out = super::parallel::fill_parallel(total, dec.piece, |at, dst, s| dec.fill(at, dst, s))?;
    Ok(drop_padding(out, t.rows, t.cols, t.padded_cols()))
}

/// Tables for decoding a validated tensor, and the element count of one decode piece.
struct Decoder<'a> {
    t: &'a CompressedTensor,
    /// Sign-mantissa plane (the tensor's own, or one held elsewhere).
    sm: &'a [u8],
    /// Elements per piece: whole groups of [`LANES`] Huffman chunks, whole nibble bytes.
    piece: usize,
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
        let (piece, multi) = match &t.indices {
            Indices::Huffman(h) => {
                let unit = (h.chunk_symbols.max(1) as usize).saturating_mul(LANES);
                (
                    unit.saturating_mul((PIECE_ELEMS / unit).max(1)),
                    Some(MultiLut::new(&h.code_lengths, pal)?),
                )
            }
            _ => (PIECE_ELEMS, None),
        };
        Ok(Decoder {
            t,
            sm: &t.sm,
            piece,
            multi,
            pairs,
        })
    }

    /// Decode padded elements `start .. start + dst.len()` into `dst`, every element of it
    /// (`start` a multiple of `piece`, `dst` at most `piece` long).
    fn fill(
        &self,
        start: usize,
        dst: &mut [MaybeUninit<u16>],
        exps: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let t = self.t;
        let n = dst.len();
        let sm = &self.sm[start..start + n];
        if let Indices::Exponent(e) = &t.indices {
            rebuild_into(sm, &e[start..start + n], dst);
            return Ok(());
        }
        if exps.len() < n + SLACK {
            exps.resize(n + SLACK, 0);
        }
        match &t.indices {
            Indices::Palette(nib) => {
                for (pair, &b) in exps[..n]
                    .chunks_exact_mut(2)
                    .zip(&nib[start / 2..(start + n) / 2])
                {
                    pair.copy_from_slice(&self.pairs[b as usize].to_le_bytes());
                }
            }
            Indices::Huffman(h) => {
                let multi = self.multi.as_ref().ok_or_else(|| CodecError::Stream {
                    problem: "no table".into(),
                })?;
                let cs = h.chunk_symbols.max(1) as usize;
                let unit = cs.saturating_mul(LANES);
                let mut at = 0;
                while at < n {
                    let len = unit.min(n - at);
                    h.decode_chunks_mapped((start + at) / cs, multi, len, &mut exps[at..])?;
                    at += len;
                }
            }
            Indices::Exponent(_) => {}
        }
        apply_escapes(start, &mut exps[..n], &t.escapes);
        rebuild_into(sm, &exps[..n], dst);
        Ok(())
    }
}

/// Overwrite the exponents of escaped groups among padded elements `start .. start + exps.len()`,
/// visiting only the set bits of the escape bitmap.
#[inline]
fn apply_escapes(start: usize, exps: &mut [u8], esc: &Escapes) {
    if esc.exponents.is_empty() || exps.is_empty() {
        return;
    }
    let end = start + exps.len();
    let (g0, g1) = (start / GROUP, end.div_ceil(GROUP));
    for w in g0 / 64..g1.div_ceil(64) {
        let Some(&word) = esc.bitmap.get(w) else {
            break;
        };
        let mut bits = word;
        while bits != 0 {
            let g = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if g < g0 || g >= g1 {
                continue;
            }
            if let Some(ex) = esc.group_exponents(g) {
                let (lo, hi) = ((g * GROUP).max(start), ((g + 1) * GROUP).min(end));
                exps[lo - start..hi - start].copy_from_slice(&ex[lo - g * GROUP..hi - g * GROUP]);
            }
        }
    }
}

/// `out[i] = rebuild(sm[i], exps[i])` for every element of `out`, written so it vectorizes
/// (with AVX2 when the CPU has it: twice the width of the baseline SSE2).
#[inline]
fn rebuild_into(sm: &[u8], exps: &[u8], out: &mut [MaybeUninit<u16>]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        /// # Safety
        /// The CPU must support AVX2 (checked just above).
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(sm: &[u8], exps: &[u8], out: &mut [MaybeUninit<u16>]) {
            rebuild_body(sm, exps, out)
        }
        // SAFETY: AVX2 was detected at run time.
        return unsafe { avx2(sm, exps, out) };
    }
    rebuild_body(sm, exps, out)
}

#[inline(always)]
fn rebuild_body(sm: &[u8], exps: &[u8], out: &mut [MaybeUninit<u16>]) {
    let n = out.len();
    let (sm, exps) = (&sm[..n], &exps[..n]);
    for i in 0..n {
        let (s, e) = (sm[i] as u16, exps[i] as u16);
        out[i] = MaybeUninit::new(((s & 0x80) << 8) | (e << 7) | (s & 0x7F));
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

/// Exponent bytes `[rows][padded_cols]` with escapes applied (padding positions: `palette[0]`).
pub fn decode_exponents(t: &CompressedTensor) -> Result<Vec<u8>, CodecError> {
    checked(t)?;
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
    checked(t)?;
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
