//! Sub-chunk offsets of a Huffman-resident weight: the bit position of every
//! [`SUB_SYMBOLS`]-th symbol of each chunk, so a decoder can run one chain per sub-chunk (refill
//! `sub256`) instead of one per chunk. The GPU records them in the upload's validating decode
//! (templates/huff.cu.tera); [`reference()`] computes the same numbers on the CPU for tests.

use unweight_codegen::abi::{GROUP, MAX_CODE_LEN, SUB_SYMBOLS};

use crate::codec::{CodecError, HuffmanStream};

/// How many sub-chunk offsets a weight of `symbols` (padded) symbols in chunks of
/// `chunk_symbols` keeps, or `None` when its chunks do not hold whole sub-chunks (it is then
/// decoded one chain per chunk).
pub fn sub_count(symbols: usize, chunk_symbols: u32) -> Option<usize> {
    if chunk_symbols == 0 || chunk_symbols % SUB_SYMBOLS != 0 {
        return None;
    }
    // Sub-chunk t holds groups t * (SUB_SYMBOLS / GROUP) ..; a chunk's last may be short.
    Some((symbols / GROUP as usize).div_ceil((SUB_SYMBOLS / GROUP) as usize))
}

/// The offsets a validating GPU decode records for `h` holding `symbols` symbols: sub-chunk `t`
/// of chunk `c` starts where the chunk's first `t * SUB_SYMBOLS` codes end. `None` as
/// [`sub_count`]; an error where the stream holds no code for its bits.
pub fn reference(h: &HuffmanStream, symbols: usize) -> Result<Option<Vec<u32>>, CodecError> {
    let Some(count) = sub_count(symbols, h.chunk_symbols) else {
        return Ok(None);
    };
    if h.chunk_offsets.len() != h.chunk_count(symbols) {
        return Err(CodecError::Stream {
            problem: format!(
                "{} chunk offsets for {symbols} symbols in chunks of {}",
                h.chunk_offsets.len(),
                h.chunk_symbols
            ),
        });
    }
    let lut = h.decode_lut();
    let peek = |pos: u64| -> u32 {
        // MAX_CODE_LEN bits from `pos`, MSB-first, zeros past the stream.
        (0..MAX_CODE_LEN as u64).fold(0, |acc, i| {
            let b = pos + i;
            let bit = h
                .bits
                .get((b / 8) as usize)
                .map_or(0, |byte| (byte >> (7 - b % 8)) & 1);
            (acc << 1) | bit as u32
        })
    };
    let (per_chunk, cs) = (
        (h.chunk_symbols / SUB_SYMBOLS) as usize,
        h.chunk_symbols as usize,
    );
    let mut out = Vec::with_capacity(count);
    for (c, &start) in h.chunk_offsets.iter().enumerate() {
        let mut pos = start as u64;
        let n = cs.min(symbols - c * cs);
        for i in 0..n {
            if i % SUB_SYMBOLS as usize == 0 {
                out.push(pos as u32);
            }
            let len = (lut[peek(pos) as usize] >> 8) as u64;
            if len == 0 {
                return Err(CodecError::Stream {
                    problem: format!("chunk {c}: bits at {pos} match no code"),
                });
            }
            pos += len;
        }
        debug_assert!(out.len() <= (c + 1) * per_chunk);
    }
    debug_assert_eq!(out.len(), count);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{compress, Encoding, Indices, Orientation};

    fn stream(rows: usize, cols: usize, seed: u32) -> (HuffmanStream, usize) {
        let bits: Vec<u16> = (0..(rows * cols) as u32)
            .map(|i| {
                let r = (i ^ seed).wrapping_mul(2_654_435_761) >> 7;
                (((118 + r % 9 + (r >> 9) % 3) as u16) << 7) | (r as u16 & 0x807F)
            })
            .collect();
        let t = compress(
            &bits,
            &[rows, cols],
            Orientation::Standard,
            Encoding::Huffman,
        )
        .unwrap();
        let Indices::Huffman(h) = &t.indices else {
            unreachable!()
        };
        (h.clone(), t.rows * t.padded_cols())
    }

    #[test]
    fn counts_cover_every_sub_chunk_and_need_whole_ones() {
        assert_eq!(sub_count(1024, 1024), Some(4));
        assert_eq!(sub_count(1088, 1024), Some(5)); // a last chunk of one group: one short sub-chunk
        assert_eq!(sub_count(64, 1024), Some(1));
        assert_eq!(sub_count(0, 1024), Some(0));
        assert_eq!(sub_count(4096, 512), Some(16));
        assert_eq!(sub_count(4096, 192), None);
        assert_eq!(sub_count(4096, 0), None);
    }

    /// Each sub-chunk's offset is where the CPU decoder is after that many symbols of its chunk:
    /// a chunk's first is the chunk's offset, and the codes between two offsets are exactly
    /// SUB_SYMBOLS symbols (checked by decoding them again from the offset).
    #[test]
    fn offsets_start_chunks_and_split_them_into_whole_sub_chunks() {
        for (rows, cols) in [(37, 200), (64, 4096), (3, 64), (300, 1000)] {
            let (h, symbols) = stream(rows, cols, rows as u32);
            let subs = reference(&h, symbols).unwrap().unwrap();
            assert_eq!(Some(subs.len()), sub_count(symbols, h.chunk_symbols));
            let per_chunk = (h.chunk_symbols / SUB_SYMBOLS) as usize;
            for (c, &o) in h.chunk_offsets.iter().enumerate() {
                assert_eq!(subs[c * per_chunk], o, "{rows}x{cols} chunk {c}");
            }
            assert!(subs.windows(2).all(|w| w[0] < w[1]), "{rows}x{cols}");
            assert!(*subs.last().unwrap() as u64 <= h.total_bits);
            let lut = h.decode_lut();
            let mut all = vec![0u8; symbols];
            for c in 0..h.chunk_offsets.len() {
                let cs = h.chunk_symbols as usize;
                let n = cs.min(symbols - c * cs);
                h.decode_chunk(c, &lut, &mut all[c * cs..c * cs + n])
                    .unwrap();
            }
            // Symbol SUB_SYMBOLS * t of the tensor is the one whose code starts at subs[t].
            for (t, &o) in subs.iter().enumerate() {
                let mut p = 0u32;
                for i in 0..MAX_CODE_LEN as u64 {
                    let b = o as u64 + i;
                    let bit = h
                        .bits
                        .get((b / 8) as usize)
                        .map_or(0, |x| (x >> (7 - b % 8)) & 1);
                    p = (p << 1) | bit as u32;
                }
                assert_eq!(
                    (lut[p as usize] & 15) as u8,
                    all[t * SUB_SYMBOLS as usize],
                    "{rows}x{cols} sub {t}"
                );
            }
        }
    }

    #[test]
    fn a_stream_without_codes_or_offsets_is_refused_and_odd_chunks_have_none() {
        let (mut h, symbols) = stream(64, 1024, 9);
        h.code_lengths = [0; 16];
        assert!(reference(&h, symbols).is_err());
        let (mut h, symbols) = stream(64, 1024, 9);
        h.chunk_offsets.pop();
        assert!(reference(&h, symbols).is_err());
        let (mut h, symbols) = stream(64, 1024, 9);
        h.chunk_symbols = 192;
        assert_eq!(reference(&h, symbols).unwrap(), None);
    }
}
