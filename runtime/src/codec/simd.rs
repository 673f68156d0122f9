//! SSSE3 version of the hot split step (x86-64 only; chosen at run time, scalar otherwise):
//! for a full group of 64 BF16 values, write the sign-mantissa bytes and the palette-index
//! nibbles and report whether any exponent is outside the palette.
//!
//! It needs the palette to lie in a window of 32 consecutive exponent values (true for real
//! weights, whose 16 most frequent exponents are adjacent binades); [`GroupMapper::new`]
//! returns `None` otherwise and the caller keeps the scalar path.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Tables for one palette: `lo[d]` / `hi[d]` = 1 + palette index of exponent `base + d` /
/// `base + 16 + d`, or 0 when that exponent is not in the palette.
#[derive(Clone, Copy)]
pub struct GroupMapper {
    base: u8,
    lo: [u8; 16],
    hi: [u8; 16],
}

impl GroupMapper {
    pub fn new(palette: &[u8; 16]) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if !is_x86_feature_detected!("ssse3") {
                return None;
            }
            let base = *palette.iter().min()?;
            if palette.iter().any(|&e| e - base >= 32) {
                return None;
            }
            let (mut lo, mut hi) = ([0u8; 16], [0u8; 16]);
            // Reverse order so a duplicated entry maps to its first index, like `index_map`.
            for (i, &e) in palette.iter().enumerate().rev() {
                let d = (e - base) as usize;
                if d < 16 {
                    lo[d] = i as u8 + 1;
                } else {
                    hi[d - 16] = i as u8 + 1;
                }
            }
            Some(GroupMapper { base, lo, hi })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = palette;
            None
        }
    }

    /// Split one full group: `sm[j]` and nibbles `nib[j / 2]` for `src[j]`; returns true if
    /// some exponent is outside the palette (the nibbles are then garbage; the caller zeroes them).
    #[inline]
    pub fn group(&self, src: &[u16], sm: &mut [u8], nib: &mut [u8]) -> bool {
        let (src, sm, nib) = (&src[..64], &mut sm[..64], &mut nib[..32]);
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a mapper exists only when SSSE3 was detected at run time (`new`), and the
            // slices above have exactly the lengths the loads and stores below touch.
            unsafe { self.group_ssse3(src, sm, nib) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (src, sm, nib);
            unreachable!("GroupMapper::new returns None off x86-64")
        }
    }

    /// # Safety
    /// The CPU must support SSSE3 (`GroupMapper::new` checks it before building a mapper).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "ssse3")]
    unsafe fn group_ssse3(&self, src: &[u16], sm: &mut [u8], nib: &mut [u8]) -> bool {
        let lo_t = _mm_loadu_si128(self.lo.as_ptr().cast());
        let hi_t = _mm_loadu_si128(self.hi.as_ptr().cast());
        let base = _mm_set1_epi8(self.base as i8);
        let (m7f, m80, mff) = (
            _mm_set1_epi16(0x7F),
            _mm_set1_epi16(0x80),
            _mm_set1_epi16(0xFF),
        );
        let (c15, c16, c80, one) = (
            _mm_set1_epi8(15),
            _mm_set1_epi8(16),
            _mm_set1_epi8(-128),
            _mm_set1_epi8(1),
        );
        let mut miss = _mm_setzero_si128();
        // 16 values → 16 exponent bytes, 16 sm bytes stored, 16 (index + 1) bytes returned.
        // A macro, not a closure, so the code is compiled with this function's SSSE3 feature.
        macro_rules! step {
            ($at:expr) => {{
                let at: usize = $at;
                let a = _mm_loadu_si128(src.as_ptr().add(at).cast());
                let b = _mm_loadu_si128(src.as_ptr().add(at + 8).cast());
                let sma = _mm_or_si128(
                    _mm_and_si128(_mm_srli_epi16(a, 8), m80),
                    _mm_and_si128(a, m7f),
                );
                let smb = _mm_or_si128(
                    _mm_and_si128(_mm_srli_epi16(b, 8), m80),
                    _mm_and_si128(b, m7f),
                );
                _mm_storeu_si128(sm.as_mut_ptr().add(at).cast(), _mm_packus_epi16(sma, smb));
                let e = _mm_packus_epi16(
                    _mm_and_si128(_mm_srli_epi16(a, 7), mff),
                    _mm_and_si128(_mm_srli_epi16(b, 7), mff),
                );
                let d0 = _mm_sub_epi8(e, base);
                let d1 = _mm_sub_epi8(d0, c16);
                // pshufb yields 0 for lanes with bit 7 set: set it where d is outside 0..16.
                let in0 = _mm_cmpeq_epi8(_mm_min_epu8(d0, c15), d0);
                let in1 = _mm_cmpeq_epi8(_mm_min_epu8(d1, c15), d1);
                let r0 = _mm_shuffle_epi8(lo_t, _mm_or_si128(d0, _mm_andnot_si128(in0, c80)));
                let r1 = _mm_shuffle_epi8(hi_t, _mm_or_si128(d1, _mm_andnot_si128(in1, c80)));
                let r = _mm_or_si128(r0, r1);
                miss = _mm_or_si128(miss, _mm_cmpeq_epi8(r, _mm_setzero_si128()));
                _mm_sub_epi8(r, one)
            }};
        }
        for half in 0..2 {
            let at = 32 * half;
            let x = step!(at);
            let y = step!(at + 16);
            // Bytes (i0, i1) of each 16-bit lane → i0 | i1 << 4; packus keeps the low byte.
            let px = _mm_or_si128(
                _mm_and_si128(x, mff),
                _mm_slli_epi16(_mm_srli_epi16(x, 8), 4),
            );
            let py = _mm_or_si128(
                _mm_and_si128(y, mff),
                _mm_slli_epi16(_mm_srli_epi16(y, 8), 4),
            );
            let packed = _mm_packus_epi16(_mm_and_si128(px, mff), _mm_and_si128(py, mff));
            _mm_storeu_si128(nib.as_mut_ptr().add(16 * half).cast(), packed);
        }
        _mm_movemask_epi8(miss) != 0
    }
}
