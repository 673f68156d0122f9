//! BF16 → [`CompressedTensor`], and transcoding between encodings.

use rayon::prelude::*;

use super::decode::{decode_exponents, index_plane};
use super::simd::GroupMapper;
use super::split::{self, element_count, matrix_dims, padded};
use super::{
    huffman, nibbles, palette, CodecError, CompressedTensor, Encoding, Escapes, Indices,
    Orientation, CHUNK_SYMBOLS, GROUP,
};

/// Elements per parallel task (rounded to whole rows).
const BLOCK_ELEMS: usize = 1 << 16;

/// Compress a BF16 tensor (`bits` in row-major order of `shape`).
pub fn compress(
    bits: &[u16],
    shape: &[usize],
    orientation: Orientation,
    encoding: Encoding,
) -> Result<CompressedTensor, CodecError> {
    let n = element_count(shape)?;
    if bits.len() != n {
        return Err(CodecError::ShapeMismatch {
            shape: shape.to_vec(),
            expected: n,
            actual: bits.len(),
        });
    }
    let (r0, c0) = matrix_dims(shape)?;
    // The hash runs on one thread beside the whole split and encode.
    let (hash, parts) = rayon::join(
        || super::hash_bits(bits),
        || encode_matrix(bits, r0, c0, orientation, encoding),
    );
    let (rows, cols, pal, sm, escapes, indices) = parts?;
    Ok(sealed(CompressedTensor {
        shape: shape.to_vec(),
        orientation,
        rows,
        cols,
        palette: pal,
        sm,
        escapes,
        indices,
        hash,
        checksum: 0,
    }))
}

/// `t` with its stored-components checksum set (the components hash in parallel).
fn sealed(mut t: CompressedTensor) -> CompressedTensor {
    t.checksum = super::components_checksum(&t);
    t
}

/// One tensor to compress: BF16 bits in row-major order of `shape`, and the orientation.
pub type CompressInput<'a> = (&'a [u16], &'a [usize], Orientation);

/// [`compress`] of several tensors, in parallel over the tensors as well as within each one.
/// This is what the bundle writer uses for the tensors of a file.
pub fn compress_batch(
    inputs: &[CompressInput],
    encoding: Encoding,
) -> Vec<Result<CompressedTensor, CodecError>> {
    super::parallel::map_shared(inputs.len(), |i| {
        let (bits, shape, orientation) = inputs[i];
        compress(bits, shape, orientation, encoding)
    })
    .into_iter()
    .enumerate()
    .map(|(i, r)| r.unwrap_or_else(|| Err(super::parallel::not_run(i))))
    .collect()
}

type Parts = (usize, usize, [u8; 16], Vec<u8>, Escapes, Indices);

fn encode_matrix(
    bits: &[u16],
    r0: usize,
    c0: usize,
    orientation: Orientation,
    encoding: Encoding,
) -> Result<Parts, CodecError> {
    let transposed =
        (orientation == Orientation::Transposed).then(|| split::transpose(bits, r0, c0));
    let (src, rows, cols) = match &transposed {
        Some(t) => (&t[..], c0, r0),
        None => (bits, r0, c0),
    };
    let pc = padded(cols)?;
    let total = rows.checked_mul(pc).ok_or_else(|| CodecError::Overflow {
        what: format!("{rows}×{pc} padded matrix"),
    })?;
    if total / GROUP > u32::MAX as usize {
        return Err(CodecError::Overflow {
            what: format!("{} groups", total / GROUP),
        });
    }
    if encoding == Encoding::Exponent {
        let pal = palette::choose(&split::histogram(src));
        let planes = split_planes(src, rows, cols, pc, &pal, encoding);
        return Ok((
            rows,
            cols,
            pal,
            planes.sm,
            Escapes::empty(),
            Indices::Exponent(planes.plane),
        ));
    }
    // Split with a palette guessed from a sample, count exactly from the split (symbol counts
    // + escaped exponents), and split again in the rare case the exact palette differs.
    let mut pal = palette::choose(&split::histogram_sample(src));
    let identity: [u8; 256] = std::array::from_fn(|b| b as u8);
    let (mut planes, hists, rename) = loop {
        let mut planes = split_planes(src, rows, cols, pc, &pal, encoding);
        let hists = huffman::pair_histograms(&planes.plane, CHUNK_SYMBOLS);
        let exact = palette::choose(&exact_histogram(&planes, &hists, &pal, rows * (pc - cols)));
        if exact == pal {
            break (planes, hists, identity);
        }
        // The same exponents in another order (and the same most frequent one, which fills
        // escaped groups' padding): the split stands, only the indices are renamed. The
        // Huffman encoder renames them as it reads them; the palette encoding stores them
        // renamed.
        if exact[0] == pal[0] && exact.iter().all(|e| pal.contains(e)) {
            let rename = rename_table(&pal, &exact);
            pal = exact;
            if encoding == Encoding::Huffman {
                break (planes, hists, rename);
            }
            renumber(&mut planes, &rename);
            break (planes, Vec::new(), identity);
        }
        if encoding == Encoding::Huffman {
            super::buffers::return_scratch(std::mem::take(&mut planes.plane));
        }
        pal = exact;
    };
    let escapes = Escapes::from_flags(&planes.flags, std::mem::take(&mut planes.escaped));
    let indices = match encoding {
        Encoding::Huffman => {
            let stream = huffman::encode_counted(&planes.plane, &hists, CHUNK_SYMBOLS, &rename);
            super::buffers::return_scratch(std::mem::take(&mut planes.plane));
            Indices::Huffman(stream?)
        }
        _ => Indices::Palette(std::mem::take(&mut planes.plane)),
    };
    Ok((
        rows,
        cols,
        pal,
        std::mem::take(&mut planes.sm),
        escapes,
        indices,
    ))
}

/// The exponent histogram of the real elements, recovered from a split made with palette `pal`:
/// index counts of the nibbles, less the zeros that stand for escaped groups and padding, plus
/// the escaped groups' own exponents (less their padding positions, which hold `pal[0]`).
fn exact_histogram(
    planes: &Planes,
    hists: &[[u64; 256]],
    pal: &[u8; 16],
    padding: usize,
) -> [u64; 256] {
    let counts = huffman::symbol_counts(hists);
    let mut h = [0u64; 256];
    for (&e, &c) in pal.iter().zip(&counts) {
        h[e as usize] += c;
    }
    for &e in &planes.escaped {
        h[e as usize] += 1;
    }
    // Counted as pal[0] without being a real element: every index of an escaped group, padding
    // outside escaped groups (index 0), and padding inside them (pal[0] in `escaped`).
    let escaped_groups = planes.escaped.len() / GROUP;
    h[pal[0] as usize] -= (GROUP * escaped_groups + padding) as u64;
    h
}

/// Nibble byte under palette `from` → the same two exponents' byte under `to` (a reordering
/// of `from` with the same first entry, so index 0 stays 0).
fn rename_table(from: &[u8; 16], to: &[u8; 16]) -> [u8; 256] {
    let perm: [u8; 16] =
        std::array::from_fn(|i| to.iter().position(|&e| e == from[i]).unwrap_or(0) as u8);
    std::array::from_fn(|b| perm[b & 15] | perm[b >> 4] << 4)
}

/// Apply [`rename_table`]'s `lut` to the index plane. Escaped groups and padding hold index 0,
/// which the table keeps at 0.
fn renumber(planes: &mut Planes, lut: &[u8; 256]) {
    planes.plane.par_chunks_mut(BLOCK_ELEMS).for_each(|blk| {
        for x in blk.iter_mut() {
            *x = lut[*x as usize];
        }
    });
}

/// The split of the padded encoded matrix.
struct Planes {
    sm: Vec<u8>,
    /// Palette nibbles (escaped groups and padding: index 0), or for `Encoding::Exponent` the
    /// exponent bytes (padding: palette[0]).
    plane: Vec<u8>,
    /// One flag per group (empty for `Encoding::Exponent`).
    flags: Vec<bool>,
    /// 64 exponents per escaped group.
    escaped: Vec<u8>,
}

fn split_planes(
    src: &[u16],
    rows: usize,
    cols: usize,
    pc: usize,
    pal: &[u8; 16],
    encoding: Encoding,
) -> Planes {
    let total = rows * pc;
    let map = palette::index_map(pal);
    let exp_mode = encoding == Encoding::Exponent;
    // Bytes of `plane` per element, times 2.
    let per2 = if exp_mode { 2 } else { 1 };
    let mut sm = super::buffers::zeroed_u8(total);
    // Every byte of the plane is written below; for Huffman it is only an intermediate, so it
    // comes from the thread's scratch (no fresh pages to fault in) and goes back after encoding.
    let mut plane = match encoding {
        Encoding::Huffman => super::buffers::take_scratch(total / 2),
        _ => super::buffers::zeroed_u8(total * per2 / 2),
    };
    if total == 0 {
        return Planes {
            sm,
            plane,
            flags: Vec::new(),
            escaped: Vec::new(),
        };
    }
    let block_rows = (BLOCK_ELEMS / pc).max(1);
    let mapper = if exp_mode {
        None
    } else {
        GroupMapper::new(pal)
    };
    let parts: Vec<(Vec<bool>, Vec<u8>)> = sm
        .par_chunks_mut(block_rows * pc)
        .zip(plane.par_chunks_mut(block_rows * pc * per2 / 2))
        .enumerate()
        .map(|(b, (sm_blk, pl_blk))| {
            let mut flags = Vec::new();
            let mut escaped = Vec::new();
            let r_first = b * block_rows;
            let pl_row_len = pc * per2 / 2;
            for (r, (sm_row, pl_row)) in sm_blk
                .chunks_exact_mut(pc)
                .zip(pl_blk.chunks_exact_mut(pl_row_len))
                .enumerate()
            {
                let row = &src[(r_first + r) * cols..(r_first + r + 1) * cols];
                let pl_groups = pl_row.chunks_exact_mut(GROUP * per2 / 2);
                for (g, (sm_g, pl_g)) in sm_row.chunks_exact_mut(GROUP).zip(pl_groups).enumerate() {
                    let real = &row[g * GROUP..cols.min((g + 1) * GROUP)];
                    if let (Some(m), true) = (&mapper, real.len() == GROUP) {
                        let esc = m.group(real, sm_g, pl_g);
                        flags.push(esc);
                        if esc {
                            escaped.extend(real.iter().map(|&v| split::exponent(v)));
                            pl_g.fill(0);
                        }
                        continue;
                    }
                    for (s, &v) in sm_g.iter_mut().zip(real) {
                        *s = split::sign_mantissa(v);
                    }
                    if exp_mode {
                        for (p, &v) in pl_g.iter_mut().zip(real) {
                            *p = split::exponent(v);
                        }
                        pl_g[real.len()..].fill(pal[0]);
                        continue;
                    }
                    // NOT_IN_PALETTE is 0xFF and indices are < 16: bit 7 of the OR flags a miss.
                    let mut miss = 0u8;
                    if real.len() == GROUP {
                        for (p, v) in pl_g.iter_mut().zip(real.chunks_exact(2)) {
                            let (i0, i1) = (
                                map[split::exponent(v[0]) as usize],
                                map[split::exponent(v[1]) as usize],
                            );
                            miss |= i0 | i1;
                            *p = i0 | (i1 << 4);
                        }
                    } else {
                        let mut idx = [0u8; GROUP];
                        for (i, &v) in idx.iter_mut().zip(real) {
                            *i = map[split::exponent(v) as usize];
                            miss |= *i;
                        }
                        for (p, i) in pl_g.iter_mut().zip(idx.chunks_exact(2)) {
                            *p = i[0] | (i[1] << 4);
                        }
                    }
                    let esc = miss & 0x80 != 0;
                    flags.push(esc);
                    if esc {
                        escaped.extend(real.iter().map(|&v| split::exponent(v)));
                        escaped.extend(std::iter::repeat_n(pal[0], GROUP - real.len()));
                        pl_g.fill(0);
                    }
                }
            }
            (flags, escaped)
        })
        .collect();
    let mut flags = Vec::with_capacity(if exp_mode { 0 } else { total / GROUP });
    let mut escaped = Vec::new();
    for (f, e) in parts {
        flags.extend(f);
        escaped.extend(e);
    }
    Planes {
        sm,
        plane,
        flags,
        escaped,
    }
}

/// Re-encode the index stream of `t` as `to`. The result equals `compress` of the same tensor
/// with `to` (same palette, sm bytes, escapes and hash).
pub fn transcode(t: &CompressedTensor, to: Encoding) -> Result<CompressedTensor, CodecError> {
    t.validate()?;
    // The result gets a checksum of its own, so a tampered input must not pass through.
    t.check_checksum()?;
    if t.encoding() == to {
        return Ok(t.clone());
    }
    let (escapes, indices) = match to {
        Encoding::Exponent => (Escapes::empty(), Indices::Exponent(decode_exponents(t)?)),
        Encoding::Palette => {
            let (plane, escapes) = index_plane(t)?;
            (escapes, Indices::Palette(nibbles::pack(&plane)))
        }
        Encoding::Huffman => {
            let (nib, escapes) = match &t.indices {
                Indices::Palette(nib) => (nib.clone(), t.escapes.clone()),
                _ => {
                    let (plane, escapes) = index_plane(t)?;
                    (nibbles::pack(&plane), escapes)
                }
            };
            let stream = huffman::encode(&nib, CHUNK_SYMBOLS)?;
            (escapes, Indices::Huffman(stream))
        }
    };
    Ok(sealed(CompressedTensor {
        shape: t.shape.clone(),
        orientation: t.orientation,
        rows: t.rows,
        cols: t.cols,
        palette: t.palette,
        sm: t.sm.clone(),
        escapes,
        indices,
        hash: t.hash,
        checksum: 0,
    }))
}
