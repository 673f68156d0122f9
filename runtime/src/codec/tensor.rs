//! Accessors and structural validation of [`CompressedTensor`].

use super::split::{element_count, matrix_dims, padded};
use super::{CodecError, CompressedTensor, Encoding, Escapes, Indices, Orientation, GROUP};

impl CompressedTensor {
    /// `ceil(cols / 64) * 64` (saturating for absurd, unvalidated values).
    pub fn padded_cols(&self) -> usize {
        self.cols.div_ceil(GROUP).saturating_mul(GROUP)
    }

    /// Groups of 64 elements: `rows * padded_cols / 64`.
    pub fn groups(&self) -> usize {
        self.rows.saturating_mul(self.padded_cols() / GROUP)
    }

    pub fn encoding(&self) -> Encoding {
        match self.indices {
            Indices::Huffman(_) => Encoding::Huffman,
            Indices::Palette(_) => Encoding::Palette,
            Indices::Exponent(_) => Encoding::Exponent,
        }
    }

    /// Escaped groups (0 for the exponent encoding, which applies escapes in place).
    pub fn escape_count(&self) -> usize {
        self.escapes.count()
    }

    /// Bytes of every stored component: sm, indices (+ chunk offsets and code lengths), escape bitmap, prefix and
    /// exponents, and the palette.
    pub fn stored_bytes(&self) -> usize {
        let idx = match &self.indices {
            Indices::Huffman(h) => h.bits.len() + 4 * h.chunk_offsets.len() + h.code_lengths.len(),
            Indices::Palette(v) | Indices::Exponent(v) => v.len(),
        };
        self.sm.len()
            + idx
            + 8 * self.escapes.bitmap.len()
            + 4 * self.escapes.prefix.len()
            + self.escapes.exponents.len()
            + self.palette.len()
    }

    /// Elements of the padded encoded matrix, `rows * padded_cols`, after checking that every
    /// field is consistent with the others. Decoders call this before touching any array.
    pub fn validate(&self) -> Result<usize, CodecError> {
        self.validate_with_sm(self.sm.len())
    }

    /// [`validate`](Self::validate) for a tensor whose sign-mantissa plane, `sm_len` bytes, is
    /// held elsewhere (its own `sm` field is then not looked at).
    pub fn validate_with_sm(&self, sm_len: usize) -> Result<usize, CodecError> {
        let n = element_count(&self.shape)?;
        let (r0, c0) = matrix_dims(&self.shape)?;
        let (er, ec) = match self.orientation {
            Orientation::Standard => (r0, c0),
            Orientation::Transposed => (c0, r0),
        };
        if (self.rows, self.cols) != (er, ec) {
            return Err(CodecError::Dims {
                problem: format!(
                    "shape {:?} ({}) gives an encoded matrix of {er}×{ec}, the tensor says {}×{}",
                    self.shape, self.orientation, self.rows, self.cols
                ),
            });
        }
        debug_assert_eq!(n, er * ec);
        let pc = padded(self.cols)?;
        let total = self
            .rows
            .checked_mul(pc)
            .ok_or_else(|| CodecError::Overflow {
                what: format!("{}×{pc} padded matrix", self.rows),
            })?;
        check_len("sm", sm_len, total)?;
        match &self.indices {
            Indices::Exponent(e) => {
                check_len("exponent indices", e.len(), total)?;
                if self.escapes != Escapes::empty() {
                    return Err(CodecError::Escapes {
                        problem: "the exponent encoding must have an empty escape table".into(),
                    });
                }
            }
            Indices::Palette(nib) => {
                check_len("palette indices", nib.len(), total / 2)?;
                self.escapes.validate(total / GROUP)?;
            }
            Indices::Huffman(h) => {
                h.validate(total)?;
                self.escapes.validate(total / GROUP)?;
            }
        }
        Ok(total)
    }
}

fn check_len(what: &'static str, actual: usize, expected: usize) -> Result<(), CodecError> {
    if actual != expected {
        return Err(CodecError::Length {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}
