//! Fast CPU Huffman decoding: a 12-bit table that yields up to 6 whole codes per lookup, each
//! symbol already mapped to its output byte (its palette exponent, or the index itself).
//! Same results as [`HuffmanStream::decode_chunk`], about four times fewer table steps.

use rayon::prelude::*;

use super::huffman::{build_lut, load_be_u64, LUT_SIZE};
use super::{CodecError, HuffmanStream, MAX_CODE_LEN};

/// Most symbols one table entry holds.
const MAX_SYMBOLS: u32 = 6;
/// Bytes a decode buffer needs past its last symbol: each step stores 8 bytes.
pub const SLACK: usize = 8;
/// Entry where no code matches: flagged in bit 63, and shaped like a one-symbol, 12-bit step so
/// the fast loop keeps moving and checks the flag once at its end instead of at every step.
const INVALID: u64 = 1 << 63 | 12 << 56 | 1 << 52 | 12 << 48;

/// Entry layout (u64): bytes 0..6 = output bytes of up to 6 symbols, bits 48..52 = bits consumed,
/// bits 52..56 = symbol count, bits 56..60 = length of the first code, bit 63 = no code matches.
pub struct MultiLut(Vec<u64>);

impl MultiLut {
    pub fn new(lengths: &[u8; 16], values: &[u8; 16]) -> Result<Self, CodecError> {
        let single = build_lut(lengths)?;
        let mut table = vec![0u64; LUT_SIZE];
        // In parallel: for a tensor of a million elements the table is a tenth of the work.
        table
            .par_chunks_mut(LUT_SIZE / 8)
            .enumerate()
            .for_each(|(part, entries)| {
                for (i, entry) in entries.iter_mut().enumerate() {
                    let peek = part * (LUT_SIZE / 8) + i;
                    let (mut used, mut count, mut bytes, mut first) = (0u32, 0u32, 0u64, 0u64);
                    while count < MAX_SYMBOLS {
                        // Bits past `used` are real stream bits; zeros shifted in are not, so a code only
                        // counts if it ends within the 12 peeked bits.
                        let e = single[(peek << used) & (LUT_SIZE - 1)];
                        let len = (e >> 8) as u32;
                        if len == 0 || used + len > MAX_CODE_LEN {
                            break;
                        }
                        if count == 0 {
                            first = len as u64;
                        }
                        bytes |= (values[(e & 15) as usize] as u64) << (8 * count);
                        used += len;
                        count += 1;
                    }
                    *entry = if count == 0 {
                        INVALID
                    } else {
                        bytes | (used as u64) << 48 | (count as u64) << 52 | first << 56
                    };
                }
            });
        Ok(MultiLut(table))
    }
}

/// Chunks decoded side by side by one task: their dependency chains (peek → table → shift)
/// are independent, so the CPU overlaps them.
pub const LANES: usize = 4;

/// Decode state of one chunk.
#[derive(Clone, Copy)]
struct Lane {
    chunk: usize,
    pos: u64,
    end_bit: u64,
    k: usize,
    end: usize,
}

/// [`decode_lanes`] compiled for BMI2 (flag-free variable shifts in the dependency chain).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
unsafe fn decode_lanes_bmi2(
    lanes: &mut [Lane; LANES],
    bits: &[u8],
    table: &[u64],
    buf: &mut [u8],
) -> Result<(), CodecError> {
    decode_lanes(lanes, bits, table, buf)
}

/// The fast part of decoding [`LANES`] chunks side by side, until one lane nears its end. Lane
/// state lives in fixed-size local arrays so it stays in registers.
#[inline(always)]
fn decode_lanes(
    lanes: &mut [Lane; LANES],
    bits: &[u8],
    table: &[u64],
    buf: &mut [u8],
) -> Result<(), CodecError> {
    // Four lookups per 64-bit load: a load leaves at least 57 valid bits, four steps use <= 48.
    // The last of the four stores 8 bytes at most 18 symbols on: all of it must stay inside
    // the lane, whose neighbour's symbols may already be in place.
    const ROOM: usize = 3 * MAX_SYMBOLS as usize + 8;
    let table: &[u64; LUT_SIZE] = table.try_into().map_err(|_| CodecError::Stream {
        problem: "table size".into(),
    })?;
    let mut pos: [u64; LANES] = std::array::from_fn(|i| lanes[i].pos);
    let mut k: [usize; LANES] = std::array::from_fn(|i| lanes[i].k);
    let end: [usize; LANES] = std::array::from_fn(|i| lanes[i].end);
    if end.iter().any(|&e| e > buf.len()) {
        return Err(CodecError::Stream {
            problem: "decode buffer shorter than its chunks".into(),
        });
    }
    let mut flags = 0u64;
    while (0..LANES).all(|i| k[i] + ROOM <= end[i]) {
        for i in 0..LANES {
            let mut w = load_be_u64(bits, (pos[i] >> 3) as usize) << (pos[i] & 7);
            for _ in 0..4 {
                let e = table[(w >> (64 - MAX_CODE_LEN)) as usize];
                let count = (e >> 52) as usize & 15;
                flags |= e;
                // SAFETY: k[i] + 8 <= k[i] at loop entry + 18 + 8 <= end[i] <= buf.len() (ROOM
                // and the assert above), so the 8 bytes are inside `buf`.
                unsafe {
                    buf.as_mut_ptr()
                        .add(k[i])
                        .cast::<[u8; 8]>()
                        .write_unaligned(e.to_le_bytes())
                };
                let used = (e >> 48) as u32 & 15;
                k[i] += count;
                w <<= used;
                pos[i] += used as u64;
            }
        }
    }
    for (i, l) in lanes.iter_mut().enumerate() {
        (l.pos, l.k) = (pos[i], k[i]);
    }
    if flags >> 63 != 0 {
        return Err(CodecError::Stream {
            problem: format!(
                "chunks {}..={}: no code matches the bits at some position",
                lanes[0].chunk,
                lanes[LANES - 1].chunk
            ),
        });
    }
    Ok(())
}

impl HuffmanStream {
    /// Decode the symbols `c0 * chunk_symbols ..` of up to [`LANES`] consecutive chunks into
    /// `buf[..n]` as mapped bytes (`buf.len() >= n + SLACK`). Requires
    /// [`HuffmanStream::validate`] to have passed and `n` to end at a chunk end.
    pub fn decode_chunks_mapped(
        &self,
        c0: usize,
        t: &MultiLut,
        n: usize,
        buf: &mut [u8],
    ) -> Result<(), CodecError> {
        let cs = self.chunk_symbols as usize;
        let bits = &self.bits[..self.total_bits.div_ceil(8) as usize];
        let table = &t.0[..LUT_SIZE];
        let lanes_used = n.div_ceil(cs).min(LANES);
        let mut lanes = [Lane {
            chunk: 0,
            pos: 0,
            end_bit: 0,
            k: 0,
            end: 0,
        }; LANES];
        for (i, l) in lanes.iter_mut().enumerate().take(lanes_used) {
            let c = c0 + i;
            *l = Lane {
                chunk: c,
                pos: self.chunk_offsets[c] as u64,
                end_bit: self
                    .chunk_offsets
                    .get(c + 1)
                    .map_or(self.total_bits, |&o| o as u64),
                k: i * cs,
                end: ((i + 1) * cs).min(n),
            };
        }
        let lanes = &mut lanes[..lanes_used];
        if let Ok(full) = <&mut [Lane; LANES]>::try_from(&mut *lanes) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("bmi2") {
                // SAFETY: BMI2 was detected at run time.
                unsafe { decode_lanes_bmi2(full, bits, table, buf)? };
            } else {
                decode_lanes(full, bits, table, buf)?;
            }
            #[cfg(not(target_arch = "x86_64"))]
            decode_lanes(full, bits, table, buf)?;
        }
        let bad = |l: &Lane| CodecError::Stream {
            problem: format!("chunk {}: no code matches at bit {}", l.chunk, l.pos),
        };
        for l in lanes.iter_mut() {
            while l.k < l.end {
                let w = load_be_u64(bits, (l.pos >> 3) as usize) << (l.pos & 7);
                let e = table[(w >> (64 - MAX_CODE_LEN)) as usize];
                let count = (e >> 52) as usize & 15;
                if e >> 63 != 0 {
                    return Err(bad(l));
                }
                // Store only inside this lane: the next lane's symbols are already in place.
                let room = (l.end - l.k).min(8);
                buf[l.k..l.k + room].copy_from_slice(&e.to_le_bytes()[..room]);
                if count <= l.end - l.k {
                    l.k += count;
                    l.pos += (e >> 48) & 15;
                } else {
                    // Near the end of the chunk take one code at a time.
                    l.k += 1;
                    l.pos += (e >> 56) & 15;
                }
            }
            if l.pos != l.end_bit {
                return Err(CodecError::Stream {
                    problem: format!(
                        "chunk {}: codes end at bit {}, the chunk ends at bit {}",
                        l.chunk, l.pos, l.end_bit
                    ),
                });
            }
        }
        Ok(())
    }
}
