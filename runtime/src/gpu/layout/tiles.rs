//! The rmm's tiled weight layout (docs/CONTRACT.md, "Tiled layout"): one contiguous block per
//! CTA row tile `i` (128 weight rows) and k block `b` (64 columns of k), so a stage is one bulk
//! copy. Block `t = i * (k/64) + b`; inside it the ENCODED matrix's elements in row-major order:
//! standard (encoded `W [n_out][k]`): 128 rows × 64 columns; transposed (encoded `Wᵀ [k][n_out]`):
//! 64 rows × 128 columns. Bytes (sm, exponents) take one byte per element, nibbles half.

use unweight_codegen::abi::{self, BK, BM};

use crate::codec::Orientation;

use super::LayoutError;

const ROWS: usize = BM as usize;
const KB: usize = BK as usize;

/// How a component packs its elements: one byte each (sm, exponents) or two per byte (palette
/// indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Byte,
    Nibble,
}

/// Rows and row bytes of one block.
fn block_shape(orientation: Orientation, elem: Packing) -> (usize, usize) {
    let (rows, cols) = match orientation {
        Orientation::Standard => (ROWS, KB),
        Orientation::Transposed => (KB, ROWS),
    };
    (
        rows,
        if elem == Packing::Nibble {
            cols / 2
        } else {
            cols
        },
    )
}

/// Bytes of one block ([`abi::SM_TILE_BYTES`] for bytes, [`abi::NIBBLE_TILE_BYTES`] for nibbles).
pub fn block_bytes(elem: Packing) -> usize {
    match elem {
        Packing::Nibble => abi::NIBBLE_TILE_BYTES as usize,
        Packing::Byte => abi::SM_TILE_BYTES as usize,
    }
}

/// Re-lays a row-major array of the encoded matrix (`row_bytes` per row: `padded_cols` for
/// bytes, `padded_cols / 2` for nibbles) into tiled blocks. Needs `n_out % 128 == 0`,
/// `k % 64 == 0` (so the encoded matrix has no padding).
pub fn tile(
    src: &[u8],
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: Packing,
) -> Result<Vec<u8>, LayoutError> {
    let (rows, row_bytes) = layout(src.len(), orientation, n_out, k, elem)?;
    let (br, bc) = block_shape(orientation, elem);
    let mut out = Vec::with_capacity(src.len());
    for i in 0..n_out / ROWS {
        for b in 0..k / KB {
            let (r0, c0) = origin(orientation, i, b, br, bc);
            for r in r0..r0 + br {
                out.extend_from_slice(&src[r * row_bytes + c0..][..bc]);
            }
        }
    }
    debug_assert_eq!(out.len(), rows * row_bytes);
    Ok(out)
}

/// The inverse of [`tile`] (tests compare GPU tiled output with the CPU decoders through it).
pub fn untile(
    src: &[u8],
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: Packing,
) -> Result<Vec<u8>, LayoutError> {
    let (_, row_bytes) = layout(src.len(), orientation, n_out, k, elem)?;
    let (br, bc) = block_shape(orientation, elem);
    let mut out = vec![0u8; src.len()];
    let mut blocks = src.chunks_exact(br * bc);
    for i in 0..n_out / ROWS {
        for b in 0..k / KB {
            let (r0, c0) = origin(orientation, i, b, br, bc);
            let block = blocks.next().ok_or(LayoutError::Length {
                what: "tiled blocks",
                unit: "bytes",
                have: src.len(),
                need: src.len() + br * bc,
            })?;
            for (r, line) in block.chunks_exact(bc).enumerate() {
                out[(r0 + r) * row_bytes + c0..][..bc].copy_from_slice(line);
            }
        }
    }
    Ok(out)
}

/// (first encoded row, first byte column) of block (i, b).
fn origin(orientation: Orientation, i: usize, b: usize, br: usize, bc: usize) -> (usize, usize) {
    match orientation {
        Orientation::Standard => (i * br, b * bc),
        Orientation::Transposed => (b * br, i * bc),
    }
}

fn layout(
    len: usize,
    orientation: Orientation,
    n_out: usize,
    k: usize,
    elem: Packing,
) -> Result<(usize, usize), LayoutError> {
    if n_out == 0 || k == 0 || n_out % ROWS != 0 || k % KB != 0 {
        return Err(LayoutError::Untileable { n_out, k });
    }
    let (rows, cols) = match orientation {
        Orientation::Standard => (n_out, k),
        Orientation::Transposed => (k, n_out),
    };
    let row_bytes = if elem == Packing::Nibble {
        cols / 2
    } else {
        cols
    };
    if len != rows * row_bytes {
        return Err(LayoutError::Length {
            what: "encoded matrix",
            unit: "bytes",
            have: len,
            need: rows * row_bytes,
        });
    }
    Ok((rows, row_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_blocks_follow_the_contract() {
        // Encoded W [256][128]: value = row * 1000 + col (mod 256 is fine for position checks).
        let (n, k) = (256, 128);
        let src: Vec<u8> = (0..n * k)
            .map(|e| ((e / k) * 7 + (e % k) * 3) as u8)
            .collect();
        let t = tile(&src, Orientation::Standard, n, k, Packing::Byte).unwrap();
        // Block t = i * 2 + b; element (r, c) of block = encoded (128 i + r, 64 b + c).
        for (i, b, r, c) in [(0, 0, 0, 0), (0, 1, 5, 63), (1, 0, 127, 1), (1, 1, 64, 32)] {
            let at = (i * 2 + b) * 8192 + r * 64 + c;
            assert_eq!(
                t[at],
                src[(128 * i + r) * k + 64 * b + c],
                "({i},{b}) r{r} c{c}"
            );
        }
        assert_eq!(
            untile(&t, Orientation::Standard, n, k, Packing::Byte).unwrap(),
            src
        );
    }

    #[test]
    fn transposed_blocks_follow_the_contract() {
        // Weight 256 x 128 encoded as Wᵀ [128][256]; block (i, b) = rows 64 b.., cols 128 i...
        let (n, k) = (256, 128);
        let src: Vec<u8> = (0..n * k)
            .map(|e| ((e / n) * 5 + (e % n) * 11) as u8)
            .collect();
        let t = tile(&src, Orientation::Transposed, n, k, Packing::Byte).unwrap();
        for (i, b, r, c) in [(0, 0, 0, 0), (1, 0, 3, 127), (0, 1, 63, 9), (1, 1, 10, 100)] {
            let at = (i * 2 + b) * 8192 + r * 128 + c;
            assert_eq!(
                t[at],
                src[(64 * b + r) * n + 128 * i + c],
                "({i},{b}) r{r} c{c}"
            );
        }
        assert_eq!(
            untile(&t, Orientation::Transposed, n, k, Packing::Byte).unwrap(),
            src
        );
    }

    #[test]
    fn nibble_blocks_are_half_size() {
        for o in [Orientation::Standard, Orientation::Transposed] {
            let (n, k) = (384, 192);
            let src: Vec<u8> = (0..n * k / 2).map(|e| (e * 31 % 251) as u8).collect();
            let t = tile(&src, o, n, k, Packing::Nibble).unwrap();
            assert_eq!(t.len(), (n / 128) * (k / 64) * block_bytes(Packing::Nibble));
            assert_eq!(untile(&t, o, n, k, Packing::Nibble).unwrap(), src);
            // First line of block (0, 1): standard = row 0, nibble bytes 32..64; transposed = row 64.
            let line = match o {
                Orientation::Standard => &src[32..64],
                Orientation::Transposed => &src[64 * (n / 2)..][..64],
            };
            assert_eq!(&t[4096..][..line.len()], line);
        }
    }

    #[test]
    fn rejects_untileable_shapes() {
        let msg = |e: LayoutError| e.to_string();
        assert!(msg(tile(
            &[0; 100 * 64],
            Orientation::Standard,
            100,
            64,
            Packing::Byte
        )
        .unwrap_err())
        .contains("n_out % 128"));
        assert!(
            msg(tile(&[0; 10], Orientation::Standard, 128, 64, Packing::Byte).unwrap_err())
                .contains("expected 8192")
        );
    }
}
