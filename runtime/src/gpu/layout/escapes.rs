//! The palette rmm's escape tables, rebuilt per CTA tile on the CPU at upload
//! (docs/CONTRACT.md, "tile_esc record"; bytes 20..24 also hold the tile's escape count, which
//! the rmm template reads as `rec[5]` to size the stage's escape copy).
//!
//! The codec keeps escaped groups in group order over the encoded matrix; a CTA of the rmm
//! covers 128 weight rows × one 64-wide k block, so it wants its escape mask and its escape
//! exponents together. Record `(i, b)` at `(i * (k/64) + b) * 32`: 128-bit mask of local groups
//! (u32 words little-endian), the u32 slot of the tile's first escaped group in `esc_exp`, the
//! u32 count of its escaped groups, zeros.
//! `esc_exp` lists escaped groups tile by tile in `(i, b)` order and by `j` within a tile.

use unweight_codegen::abi;

use crate::codec::{Escapes, Orientation, GROUP};

use super::LayoutError;

/// Bytes per tile record ([`abi::ESC_RECORD_BYTES`]).
pub const RECORD_BYTES: usize = abi::ESC_RECORD_BYTES as usize;
/// Weight rows per CTA tile ([`abi::BM`]).
pub const TILE_ROWS: usize = abi::BM as usize;
/// Byte ranges of a record's fields (u32 words little-endian, [`abi`]).
const MASK: std::ops::Range<usize> = 0..4 * abi::ESC_MASK_WORDS as usize;
const FIRST: std::ops::Range<usize> = word(abi::ESC_FIRST_WORD);
const COUNT: std::ops::Range<usize> = word(abi::ESC_COUNT_WORD);

const fn word(w: u32) -> std::ops::Range<usize> {
    4 * w as usize..4 * w as usize + 4
}

/// `tile_esc` records and the re-ordered escape exponents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileEscapes {
    pub records: Vec<u8>,
    pub exponents: Vec<u8>,
}

fn is_escaped(esc: &Escapes, g: usize) -> bool {
    esc.bitmap
        .get(g / 64)
        .is_some_and(|w| (w >> (g % 64)) & 1 == 1)
}

fn slot(esc: &Escapes, g: usize) -> usize {
    let below = esc.bitmap[g / 64] & ((1u64 << (g % 64)) - 1);
    esc.prefix[g / 64] as usize + below.count_ones() as usize
}

/// The encoded-matrix group of local group `j` in tile `(i, b)`.
fn group_of(
    orientation: Orientation,
    n_out: usize,
    k: usize,
    i: usize,
    b: usize,
    j: usize,
) -> usize {
    match orientation {
        // Encoded W [n_out][k]: local group j = weight row i*128 + j, k block b.
        Orientation::Standard => (i * TILE_ROWS + j) * (k / GROUP) + b,
        // Encoded Wᵀ [k][n_out]: j = 2*lk + h; encoded row b*64 + lk, column group 2i + h.
        Orientation::Transposed => {
            let (lk, h) = (j / 2, j % 2);
            (b * GROUP + lk) * (n_out / GROUP) + 2 * i + h
        }
    }
}

/// Builds the per-tile tables for a weight of `n_out × k` whose escapes are `esc`
/// (group numbering over the encoded matrix, as the codec writes it).
pub fn build(
    esc: &Escapes,
    orientation: Orientation,
    n_out: usize,
    k: usize,
) -> Result<TileEscapes, LayoutError> {
    if n_out == 0 || k == 0 || n_out % TILE_ROWS != 0 || k % GROUP != 0 {
        return Err(LayoutError::Untileable { n_out, k });
    }
    let groups = n_out * k / GROUP;
    if esc.bitmap.len() != groups.div_ceil(64) || esc.prefix.len() != esc.bitmap.len() {
        let (words, prefix, need) = (esc.bitmap.len(), esc.prefix.len(), groups.div_ceil(64));
        return Err(LayoutError::EscapeBitmap {
            words,
            prefix,
            groups,
            need,
        });
    }
    let total: usize = esc.bitmap.iter().map(|w| w.count_ones() as usize).sum();
    if esc.exponents.len() != total * GROUP {
        let (need, have) = (total * GROUP, esc.exponents.len());
        return Err(LayoutError::EscapeExponents {
            escaped: total,
            need,
            have,
        });
    }
    let (tiles_i, tiles_b) = (n_out / TILE_ROWS, k / GROUP);
    let mut records = vec![0u8; tiles_i * tiles_b * RECORD_BYTES];
    let mut exponents = Vec::with_capacity(esc.exponents.len());
    for i in 0..tiles_i {
        for b in 0..tiles_b {
            let rec = &mut records[(i * tiles_b + b) * RECORD_BYTES..][..RECORD_BYTES];
            let first = (exponents.len() / GROUP) as u32;
            let mut mask = 0u128;
            for j in 0..TILE_ROWS {
                let g = group_of(orientation, n_out, k, i, b, j);
                if is_escaped(esc, g) {
                    mask |= 1u128 << j;
                    let s = slot(esc, g);
                    exponents.extend_from_slice(&esc.exponents[s * GROUP..][..GROUP]);
                }
            }
            rec[MASK].copy_from_slice(&mask.to_le_bytes());
            rec[FIRST].copy_from_slice(&first.to_le_bytes());
            rec[COUNT].copy_from_slice(&mask.count_ones().to_le_bytes());
        }
    }
    Ok(TileEscapes { records, exponents })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escapes over `groups` groups with the given escaped groups; group g's exponents are all `g as u8`.
    fn escapes(groups: usize, escaped: &[usize]) -> Escapes {
        let mut bitmap = vec![0u64; groups.div_ceil(64)];
        let mut sorted = escaped.to_vec();
        sorted.sort();
        for &g in &sorted {
            bitmap[g / 64] |= 1 << (g % 64);
        }
        let mut prefix = Vec::with_capacity(bitmap.len());
        let mut acc = 0u32;
        for w in &bitmap {
            prefix.push(acc);
            acc += w.count_ones();
        }
        let exponents = sorted
            .iter()
            .flat_map(|&g| std::iter::repeat_n(g as u8, GROUP))
            .collect();
        Escapes {
            bitmap,
            prefix,
            exponents,
        }
    }

    fn mask(rec: &[u8]) -> u128 {
        u128::from_le_bytes(rec[..16].try_into().unwrap())
    }
    fn first(rec: &[u8]) -> u32 {
        u32::from_le_bytes(rec[16..20].try_into().unwrap())
    }
    fn count(rec: &[u8]) -> u32 {
        u32::from_le_bytes(rec[20..24].try_into().unwrap())
    }

    #[test]
    fn standard_layout() {
        // n_out 256 (2 row tiles), k 128 (2 k blocks): encoded [256][128], 2 groups per row.
        // Group of (row r, block b) = r*2 + b.
        let esc = escapes(512, &[1, 2, 2 * 130, 2 * 255 + 1]);
        let t = build(&esc, Orientation::Standard, 256, 128).unwrap();
        assert_eq!(t.records.len(), 4 * 32);
        let r = |i: usize, b: usize| &t.records[(i * 2 + b) * 32..][..32];
        assert_eq!(mask(r(0, 0)), 1 << 1); // row 1, block 0 = group 2
        assert_eq!(mask(r(0, 1)), 1 << 0); // row 0, block 1 = group 1
        assert_eq!(mask(r(1, 0)), 1 << 2); // row 130 = local 2, block 0
        assert_eq!(mask(r(1, 1)), 1 << 127); // row 255 = local 127, block 1
        assert_eq!(
            [
                first(r(0, 0)),
                first(r(0, 1)),
                first(r(1, 0)),
                first(r(1, 1))
            ],
            [0, 1, 2, 3]
        );
        assert_eq!(count(r(1, 1)), 1);
        assert!(r(0, 0)[24..].iter().all(|&x| x == 0));
        // Tile order (i, b) differs from group order: group 2 comes before group 1.
        let order: Vec<u8> = t.exponents.chunks(64).map(|c| c[0]).collect();
        assert_eq!(order, vec![2, 1, (260 % 256) as u8, (511 % 256) as u8]);
        assert!(t.exponents.chunks(64).all(|c| c.iter().all(|&x| x == c[0])));
    }

    #[test]
    fn transposed_layout() {
        // Weight 256 x 128 encoded as Wᵀ [128][256]: 4 column groups per encoded row.
        // Tile i=1 covers column groups 2, 3; k block b=1 covers encoded rows 64..127.
        // Encoded row 70 (lk = 6), column group 3 (h = 1): g = 70*4 + 3, local j = 13.
        let g = 70 * 4 + 3;
        let g2 = 5 * 4; // row 5, column group 0: tile i=0, b=0, lk=5, h=0, j=10.
        let esc = escapes(128 * 4, &[g, g2]);
        let t = build(&esc, Orientation::Transposed, 256, 128).unwrap();
        let r = |i: usize, b: usize| &t.records[(i * 2 + b) * 32..][..32];
        assert_eq!(mask(r(1, 1)), 1 << 13);
        assert_eq!(mask(r(0, 0)), 1 << 10);
        assert_eq!(mask(r(0, 1)) | mask(r(1, 0)), 0);
        assert_eq!(
            [
                first(r(0, 0)),
                first(r(0, 1)),
                first(r(1, 0)),
                first(r(1, 1))
            ],
            [0, 1, 1, 1]
        );
        assert_eq!(t.exponents.len(), 128);
        assert_eq!((t.exponents[0], t.exponents[64]), (g2 as u8, g as u8));
    }

    #[test]
    fn every_escaped_group_lands_once() {
        // Pseudo-random escapes on a 384 x 192 weight, both orientations: the records' masks
        // name exactly the escaped groups, and esc_exp is a permutation of the codec's table.
        for orientation in [Orientation::Standard, Orientation::Transposed] {
            let (n, k) = (384, 192);
            let groups = n * k / 64;
            let escaped: Vec<usize> = (0..groups)
                .filter(|g| (g * 2654435761usize) % 7 == 0)
                .collect();
            let esc = escapes(groups, &escaped);
            let t = build(&esc, orientation, n, k).unwrap();
            let ones: u32 = t.records.chunks(32).map(|r| mask(r).count_ones()).sum();
            assert_eq!(ones as usize, escaped.len());
            let mut a: Vec<&[u8]> = t.exponents.chunks(64).collect();
            let mut b: Vec<&[u8]> = esc.exponents.chunks(64).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            // Slots are running counts.
            let mut running = 0u32;
            for r in t.records.chunks(32) {
                assert_eq!(first(r), running);
                assert_eq!(count(r), mask(r).count_ones());
                running += mask(r).count_ones();
            }
        }
    }

    #[test]
    fn rejects_unsupported_shapes_and_bad_tables() {
        let msg = |e: LayoutError| e.to_string();
        assert!(
            msg(build(&escapes(2, &[]), Orientation::Standard, 64, 128).unwrap_err())
                .contains("n_out % 128")
        );
        assert!(build(&escapes(2, &[]), Orientation::Standard, 128, 96).is_err());
        let mut e = escapes(256, &[3]);
        e.exponents.pop();
        assert!(
            msg(build(&e, Orientation::Standard, 128, 128).unwrap_err()).contains("exponent bytes")
        );
        assert!(
            msg(build(&escapes(64, &[]), Orientation::Standard, 128, 128).unwrap_err())
                .contains("bitmap")
        );
    }

    #[test]
    fn matches_the_codec_escape_tables() {
        // A weight with a few out-of-palette exponents, compressed by the codec (palette
        // encoding): each escaped local group's bytes in esc_exp equal the codec's exponents of
        // that group, read back through decode_exponents.
        use crate::codec::{compress, decode_exponents, Encoding};
        let (n, k) = (256usize, 192usize);
        let mut bits: Vec<u16> = (0..n * k)
            .map(|i| (((i * 7919) % 16 + 112) as u16) << 7 | (i % 128) as u16)
            .collect();
        for &(r, c, e) in &[
            (3usize, 10usize, 200u16),
            (130, 70, 1),
            (255, 191, 255),
            (0, 64, 0),
        ] {
            bits[r * k + c] = (e << 7) | 5;
        }
        for orientation in [Orientation::Standard, Orientation::Transposed] {
            let t = compress(&bits, &[n, k], orientation, Encoding::Palette).unwrap();
            let exps = decode_exponents(&t).unwrap();
            let tab = build(&t.escapes, orientation, n, k).unwrap();
            let pc = t.padded_cols();
            let mut seen = 0;
            for i in 0..n / TILE_ROWS {
                for b in 0..k / GROUP {
                    let rec = &tab.records[(i * (k / GROUP) + b) * RECORD_BYTES..][..RECORD_BYTES];
                    let (m, mut s) = (mask(rec), first(rec) as usize);
                    for j in 0..TILE_ROWS {
                        let g = group_of(orientation, n, k, i, b, j);
                        assert_eq!(
                            m >> j & 1 == 1,
                            is_escaped(&t.escapes, g),
                            "{orientation:?} tile ({i},{b}) j {j}"
                        );
                        if m >> j & 1 == 1 {
                            let (row, cg) = (g / (pc / GROUP), g % (pc / GROUP));
                            assert_eq!(
                                &tab.exponents[s * GROUP..][..GROUP],
                                &exps[row * pc + cg * GROUP..][..GROUP]
                            );
                            s += 1;
                            seen += 1;
                        }
                    }
                }
            }
            assert_eq!(seen, t.escape_count());
            assert!(
                seen >= 4,
                "{orientation:?}: expected the planted escapes, found {seen}"
            );
        }
    }
}
