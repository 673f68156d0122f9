//! The shape facts every residency shares: the weight `n_out × k`, its orientation and the
//! encoded matrix, and whether the rmm's tiles cover it.

use unweight_codegen::abi::{BK, BM};

use crate::codec::{CompressedTensor, Orientation, GROUP};

/// Geometry shared by every residency: the weight `n_out × k` and its encoded matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n_out: usize,
    pub k: usize,
    pub orientation: Orientation,
    /// Encoded matrix (`Wᵀ` when transposed).
    pub rows: usize,
    pub cols: usize,
    pub padded_cols: usize,
}

impl Geometry {
    /// The geometry of a compressed tensor.
    pub fn of(t: &CompressedTensor) -> Self {
        let (n_out, k) = match t.orientation {
            Orientation::Standard => (t.rows, t.cols),
            Orientation::Transposed => (t.cols, t.rows),
        };
        Geometry {
            n_out,
            k,
            orientation: t.orientation,
            rows: t.rows,
            cols: t.cols,
            padded_cols: t.padded_cols(),
        }
    }

    /// Geometry of an uncompressed bf16 weight `n_out × k`, stored in `orientation`.
    pub fn raw(n_out: usize, k: usize, orientation: Orientation) -> Self {
        let (rows, cols) = match orientation {
            Orientation::Standard => (n_out, k),
            Orientation::Transposed => (k, n_out),
        };
        Geometry {
            n_out,
            k,
            orientation,
            rows,
            cols,
            padded_cols: cols.div_ceil(GROUP) * GROUP,
        }
    }

    /// Whether the rmm kernels take this shape (else the runtime falls back to full decode).
    pub fn rmm_ok(&self) -> bool {
        self.n_out % BM as usize == 0 && self.k % BK as usize == 0 && self.n_out > 0 && self.k > 0
    }

    /// Whether the encoded matrix is `Wᵀ`.
    pub fn transposed(&self) -> bool {
        self.orientation == Orientation::Transposed
    }

    /// `n_out×k (orientation)`, for errors and logs.
    pub fn shape_text(&self) -> String {
        format!("{}x{} ({})", self.n_out, self.k, self.orientation)
    }

    /// Scratch bytes each preprocess output needs: (bf16, exponent, palette nibbles).
    pub fn scratch_bytes(&self) -> (usize, usize, usize) {
        (
            self.rows * self.cols * 2,
            self.rows * self.padded_cols,
            self.rows * self.padded_cols / 2,
        )
    }
}
