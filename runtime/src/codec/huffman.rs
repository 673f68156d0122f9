//! Canonical, length-limited Huffman codes over the 16 palette indices, and the chunked,
//! MSB-first bitstream.

use rayon::prelude::*;

use super::{CodecError, HuffmanStream, MAX_CODE_LEN};

/// Entries of the decode table: one per possible 12-bit peek.
pub const LUT_SIZE: usize = 1 << MAX_CODE_LEN;

/// Optimal code lengths limited to `MAX_CODE_LEN` (package-merge). Unused symbols get 0; a single
/// used symbol gets 1.
pub fn code_lengths(freq: &[u64; 16]) -> [u8; 16] {
    let mut lengths = [0u8; 16];
    let mut used: Vec<usize> = (0..16).filter(|&s| freq[s] > 0).collect();
    match used.len() {
        0 => return lengths,
        1 => {
            lengths[used[0]] = 1;
            return lengths;
        }
        _ => {}
    }
    used.sort_by_key(|&s| (freq[s], s));
    // Coin collector: an item is a weight and how many times each symbol is in it. u128 weights
    // cannot overflow: an item's weight is at most MAX_CODE_LEN times the total count.
    type Item = (u128, [u8; 16]);
    let leaves: Vec<Item> = used
        .iter()
        .map(|&s| {
            let mut c = [0u8; 16];
            c[s] = 1;
            (freq[s] as u128, c)
        })
        .collect();
    let mut list = leaves.clone();
    for _ in 1..MAX_CODE_LEN {
        let packages: Vec<Item> = list
            .chunks_exact(2)
            .map(|p| {
                let mut c = p[0].1;
                for (x, y) in c.iter_mut().zip(p[1].1) {
                    *x += y;
                }
                (p[0].0 + p[1].0, c)
            })
            .collect();
        // Stable merge by weight, leaves before packages on ties, so the result is deterministic.
        let mut merged = Vec::with_capacity(leaves.len() + packages.len());
        let (mut i, mut j) = (0, 0);
        while i < leaves.len() || j < packages.len() {
            if j == packages.len() || (i < leaves.len() && leaves[i].0 <= packages[j].0) {
                merged.push(leaves[i]);
                i += 1;
            } else {
                merged.push(packages[j]);
                j += 1;
            }
        }
        list = merged;
    }
    for item in &list[..2 * (used.len() - 1)] {
        for (l, c) in lengths.iter_mut().zip(item.1) {
            *l += c;
        }
    }
    lengths
}

/// Check code lengths: each at most `MAX_CODE_LEN`, and the Kraft sum at most 1.
pub fn validate_lengths(lengths: &[u8; 16]) -> Result<(), CodecError> {
    if let Some(&l) = lengths.iter().find(|&&l| l as u32 > MAX_CODE_LEN) {
        return Err(CodecError::CodeLengths {
            lengths: *lengths,
            problem: format!("length {l} exceeds the limit {MAX_CODE_LEN}"),
        });
    }
    let kraft: u32 = lengths.iter().filter(|&&l| l > 0).map(|&l| 1u32 << (MAX_CODE_LEN - l as u32)).sum();
    if kraft > 1 << MAX_CODE_LEN {
        return Err(CodecError::CodeLengths {
            lengths: *lengths,
            problem: "the lengths over-subscribe the code space (Kraft sum > 1)".into(),
        });
    }
    Ok(())
}

/// Canonical codes (DEFLATE style): symbols sorted by (length, symbol) get consecutive codes,
/// shifted left whenever the length grows. Requires valid lengths.
pub fn canonical_codes(lengths: &[u8; 16]) -> Result<[u16; 16], CodecError> {
    validate_lengths(lengths)?;
    let mut order: Vec<usize> = (0..16).filter(|&s| lengths[s] > 0).collect();
    order.sort_by_key(|&s| (lengths[s], s));
    let mut codes = [0u16; 16];
    let (mut code, mut prev) = (0u32, 0u8);
    for s in order {
        code <<= lengths[s] - prev;
        codes[s] = code as u16;
        code += 1;
        prev = lengths[s];
    }
    Ok(codes)
}

/// Decode table: entry for each 12-bit MSB-first peek = `(len << 8) | symbol`; 0 where no code
/// matches (an incomplete code).
pub fn build_lut(lengths: &[u8; 16]) -> Result<Vec<u16>, CodecError> {
    let codes = canonical_codes(lengths)?;
    let mut lut = vec![0u16; LUT_SIZE];
    for s in 0..16 {
        let len = lengths[s] as u32;
        if len == 0 {
            continue;
        }
        let shift = MAX_CODE_LEN - len;
        let first = (codes[s] as usize) << shift;
        lut[first..first + (1 << shift)].fill(((len as u16) << 8) | s as u16);
    }
    Ok(lut)
}

impl HuffmanStream {
    /// The decode table for GPU kernels (see [`build_lut`]). Lengths that fail validation give an
    /// all-zero table, which decodes nothing; `decompress` reports the error itself.
    pub fn decode_lut(&self) -> Vec<u16> {
        build_lut(&self.code_lengths).unwrap_or_else(|_| vec![0; LUT_SIZE])
    }

    /// Number of chunks for `n_symbols` symbols.
    pub fn chunk_count(&self, n_symbols: usize) -> usize {
        n_symbols.div_ceil(self.chunk_symbols.max(1) as usize)
    }

    /// Structural checks against `n_symbols`: chunk size, offsets in order and in range, lengths.
    pub fn validate(&self, n_symbols: usize) -> Result<(), CodecError> {
        let bad = |problem: String| Err(CodecError::Stream { problem });
        if self.chunk_symbols == 0 {
            return bad("chunk_symbols is 0".into());
        }
        validate_lengths(&self.code_lengths)?;
        let chunks = self.chunk_count(n_symbols);
        if self.chunk_offsets.len() != chunks {
            return bad(format!(
                "{} chunk offsets, {n_symbols} symbols in chunks of {} need {chunks}",
                self.chunk_offsets.len(),
                self.chunk_symbols
            ));
        }
        if self.total_bits > (self.bits.len() as u64) * 8 {
            return bad(format!("total_bits {} but only {} bytes of stream", self.total_bits, self.bits.len()));
        }
        if self.total_bits > 1 << 32 {
            return bad(format!("total_bits {} exceeds 2^32", self.total_bits));
        }
        let mut prev = 0u64;
        for (c, &o) in self.chunk_offsets.iter().enumerate() {
            let o = o as u64;
            if o < prev || o > self.total_bits {
                return bad(format!("chunk {c} offset {o} out of order or past total_bits {}", self.total_bits));
            }
            prev = o;
        }
        if n_symbols > 0 && self.code_lengths.iter().all(|&l| l == 0) {
            return bad(format!("{n_symbols} symbols but no code"));
        }
        Ok(())
    }

    /// Bit range `[start, end)` that chunk `c` must occupy exactly.
    fn chunk_range(&self, c: usize) -> (u64, u64) {
        let start = self.chunk_offsets[c] as u64;
        let end = self.chunk_offsets.get(c + 1).map_or(self.total_bits, |&o| o as u64);
        (start, end)
    }

    /// Decode chunk `c` into `out` (its symbols). Requires [`HuffmanStream::validate`] to have passed.
    pub fn decode_chunk(&self, c: usize, lut: &[u16], out: &mut [u8]) -> Result<(), CodecError> {
        let (start, end) = self.chunk_range(c);
        let bits = &self.bits[..(self.total_bits.div_ceil(8)) as usize];
        let mut pos = start;
        let (mut buf, mut avail) = (0u64, 0u32);
        for o in out.iter_mut() {
            if avail < MAX_CODE_LEN {
                buf = load_be_u64(bits, (pos >> 3) as usize) << (pos & 7);
                avail = 64 - (pos & 7) as u32;
            }
            let e = lut[(buf >> (64 - MAX_CODE_LEN)) as usize];
            let len = (e >> 8) as u32;
            if len == 0 {
                return Err(CodecError::Stream { problem: format!("chunk {c}: no code matches at bit {pos}") });
            }
            *o = e as u8;
            buf <<= len;
            avail -= len;
            pos += len as u64;
        }
        if pos != end {
            return Err(CodecError::Stream {
                problem: format!("chunk {c}: codes end at bit {pos}, the chunk ends at bit {end}"),
            });
        }
        Ok(())
    }

    /// Decode all `n_symbols` symbols (validates first).
    pub fn decode_symbols(&self, n_symbols: usize) -> Result<Vec<u8>, CodecError> {
        self.validate(n_symbols)?;
        let lut = build_lut(&self.code_lengths)?;
        let mut out = vec![0u8; n_symbols];
        out.par_chunks_mut(self.chunk_symbols as usize)
            .enumerate()
            .try_for_each(|(c, o)| self.decode_chunk(c, &lut, o))?;
        Ok(out)
    }
}

/// 8 bytes big-endian from `bytes[at..]`, zero past the end.
#[inline(always)]
fn load_be_u64(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(b) => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
        None => {
            let mut b = [0u8; 8];
            let tail = bytes.get(at..).unwrap_or(&[]);
            b[..tail.len()].copy_from_slice(tail);
            u64::from_be_bytes(b)
        }
    }
}

/// Chunks per parallel encode task.
const SEGMENT_CHUNKS: usize = 64;

/// One independently encoded run of chunks, starting at bit 0 of `bytes`.
struct Segment {
    bytes: Vec<u8>,
    bits: u64,
    chunk_offsets: Vec<u64>,
}

fn encode_segment(symbols: &[u8], chunk_symbols: usize, lengths: &[u8; 16], codes: &[u16; 16]) -> Segment {
    let mut bytes = Vec::with_capacity(symbols.len() / 2 + 8);
    let mut chunk_offsets = Vec::with_capacity(symbols.len().div_ceil(chunk_symbols));
    let (mut acc, mut nacc, mut written) = (0u64, 0u32, 0u64);
    for chunk in symbols.chunks(chunk_symbols) {
        chunk_offsets.push(written + nacc as u64);
        for &s in chunk {
            let s = (s & 15) as usize;
            let len = lengths[s] as u32;
            acc = (acc << len) | codes[s] as u64;
            nacc += len;
            if nacc >= 32 {
                nacc -= 32;
                bytes.extend_from_slice(&((acc >> nacc) as u32).to_be_bytes());
                written += 32;
            }
        }
    }
    let bits = written + nacc as u64;
    // Flush the remaining bits left-aligned, zero-filled.
    let mut rest = if nacc == 0 { 0 } else { acc << (64 - nacc) };
    for _ in 0..nacc.div_ceil(8) {
        bytes.push((rest >> 56) as u8);
        rest <<= 8;
    }
    Segment { bytes, bits, chunk_offsets }
}

/// Encode `symbols` (each < 16, all with non-zero length) with `lengths` in chunks of `chunk_symbols`.
pub fn encode(symbols: &[u8], lengths: [u8; 16], chunk_symbols: u32) -> Result<HuffmanStream, CodecError> {
    let codes = canonical_codes(&lengths)?;
    let cs = chunk_symbols.max(1) as usize;
    let segments: Vec<Segment> = symbols
        .par_chunks(cs * SEGMENT_CHUNKS)
        .map(|seg| encode_segment(seg, cs, &lengths, &codes))
        .collect();
    let total_bits: u64 = segments.iter().map(|s| s.bits).sum();
    if total_bits > 1 << 32 {
        return Err(CodecError::Overflow { what: format!("huffman stream of {total_bits} bits (limit 2^32)") });
    }
    let mut bits = vec![0u8; total_bits.div_ceil(8) as usize];
    let mut chunk_offsets = Vec::with_capacity(symbols.len().div_ceil(cs));
    let mut start = 0u64;
    for seg in &segments {
        chunk_offsets.extend(seg.chunk_offsets.iter().map(|&o| (start + o) as u32));
        place_bits(&mut bits, start, &seg.bytes, seg.bits);
        start += seg.bits;
    }
    Ok(HuffmanStream { code_lengths: lengths, chunk_symbols: cs as u32, chunk_offsets, bits, total_bits })
}

/// OR `nbits` bits of `src` (starting at its bit 0) into `dst` at bit `start`.
fn place_bits(dst: &mut [u8], start: u64, src: &[u8], nbits: u64) {
    let nbytes = nbits.div_ceil(8) as usize;
    let at = (start / 8) as usize;
    let shift = (start % 8) as u32;
    if shift == 0 {
        dst[at..at + nbytes].copy_from_slice(&src[..nbytes]);
        return;
    }
    let mut carry = 0u8;
    for (i, &b) in src[..nbytes].iter().enumerate() {
        dst[at + i] |= carry | (b >> shift);
        carry = b << (8 - shift);
    }
    // The carry holds only bits past nbits when they fit in the last byte already.
    if let Some(d) = dst.get_mut(at + nbytes) {
        *d |= carry;
    }
}
