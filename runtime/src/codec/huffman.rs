//! Canonical, length-limited Huffman codes over the 16 palette indices, and the chunked,
//! MSB-first bitstream.

use rayon::prelude::*;

use super::code::{
    build_lut, canonical_codes, code_lengths, load_be_u64, validate_lengths, LUT_SIZE,
};
use super::{CodecError, HuffmanStream, MAX_CODE_LEN};

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
            return bad(format!(
                "total_bits {} but only {} bytes of stream",
                self.total_bits,
                self.bits.len()
            ));
        }
        if self.total_bits > 1 << 32 {
            return bad(format!("total_bits {} exceeds 2^32", self.total_bits));
        }
        let mut prev = 0u64;
        for (c, &o) in self.chunk_offsets.iter().enumerate() {
            let o = o as u64;
            if o < prev || o > self.total_bits {
                return bad(format!(
                    "chunk {c} offset {o} out of order or past total_bits {}",
                    self.total_bits
                ));
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
        let end = self
            .chunk_offsets
            .get(c + 1)
            .map_or(self.total_bits, |&o| o as u64);
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
                return Err(CodecError::Stream {
                    problem: format!("chunk {c}: no code matches at bit {pos}"),
                });
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
}

/// Chunks per parallel encode task.
const SEGMENT_CHUNKS: usize = 64;

/// What one encode task reports besides the bytes it wrote in place: its chunk offsets
/// (relative to byte `start / 8` of the stream) and, when its last byte is shared with the next
/// segment, that byte's bits (to be ORed in after the parallel part).
struct Segment {
    chunk_offsets: Vec<u64>,
    tail: Option<u8>,
}

thread_local! {
    /// Per-thread encode buffer, reused so that encoding faults in no fresh pages.
    static SEGMENT_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Code (bits 8..32) and length (bits 0..8) of both symbols of each nibble byte (low nibble
/// first in the stream), so the encoder does one table step per two symbols.
fn pair_table(lengths: &[u8; 16], codes: &[u16; 16]) -> [u32; 256] {
    std::array::from_fn(|b| {
        let (lo, hi) = (b & 15, b >> 4);
        let code = (codes[lo] as u32) << lengths[hi] | codes[hi] as u32;
        code << 8 | (lengths[lo] as u32 + lengths[hi] as u32)
    })
}

/// Histogram of byte values of `nib` (= symbol pairs); four sub-histograms avoid store-to-load
/// stalls on runs of equal bytes.
fn pair_histogram(nib: &[u8]) -> [u64; 256] {
    let mut h = [[0u32; 256]; 4];
    let mut quads = nib.chunks_exact(4);
    for q in &mut quads {
        h[0][q[0] as usize] += 1;
        h[1][q[1] as usize] += 1;
        h[2][q[2] as usize] += 1;
        h[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        h[0][b as usize] += 1;
    }
    std::array::from_fn(|b| h.iter().map(|sub| sub[b] as u64).sum())
}

/// [`encode_segment_body`] compiled for BMI2 when the CPU has it (flag-free variable shifts:
/// fewer instructions in the loop).
/// Writes the segment's bytes into `dst` (its own bytes of the stream: all but a last byte it
/// shares with the next segment, which comes back as `tail`).
fn encode_segment(
    nib: &[u8],
    chunk_bytes: usize,
    pairs: &[u32; 256],
    shift: u32,
    bits: u64,
    dst: &mut [u8],
) -> Segment {
    SEGMENT_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let nbytes = (shift as u64 + bits).div_ceil(8) as usize;
        // Each step stores 8 bytes at the first byte that still has free bits: slack for the
        // last. Every byte below `nbytes` is written, so old contents do not matter.
        if scratch.len() < nbytes + 8 {
            scratch.resize(nbytes + 8, 0);
        }
        let chunk_offsets = encode_segment_into(nib, chunk_bytes, pairs, shift, &mut scratch);
        let own = dst.len().min(nbytes);
        dst[..own].copy_from_slice(&scratch[..own]);
        Segment {
            chunk_offsets,
            tail: (nbytes > own).then(|| scratch[own]),
        }
    })
}

/// [`encode_segment_body`] compiled for BMI2 when the CPU has it (flag-free variable shifts:
/// fewer instructions in the loop).
fn encode_segment_into(
    nib: &[u8],
    chunk_bytes: usize,
    pairs: &[u32; 256],
    shift: u32,
    bytes: &mut [u8],
) -> Vec<u64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("bmi2") {
        /// # Safety
        /// The CPU must support BMI2 (checked just above).
        #[target_feature(enable = "bmi2")]
        unsafe fn bmi2(n: &[u8], c: usize, p: &[u32; 256], s: u32, b: &mut [u8]) -> Vec<u64> {
            encode_segment_body(n, c, p, s, b)
        }
        // SAFETY: BMI2 was detected at run time.
        return unsafe { bmi2(nib, chunk_bytes, pairs, shift, bytes) };
    }
    encode_segment_body(nib, chunk_bytes, pairs, shift, bytes)
}

/// Encode one segment whose first bit lands at bit `shift` (< 8) of its first byte into
/// `bytes` (its length in bytes + 8 of slack); the bits before it are zero so segments can be
/// ORed together. Returns the chunk offsets relative to the first byte.
#[inline(always)]
fn encode_segment_body(
    nib: &[u8],
    chunk_bytes: usize,
    pairs: &[u32; 256],
    shift: u32,
    bytes: &mut [u8],
) -> Vec<u64> {
    let mut chunk_offsets = Vec::with_capacity(nib.len().div_ceil(chunk_bytes));
    // `acc` holds `nacc` pending bits in its low end; after each store fewer than 8 remain.
    let (mut acc, mut nacc, mut at) = (0u64, shift, 0usize);
    let mut put = |acc: u64, nacc: &mut u32, at: &mut usize| {
        // nacc >= 1 here: every used symbol has a code of at least one bit.
        bytes[*at..*at + 8].copy_from_slice(&(acc << (64 - *nacc)).to_be_bytes());
        *at += (*nacc / 8) as usize;
        *nacc %= 8;
    };
    for chunk in nib.chunks(chunk_bytes) {
        chunk_offsets.push(8 * at as u64 + nacc as u64);
        // Codes of two nibble bytes (four symbols, <= 48 bits), joined before they meet `acc`:
        // that work does not wait for it, so the chain through `acc` stays one shift and one
        // OR per step.
        let join = |b0: u8, b1: u8| {
            let (p0, p1) = (pairs[b0 as usize], pairs[b1 as usize]);
            let (l0, l1) = (p0 & 0xFF, p1 & 0xFF);
            (((p0 >> 8) as u64) << l1 | (p1 >> 8) as u64, l0 + l1)
        };
        let mut four = chunk.chunks_exact(4);
        for q in &mut four {
            let ((ca, la), (cb, lb)) = (join(q[0], q[1]), join(q[2], q[3]));
            // Eight symbols at once when they fit beside the < 8 pending bits (nearly always:
            // 56 bits is over twice the typical length), else four at a time.
            if la + lb <= 56 {
                acc = acc << (la + lb) | ca << lb | cb;
                nacc += la + lb;
                put(acc, &mut nacc, &mut at);
            } else {
                acc = acc << la | ca;
                nacc += la;
                put(acc, &mut nacc, &mut at);
                acc = acc << lb | cb;
                nacc += lb;
                put(acc, &mut nacc, &mut at);
            }
        }
        let mut two = four.remainder().chunks_exact(2);
        for t in &mut two {
            let (code, len) = join(t[0], t[1]);
            acc = acc << len | code;
            nacc += len;
            put(acc, &mut nacc, &mut at);
        }
        for &b in two.remainder() {
            let p = pairs[b as usize];
            acc = (acc << (p & 0xFF)) | (p >> 8) as u64;
            nacc += p & 0xFF;
            put(acc, &mut nacc, &mut at);
        }
    }
    if nacc > 0 {
        put(acc, &mut nacc, &mut at);
    }
    chunk_offsets
}

/// Encode the symbols held as nibbles (`nib`, element `2j` in the low nibble of byte `j`) with
/// the optimal length-limited code for their counts, in chunks of `chunk_symbols` (even).
pub fn encode(nib: &[u8], chunk_symbols: u32) -> Result<HuffmanStream, CodecError> {
    let identity = std::array::from_fn(|b| b as u8);
    encode_counted(
        nib,
        &pair_histograms(nib, chunk_symbols),
        chunk_symbols,
        &identity,
    )
}

/// Byte-value histograms of `nib`, one per encode segment (for [`encode_counted`]).
pub fn pair_histograms(nib: &[u8], chunk_symbols: u32) -> Vec<[u64; 256]> {
    let seg_bytes = (chunk_symbols / 2).max(1) as usize * SEGMENT_CHUNKS;
    nib.par_chunks(seg_bytes).map(pair_histogram).collect()
}

/// Symbol counts from pair histograms.
pub fn symbol_counts(hists: &[[u64; 256]]) -> [u64; 16] {
    let mut freq = [0u64; 16];
    for h in hists {
        for (b, &c) in h.iter().enumerate() {
            freq[b & 15] += c;
            freq[b >> 4] += c;
        }
    }
    freq
}

/// [`encode`] with the segment histograms already counted by [`pair_histograms`].
///
/// `rename` maps each stored nibble byte to the byte it stands for (identity unless the indices
/// in `nib` are numbered for another palette order, see `encode.rs`): the stream encodes the
/// renamed symbols, and `hists` count the stored bytes.
pub fn encode_counted(
    nib: &[u8],
    hists: &[[u64; 256]],
    chunk_symbols: u32,
    rename: &[u8; 256],
) -> Result<HuffmanStream, CodecError> {
    debug_assert!(chunk_symbols >= 2 && chunk_symbols & 1 == 0);
    let chunk_bytes = (chunk_symbols / 2).max(1) as usize;
    let seg_bytes = chunk_bytes * SEGMENT_CHUNKS;
    // Counting first gives the code and every segment's exact bit length, hence its start, so
    // the segments encode in parallel straight at their final bit alignment.
    let renamed: Vec<[u64; 256]> = hists
        .iter()
        .map(|h| {
            let mut r = [0u64; 256];
            for (b, &c) in h.iter().enumerate() {
                r[rename[b] as usize] += c;
            }
            r
        })
        .collect();
    let freq = symbol_counts(&renamed);
    let lengths = code_lengths(&freq);
    let codes = canonical_codes(&lengths)?;
    let final_pairs = pair_table(&lengths, &codes);
    // Indexed by the stored byte: the code of the pair it stands for.
    let pairs: [u32; 256] = std::array::from_fn(|b| final_pairs[rename[b] as usize]);
    let seg_bits: Vec<u64> = hists
        .iter()
        .map(|h| {
            h.iter()
                .zip(&pairs)
                .map(|(&c, p)| c * (p & 0xFF) as u64)
                .sum()
        })
        .collect();
    let total_bits: u64 = seg_bits.iter().sum();
    if total_bits > 1 << 32 {
        return Err(CodecError::Overflow {
            what: format!("huffman stream of {total_bits} bits (limit 2^32)"),
        });
    }
    let starts: Vec<u64> = seg_bits
        .iter()
        .scan(0u64, |acc, &b| Some(std::mem::replace(acc, *acc + b)))
        .collect();
    // Segment k owns bytes start_k / 8 .. start_{k+1} / 8 of the stream (the last one, the rest)
    // and writes them in place; a byte two segments share is ORed together afterwards.
    let nbytes = total_bits.div_ceil(8) as usize;
    let mut bits = super::buffers::zeroed_u8(nbytes);
    let mut dsts = Vec::with_capacity(starts.len());
    let mut rest = &mut bits[..];
    let mut owned_to = 0usize;
    for k in 0..starts.len() {
        let end = starts.get(k + 1).map_or(nbytes, |&s| (s / 8) as usize);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(end - owned_to);
        dsts.push(head);
        rest = tail;
        owned_to = end;
    }
    let segments: Vec<Segment> = nib
        .par_chunks(seg_bytes)
        .zip(starts.par_iter().zip(&seg_bits))
        .zip(dsts)
        .map(|((seg, (&start, &b)), dst)| {
            encode_segment(seg, chunk_bytes, &pairs, (start % 8) as u32, b, dst)
        })
        .collect();
    let mut chunk_offsets = Vec::with_capacity(nib.len().div_ceil(chunk_bytes));
    for (k, (seg, &start)) in segments.iter().zip(&starts).enumerate() {
        let at = start / 8 * 8;
        chunk_offsets.extend(seg.chunk_offsets.iter().map(|&o| (at + o) as u32));
        if let (Some(t), Some(&next)) = (seg.tail, starts.get(k + 1)) {
            bits[(next / 8) as usize] |= t;
        }
    }
    Ok(HuffmanStream {
        code_lengths: lengths,
        chunk_symbols: 2 * chunk_bytes as u32,
        chunk_offsets,
        bits,
        total_bits,
    })
}
