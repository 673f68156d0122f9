//! Helpers shared by the codec test files (included with `#[path]`; has no tests of its own).
#![allow(dead_code)]

use unweight::codec::*;

pub const ENCODINGS: [Encoding; 3] = [Encoding::Huffman, Encoding::Palette, Encoding::Exponent];
pub const ORIENTATIONS: [Orientation; 2] = [Orientation::Standard, Orientation::Transposed];

/// `[rows][cols]` → `[cols][rows]`, the obvious way.
pub fn transpose_naive(v: &[u16], rows: usize, cols: usize) -> Vec<u16> {
    let mut out = vec![0u16; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// The encoded matrix's BF16 values as the contract defines it.
pub fn encoded_view(bits: &[u16], shape: &[usize], o: Orientation) -> Vec<u16> {
    let cols = shape.last().copied().unwrap_or(1);
    let rows = bits
        .len()
        .checked_div(cols)
        .unwrap_or_else(|| shape[..shape.len() - 1].iter().product());
    match o {
        Orientation::Standard => bits.to_vec(),
        Orientation::Transposed => transpose_naive(bits, rows, cols),
    }
}

/// Compress, check every decoder and transcoder against the input; panics with context on failure.
pub fn check_round_trip(bits: &[u16], shape: &[usize]) {
    for o in ORIENTATIONS {
        let view = encoded_view(bits, shape, o);
        let direct: Vec<CompressedTensor> = ENCODINGS
            .iter()
            .map(|&e| compress(bits, shape, o, e).expect("compress"))
            .collect();
        for (t, e) in direct.iter().zip(ENCODINGS) {
            let ctx = format!("{e} {o} shape {shape:?}");
            assert_eq!(t.encoding(), e, "{ctx}");
            assert_eq!(
                decompress(t).expect("decompress"),
                bits,
                "{ctx}: decompress"
            );
            assert_eq!(
                decode_bf16_encoded(t).expect("decode"),
                view,
                "{ctx}: encoded view"
            );
            // Every reference decoder agrees across encodings.
            assert_eq!(
                decode_exponents(t).unwrap(),
                decode_exponents(&direct[2]).unwrap(),
                "{ctx}: exponents"
            );
            assert_eq!(
                decode_palette_indices(t).unwrap(),
                decode_palette_indices(&direct[1]).unwrap(),
                "{ctx}: nibbles"
            );
            // Transcoding from any encoding to any other equals direct encoding.
            for (d, to) in direct.iter().zip(ENCODINGS) {
                assert_eq!(
                    &transcode(t, to).expect("transcode"),
                    d,
                    "{ctx}: transcode to {to}"
                );
            }
            check_format_invariants(t, &view);
        }
    }
}

/// Facts of the contract that are visible without decoding: padding, escapes, chunking.
pub fn check_format_invariants(t: &CompressedTensor, view: &[u16]) {
    let pc = t.padded_cols();
    assert_eq!(pc % 64, 0);
    assert!(pc >= t.cols && pc < t.cols + 64 || t.cols == 0 && pc == 0);
    assert_eq!(t.sm.len(), t.rows * pc);
    let exps = decode_exponents(t).unwrap();
    for r in 0..t.rows {
        for c in 0..pc {
            let i = r * pc + c;
            if c < t.cols {
                let v = view[r * t.cols + c];
                assert_eq!(t.sm[i], (((v >> 8) & 0x80) | (v & 0x7F)) as u8);
                assert_eq!(exps[i], ((v >> 7) & 0xFF) as u8);
            } else {
                assert_eq!(t.sm[i], 0, "padding sm");
                assert_eq!(exps[i], t.palette[0], "padding exponent");
            }
        }
    }
    let nib = decode_palette_indices(t).unwrap();
    let pal_t = transcode(t, Encoding::Palette).unwrap();
    let groups = t.groups();
    assert_eq!(pal_t.escapes.bitmap.len(), groups.div_ceil(64));
    let mut slot = 0usize;
    for g in 0..groups {
        let escaped = pal_t.escapes.bitmap[g / 64] >> (g % 64) & 1 == 1;
        let ex = &exps[g * 64..g * 64 + 64];
        let (r, c0) = (g / (pc / 64), (g % (pc / 64)) * 64);
        let real = (t.cols - c0).min(64);
        assert_eq!(
            escaped,
            ex[..real].iter().any(|e| !t.palette.contains(e)),
            "group {g} escape flag"
        );
        let idx = |j: usize| (nib[(g * 64 + j) / 2] >> (4 * ((g * 64 + j) % 2))) & 15;
        if escaped {
            let p = pal_t.escapes.prefix[g / 64] as usize
                + (pal_t.escapes.bitmap[g / 64] & ((1u64 << (g % 64)) - 1)).count_ones() as usize;
            assert_eq!(p, slot, "O(1) slot of group {g}");
            assert_eq!(&pal_t.escapes.exponents[p * 64..p * 64 + 64], ex);
            slot += 1;
            assert!(
                (0..64).all(|j| idx(j) == 0),
                "escaped group {g} indices are 0"
            );
        } else {
            for (j, &want) in ex.iter().enumerate().take(64) {
                assert_eq!(
                    t.palette[idx(j) as usize],
                    want,
                    "group {g} (row {r}) index {j}"
                );
            }
        }
    }
    assert_eq!(slot * 64, pal_t.escapes.exponents.len());
}

/// Bit-by-bit reference decoder of the Huffman stream, written from FORMAT.md independently of the
/// codec's table decoder: reads one bit at a time (MSB-first) and matches canonical codes.
pub fn decode_bit_by_bit(h: &HuffmanStream, n_symbols: usize) -> Vec<u8> {
    let mut syms: Vec<usize> = (0..16).filter(|&s| h.code_lengths[s] > 0).collect();
    syms.sort_by_key(|&s| (h.code_lengths[s], s));
    let mut codes = vec![(0u32, 0u8, 0usize); 0];
    let (mut code, mut prev) = (0u32, 0u8);
    for s in syms {
        let l = h.code_lengths[s];
        code <<= l - prev;
        codes.push((code, l, s));
        code += 1;
        prev = l;
    }
    let bit = |p: u64| (h.bits[(p / 8) as usize] >> (7 - p % 8)) & 1;
    let mut out = Vec::with_capacity(n_symbols);
    for c in 0..n_symbols.div_ceil(h.chunk_symbols as usize) {
        let mut p = h.chunk_offsets[c] as u64;
        let n = (h.chunk_symbols as usize).min(n_symbols - c * h.chunk_symbols as usize);
        for _ in 0..n {
            let (mut v, mut l) = (0u32, 0u8);
            loop {
                v = v << 1 | bit(p) as u32;
                p += 1;
                l += 1;
                if let Some(&(_, _, s)) = codes.iter().find(|&&(cv, cl, _)| cl == l && cv == v) {
                    out.push(s as u8);
                    break;
                }
                assert!(l <= 12, "no code within 12 bits");
            }
        }
        let end = h
            .chunk_offsets
            .get(c + 1)
            .map_or(h.total_bits, |&o| o as u64);
        assert_eq!(p, end, "chunk {c} ends where the next begins");
    }
    out
}

/// Unpack nibbles into one index per element.
pub fn unpack(nib: &[u8]) -> Vec<u8> {
    nib.iter().flat_map(|&b| [b & 15, b >> 4]).collect()
}
