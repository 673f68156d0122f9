//! Escape groups: a bitmap over groups with prefix counts per 64-bit word, so a group's slot in the
//! side table of exponents is found in O(1).

use super::{CodecError, Escapes, GROUP};

impl Escapes {
    /// No escape table (the exponent encoding).
    pub fn empty() -> Self {
        Escapes {
            bitmap: Vec::new(),
            prefix: Vec::new(),
            exponents: Vec::new(),
        }
    }

    /// Build from one flag per group and the escaped groups' exponents (64 per escaped group,
    /// in increasing group order).
    pub fn from_flags(flags: &[bool], exponents: Vec<u8>) -> Self {
        let words = flags.len().div_ceil(64);
        let mut bitmap = vec![0u64; words];
        for (g, _) in flags.iter().enumerate().filter(|(_, &f)| f) {
            bitmap[g / 64] |= 1 << (g % 64);
        }
        let prefix = prefix_counts(&bitmap);
        Escapes {
            bitmap,
            prefix,
            exponents,
        }
    }

    /// Number of escaped groups.
    pub fn count(&self) -> usize {
        self.exponents.len() / GROUP
    }

    /// Slot of group `g` in `exponents` (in units of 64 bytes), or `None` if `g` is not escaped
    /// (or lies beyond the bitmap).
    #[inline(always)]
    pub fn slot(&self, g: usize) -> Option<usize> {
        let word = *self.bitmap.get(g / 64)?;
        let bit = 1u64 << (g % 64);
        if word & bit == 0 {
            return None;
        }
        Some(self.prefix[g / 64] as usize + (word & (bit - 1)).count_ones() as usize)
    }

    /// The 64 exponent bytes of group `g` if it is escaped.
    #[inline(always)]
    pub fn group_exponents(&self, g: usize) -> Option<&[u8]> {
        self.slot(g)
            .map(|s| &self.exponents[s * GROUP..(s + 1) * GROUP])
    }

    /// Check that the table is consistent for `groups` groups: lengths, prefix counts, no bits past
    /// the last group, and 64 exponent bytes per escaped group.
    pub fn validate(&self, groups: usize) -> Result<(), CodecError> {
        let words = groups.div_ceil(64);
        let bad = |problem: String| Err(CodecError::Escapes { problem });
        if self.bitmap.len() != words {
            return bad(format!(
                "bitmap has {} words, {groups} groups need {words}",
                self.bitmap.len()
            ));
        }
        if self.prefix.len() != words {
            return bad(format!(
                "prefix has {} entries, expected {words}",
                self.prefix.len()
            ));
        }
        if groups & 63 != 0 {
            if let Some(&last) = self.bitmap.last() {
                if last >> (groups % 64) != 0 {
                    return bad(format!(
                        "bitmap marks groups past the last group {}",
                        groups - 1
                    ));
                }
            }
        }
        let mut total = 0u64;
        for (w, (&word, &p)) in self.bitmap.iter().zip(&self.prefix).enumerate() {
            if p as u64 != total {
                return bad(format!("prefix[{w}] is {p}, the bitmap gives {total}"));
            }
            total += word.count_ones() as u64;
        }
        let need = (total as usize).checked_mul(GROUP);
        if need != Some(self.exponents.len()) {
            return bad(format!(
                "{} exponent bytes for {total} escaped groups (need {})",
                self.exponents.len(),
                total.saturating_mul(GROUP as u64)
            ));
        }
        Ok(())
    }
}

/// `prefix[w]` = number of set bits in words `0..w`.
pub fn prefix_counts(bitmap: &[u64]) -> Vec<u32> {
    let mut acc = 0u32;
    bitmap
        .iter()
        .map(|w| {
            let p = acc;
            acc += w.count_ones();
            p
        })
        .collect()
}
