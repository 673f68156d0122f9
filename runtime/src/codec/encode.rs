//! BF16 → [`CompressedTensor`], and transcoding between encodings.

use rayon::prelude::*;

use super::decode::{decode_exponents, index_plane};
use super::split::{self, element_count, matrix_dims, padded};
use super::{
    huffman, nibbles, palette, CodecError, CompressedTensor, Encoding, Escapes, Indices, Orientation,
    CHUNK_SYMBOLS, GROUP,
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
        return Err(CodecError::ShapeMismatch { shape: shape.to_vec(), expected: n, actual: bits.len() });
    }
    let (r0, c0) = matrix_dims(shape)?;
    let (hash, (transposed, hist)) = rayon::join(
        || super::hash_bits(bits),
        || {
            let t = (orientation == Orientation::Transposed).then(|| split::transpose(bits, r0, c0));
            let h = split::histogram(t.as_deref().unwrap_or(bits));
            (t, h)
        },
    );
    let (src, rows, cols) = match &transposed {
        Some(t) => (&t[..], c0, r0),
        None => (bits, r0, c0),
    };
    let pc = padded(cols)?;
    let total = rows
        .checked_mul(pc)
        .ok_or_else(|| CodecError::Overflow { what: format!("{rows}×{pc} padded matrix") })?;
    if total / GROUP > u32::MAX as usize {
        return Err(CodecError::Overflow { what: format!("{} groups", total / GROUP) });
    }
    let pal = palette::choose(&hist);
    let planes = split_planes(src, rows, cols, pc, &pal, encoding);
    let (escapes, indices) = match encoding {
        Encoding::Exponent => (Escapes::empty(), Indices::Exponent(planes.plane)),
        Encoding::Palette => {
            (Escapes::from_flags(&planes.flags, planes.escaped), Indices::Palette(nibbles::pack(&planes.plane)))
        }
        Encoding::Huffman => {
            let lengths = huffman::code_lengths(&planes.freq);
            let stream = huffman::encode(&planes.plane, lengths, CHUNK_SYMBOLS)?;
            (Escapes::from_flags(&planes.flags, planes.escaped), Indices::Huffman(stream))
        }
    };
    Ok(CompressedTensor {
        shape: shape.to_vec(),
        orientation,
        rows,
        cols,
        palette: pal,
        sm: planes.sm,
        escapes,
        indices,
        hash,
    })
}

/// The split of the padded encoded matrix.
struct Planes {
    sm: Vec<u8>,
    /// Palette indices (escaped groups and padding: 0), or exponents for `Encoding::Exponent`
    /// (padding: palette[0]).
    plane: Vec<u8>,
    /// One flag per group (empty for `Encoding::Exponent`).
    flags: Vec<bool>,
    /// 64 exponents per escaped group.
    escaped: Vec<u8>,
    /// Symbol counts of `plane` (Huffman only).
    freq: [u64; 16],
}

fn split_planes(src: &[u16], rows: usize, cols: usize, pc: usize, pal: &[u8; 16], encoding: Encoding) -> Planes {
    let total = rows * pc;
    let map = palette::index_map(pal);
    let exp_mode = encoding == Encoding::Exponent;
    let mut sm = vec![0u8; total];
    let mut plane = vec![0u8; total];
    if total == 0 {
        return Planes { sm, plane, flags: Vec::new(), escaped: Vec::new(), freq: [0; 16] };
    }
    let block_rows = (BLOCK_ELEMS / pc).max(1);
    let parts: Vec<(Vec<bool>, Vec<u8>, [u64; 16])> = sm
        .par_chunks_mut(block_rows * pc)
        .zip(plane.par_chunks_mut(block_rows * pc))
        .enumerate()
        .map(|(b, (sm_blk, pl_blk))| {
            let mut flags = Vec::new();
            let mut escaped = Vec::new();
            let r_first = b * block_rows;
            for (r, (sm_row, pl_row)) in sm_blk.chunks_exact_mut(pc).zip(pl_blk.chunks_exact_mut(pc)).enumerate() {
                let row = &src[(r_first + r) * cols..(r_first + r + 1) * cols];
                for (g, (sm_g, pl_g)) in sm_row.chunks_exact_mut(GROUP).zip(pl_row.chunks_exact_mut(GROUP)).enumerate() {
                    let real = &row[g * GROUP..cols.min((g + 1) * GROUP)];
                    // NOT_IN_PALETTE is 0xFF and indices are < 16: bit 7 of the OR flags a miss.
                    let mut miss = 0u8;
                    for ((s, p), &v) in sm_g.iter_mut().zip(pl_g.iter_mut()).zip(real) {
                        let e = split::exponent(v);
                        let i = map[e as usize];
                        *s = split::sign_mantissa(v);
                        *p = if exp_mode { e } else { i };
                        miss |= i;
                    }
                    if exp_mode {
                        pl_g[real.len()..].fill(pal[0]);
                        continue;
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
            let freq = if encoding == Encoding::Huffman { count_symbols(pl_blk) } else { [0; 16] };
            (flags, escaped, freq)
        })
        .collect();
    let mut flags = Vec::with_capacity(if exp_mode { 0 } else { total / GROUP });
    let mut escaped = Vec::new();
    let mut freq = [0u64; 16];
    for (f, e, q) in parts {
        flags.extend(f);
        escaped.extend(e);
        for (a, b) in freq.iter_mut().zip(q) {
            *a += b;
        }
    }
    Planes { sm, plane, flags, escaped, freq }
}

/// Counts of each symbol (< 16) in `syms`.
fn count_symbols(syms: &[u8]) -> [u64; 16] {
    let mut h = [[0u32; 16]; 4];
    let mut quads = syms.chunks_exact(4);
    for q in &mut quads {
        h[0][(q[0] & 15) as usize] += 1;
        h[1][(q[1] & 15) as usize] += 1;
        h[2][(q[2] & 15) as usize] += 1;
        h[3][(q[3] & 15) as usize] += 1;
    }
    for &s in quads.remainder() {
        h[0][(s & 15) as usize] += 1;
    }
    let mut out = [0u64; 16];
    for sub in &h {
        for (o, &c) in out.iter_mut().zip(sub) {
            *o += c as u64;
        }
    }
    out
}

/// Re-encode the index stream of `t` as `to`. The result equals `compress` of the same tensor
/// with `to` (same palette, sm bytes, escapes and hash).
pub fn transcode(t: &CompressedTensor, to: Encoding) -> Result<CompressedTensor, CodecError> {
    t.validate()?;
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
            let (plane, escapes) = index_plane(t)?;
            let freq = plane
                .par_chunks(BLOCK_ELEMS)
                .map(count_symbols)
                .reduce(|| [0; 16], |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                });
            let stream = huffman::encode(&plane, huffman::code_lengths(&freq), CHUNK_SYMBOLS)?;
            (escapes, Indices::Huffman(stream))
        }
    };
    Ok(CompressedTensor {
        shape: t.shape.clone(),
        orientation: t.orientation,
        rows: t.rows,
        cols: t.cols,
        palette: t.palette,
        sm: t.sm.clone(),
        escapes,
        indices,
        hash: t.hash,
    })
}
