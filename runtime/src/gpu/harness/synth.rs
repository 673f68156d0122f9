//! Synthetic BF16 weights and activations for GPU tests and the benchmark: LLM-like exponent
//! histograms with a controlled fraction of escape groups, reproducible from a seed.

use crate::codec::GROUP;
use crate::rng::SplitMix64;

/// The tests' generator: [`SplitMix64`] with uniform helpers.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// A seed that differs on every run (time and process id), printed by tests so a failure
    /// can be replayed.
    pub fn fresh_seed() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Options of [`weights`].
#[derive(Clone, Copy, Debug)]
pub struct WeightSpec {
    /// Fraction of 64-element groups that get one out-of-palette exponent.
    pub escape_groups: f64,
    /// Whether escapes may be specials (exponent 0: zeros/subnormals, 255: Inf/NaN). Matmul
    /// tests keep them finite so the cuBLAS comparison stays meaningful.
    pub specials: bool,
}

/// Exponents of the bulk, most frequent first: `|w| ≈ 2^-5 … 2^-20`, drawn with weights 16, 15,
/// …, 1: flatter than trained weights' histograms, so their Huffman code takes ~3.79 bits per
/// symbol (lengths 3–7) where all-MiniLM-L6-v2's tensors take 2.6–2.8 (lengths 2–12): the
/// bench's Huffman streams are ~40% longer than a trained model's, and its decode figures
/// pessimistic for one.
const BULK: [u8; 16] = [
    121, 120, 122, 119, 118, 123, 117, 116, 115, 114, 113, 112, 111, 110, 109, 108,
];

/// Row-major bf16 bits `[rows][cols]` with `spec.escape_groups` of the (row, 64-column) groups
/// escaped. The bulk uses exactly the 16 `BULK` exponents, so the palette is `BULK` and
/// escapes are exactly the planted groups (for a large enough matrix).
pub fn weights(rng: &mut Rng, rows: usize, cols: usize, spec: WeightSpec) -> Vec<u16> {
    // Cumulative weights 16, 15, ..., 1 over BULK.
    let total: u64 = (1..=16).sum();
    let mut w = Vec::with_capacity(rows * cols);
    for _ in 0..rows * cols {
        let r = rng.next_u64();
        let mut pick = (r >> 40) % total;
        let mut e = BULK[15];
        for (i, &b) in BULK.iter().enumerate() {
            let weight = 16 - i as u64;
            if pick < weight {
                e = b;
                break;
            }
            pick -= weight;
        }
        let sign = ((r >> 8) & 1) as u16;
        w.push((sign << 15) | ((e as u16) << 7) | (r & 0x7F) as u16);
    }
    let groups_per_row = cols.div_ceil(GROUP);
    for row in 0..rows {
        for gcol in 0..groups_per_row {
            if rng.unit() >= spec.escape_groups {
                continue;
            }
            let width = GROUP.min(cols - gcol * GROUP);
            let c = gcol * GROUP + rng.below(width as u64) as usize;
            let e: u16 = if spec.specials {
                [0u16, 255, 1, 90, 130, 200][rng.below(6) as usize]
            } else {
                // Finite, outside BULK: tiny (2^-27..2^-21) or large (2^-4..2^-1).
                [100u16, 104, 106, 107, 124, 125, 126][rng.below(7) as usize]
            };
            let v = &mut w[row * cols + c];
            *v = (*v & 0x807F) | (e << 7);
        }
    }
    w
}

/// Activations bf16 `[m][k]`, roughly N(0, 1) (sum of uniforms), rounded to nearest bf16.
pub fn activations(rng: &mut Rng, m: usize, k: usize) -> Vec<u16> {
    (0..m * k)
        .map(|_| {
            let s: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
            half::bf16::from_f32((s * 1.7) as f32).to_bits()
        })
        .collect()
}

/// Relative Frobenius error `‖a − b‖ / ‖b‖` of two bf16 arrays, and whether `a` has a
/// non-finite value where `b` is finite.
pub fn rel_frobenius(a: &[u16], b: &[u16]) -> (f64, bool) {
    let (mut num, mut den, mut bad) = (0.0f64, 0.0f64, false);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (
            half::bf16::from_bits(x).to_f64(),
            half::bf16::from_bits(y).to_f64(),
        );
        if y.is_finite() {
            if !x.is_finite() {
                bad = true;
                continue;
            }
            num += (x - y) * (x - y);
            den += y * y;
        }
    }
    (
        if den > 0.0 {
            (num / den).sqrt()
        } else {
            num.sqrt()
        },
        bad,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{compress, Encoding, Orientation};

    #[test]
    fn planted_escape_fraction_is_what_the_codec_sees() {
        let mut rng = Rng::new(7);
        let (rows, cols) = (256, 1024);
        let w = weights(
            &mut rng,
            rows,
            cols,
            WeightSpec {
                escape_groups: 0.01,
                specials: true,
            },
        );
        let t = compress(&w, &[rows, cols], Orientation::Standard, Encoding::Palette).unwrap();
        let mut palette = t.palette;
        palette.sort();
        let mut bulk = BULK;
        bulk.sort();
        assert_eq!(palette, bulk);
        let frac = t.escape_count() as f64 / t.groups() as f64;
        assert!((0.005..0.02).contains(&frac), "escape fraction {frac}");
    }

    #[test]
    fn frobenius_flags_nan_where_reference_is_finite() {
        let one = half::bf16::from_f32(1.0).to_bits();
        let nan = half::bf16::NAN.to_bits();
        assert_eq!(rel_frobenius(&[one, one], &[one, one]), (0.0, false));
        assert!(rel_frobenius(&[nan, one], &[one, one]).1);
        assert!(!rel_frobenius(&[nan, one], &[nan, one]).1);
    }

    #[test]
    fn seeds_reproduce() {
        let a = weights(
            &mut Rng::new(3),
            4,
            100,
            WeightSpec {
                escape_groups: 0.5,
                specials: false,
            },
        );
        let b = weights(
            &mut Rng::new(3),
            4,
            100,
            WeightSpec {
                escape_groups: 0.5,
                specials: false,
            },
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            weights(
                &mut Rng::new(4),
                4,
                100,
                WeightSpec {
                    escape_groups: 0.5,
                    specials: false
                }
            )
        );
    }
}
