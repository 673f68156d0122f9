//! Canonical, length-limited Huffman code primitives over the 16 palette indices: code lengths
//! (package-merge), canonical codes, the 12-bit decode table and the big-endian bit loads the
//! encoder (huffman.rs) and the decoders (multilut.rs) share.

use super::{CodecError, MAX_CODE_LEN};

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
    let kraft: u32 = lengths
        .iter()
        .filter(|&&l| l > 0)
        .map(|&l| 1u32 << (MAX_CODE_LEN - l as u32))
        .sum();
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

/// 8 bytes big-endian from `bytes[at..]`, zero past the end.
#[inline(always)]
pub(super) fn load_be_u64(bytes: &[u8], at: usize) -> u64 {
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
