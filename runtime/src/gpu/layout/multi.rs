//! The Huffman kernels' decode tables, built on the host once per weight at upload: the
//! multi-symbol table (per `MAX_CODE_LEN`-bit peek, the whole codes that fit, at most the refill's
//! `multi_syms`) and each symbol's code length (the chunk-end check). Each block of a decode used to
//! build them from the one-symbol table in shared memory: 4096 entries of up to four dependent
//! lookups, ~19% of a decode's instructions (Nsight, H200, `huff_palette_sub256m4`); now it copies
//! 16 KB.
//!
//! Entry formats (templates/huff.cu.tera reads them): word / vec4 / sub256 hold up to 3 symbols in
//! bits 0-11 (first in the low nibble), the total length in bits 12-15 and the count in bits 16-17;
//! sub256m4 holds up to 4 symbols in bits 0-15, the total length in byte 2 and 4 × count in byte 3,
//! so each field is one byte extract. A peek whose first code is invalid (only in corrupt streams or
//! past a stream's end) counts one symbol of length 0, so decoding advances and terminates; sub256m4
//! then also sets [`NO_CODE_FLAG`], which no valid entry has.

use unweight_codegen::abi::MAX_CODE_LEN;
use unweight_codegen::variant::HuffRefill;

/// Entries of the multi-symbol table (one per peek).
pub const ENTRIES: usize = 1 << MAX_CODE_LEN;
/// Symbols (code lengths) the table ends with.
pub const SYMBOLS: usize = 16;
/// u32 words of one [`tables`] result: what one decode reads.
pub const TABLE_WORDS: usize = ENTRIES + SYMBOLS;
/// sub256m4: bit 0 of byte 3, never set by 4 × count of a valid entry.
pub const NO_CODE_FLAG: u32 = 1 << 24;

/// Whether `refill`'s kernels read the byte-field entry format (sub256m4, sub256win) rather than the packed
/// one: the one rule both [`tables`] and the upload's choice of buffer follow.
pub fn byte_fields(refill: HuffRefill) -> bool {
    matches!(refill, HuffRefill::Sub256M4 | HuffRefill::Sub256Win)
}

/// Length of a one-symbol table entry; anything over `MAX_CODE_LEN` counts as no code.
fn lut_len(e: u16) -> u32 {
    let len = (e >> 8) as u32;
    if len <= MAX_CODE_LEN {
        len
    } else {
        0
    }
}

/// The `tables` argument of a `refill` kernel for a weight with decode table `lut`
/// (`HuffmanStream::decode_lut`, `ENTRIES` entries of symbol | length << 8): [`ENTRIES`]
/// multi-symbol entries, then [`SYMBOLS`] code lengths (0: no code).
pub fn tables(lut: &[u16], refill: HuffRefill) -> Vec<u32> {
    assert_eq!(lut.len(), ENTRIES, "a decode table peeks MAX_CODE_LEN bits");
    let max_syms = refill.multi_syms();
    let m4 = byte_fields(refill);
    let mut out = Vec::with_capacity(TABLE_WORDS);
    for p in 0..ENTRIES {
        let e = lut[p];
        let (mut syms, mut total, mut count) = ((e & 15) as u32, lut_len(e), 1u32);
        while count < max_syms && total != 0 {
            let e2 = lut[(p << total) & (ENTRIES - 1)];
            let len2 = lut_len(e2);
            if len2 == 0 || total + len2 > MAX_CODE_LEN {
                break;
            }
            syms |= ((e2 & 15) as u32) << (4 * count);
            total += len2;
            count += 1;
        }
        out.push(if m4 {
            syms | total << 16 | (4 * count) << 24 | if total == 0 { NO_CODE_FLAG } else { 0 }
        } else {
            syms | total << 12 | count << 16
        });
    }
    let mut lengths = [0u32; SYMBOLS];
    for (p, &e) in lut.iter().enumerate() {
        let len = lut_len(e);
        // A code's first entry (its peek with all bits after the code zero) names its length.
        if len != 0 && p & ((ENTRIES >> len) - 1) == 0 {
            lengths[(e & 15) as usize] = len;
        }
    }
    out.extend(lengths);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::build_lut;

    /// Greedy decode of the peek `p`: the codes of `lengths` (canonical) lying wholly inside it.
    fn codes_in(p: usize, lut: &[u16], max_syms: u32) -> Vec<(u32, u32)> {
        let mut at = 0u32;
        let mut out = Vec::new();
        while (out.len() as u32) < max_syms {
            let e = lut[(p << at) & (ENTRIES - 1)];
            let len = lut_len(e);
            if len == 0 || at + len > MAX_CODE_LEN {
                break;
            }
            out.push(((e & 15) as u32, len));
            at += len;
        }
        out
    }

    #[test]
    fn entries_hold_the_whole_codes_of_each_peek_in_both_formats() {
        // A skewed code as trained weights give (lengths 1..=12), and a flat one.
        let skewed: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 12, 0, 0, 0];
        let flat = [4u8; 16];
        for lengths in [skewed, flat] {
            let lut = build_lut(&lengths).unwrap();
            for refill in HuffRefill::ALL {
                let t = tables(&lut, refill);
                assert_eq!(t.len(), ENTRIES + SYMBOLS);
                let n = refill.multi_syms();
                for (p, &entry) in t[..ENTRIES].iter().enumerate() {
                    let codes = codes_in(p, &lut, n);
                    let total: u32 = codes.iter().map(|c| c.1).sum();
                    let syms = codes
                        .iter()
                        .enumerate()
                        .fold(0u32, |a, (i, c)| a | c.0 << (4 * i));
                    let count = codes.len().max(1) as u32;
                    let want = if matches!(refill, HuffRefill::Sub256M4 | HuffRefill::Sub256Win) {
                        syms | total << 16
                            | (4 * count) << 24
                            | if codes.is_empty() { NO_CODE_FLAG } else { 0 }
                    } else {
                        syms | total << 12 | count << 16
                    };
                    assert_eq!(entry, want, "{refill:?} peek {p:#x}");
                }
                for (s, &len) in t[ENTRIES..].iter().enumerate() {
                    assert_eq!(len, lengths[s] as u32, "{refill:?} symbol {s}");
                }
            }
        }
    }

    #[test]
    fn a_table_without_codes_gives_no_code_entries() {
        let t = tables(&vec![0u16; ENTRIES], HuffRefill::Sub256M4);
        assert!(t[..ENTRIES].iter().all(|&e| e == 4 << 24 | NO_CODE_FLAG));
        assert!(t[ENTRIES..].iter().all(|&l| l == 0));
        let t = tables(&vec![0u16; ENTRIES], HuffRefill::Word);
        assert!(t[..ENTRIES].iter().all(|&e| e == 1 << 16));
    }
}
