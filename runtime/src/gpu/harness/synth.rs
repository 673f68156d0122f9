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

/// The bulk's exponent histogram: which 16 exponents the non-escaped elements take, and how often.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Bulk {
    /// all-MiniLM-L6-v2's 16 most frequent exponents (2^-17 … 2^-2) at their frequencies in that
    /// checkpoint, rounded to BF16 (every 2-D tensor of ≥ 10⁵ elements: 99.986% of its elements):
    /// 2.66 bits of entropy, Huffman code lengths 2–12, as trained weights have.
    Trained,
    /// 2^-20 … 2^-5 with weights 16, 15, …, 1: flatter than trained weights' histograms (3.79 bits
    /// per symbol of Huffman, lengths 3–7), so its streams are ~40% longer than a trained model's.
    /// Every benchmark figure before 2026-12-02 s7 used it.
    Flat,
}

impl Bulk {
    /// As the command line spells it (clap's name for the value).
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// One line for reports.
    pub fn summary(self) -> &'static str {
        match self {
            Bulk::Trained => "all-MiniLM-L6-v2's 16 most frequent exponents at its frequencies: ~2.66 bits per symbol of Huffman",
            Bulk::Flat => "16 exponents at weights 16..1: ~3.79 bits per symbol of Huffman, the figures before 2026-12-02 s7",
        }
    }

    /// Exponents, most frequent first, and their weights.
    fn table(self) -> &'static [(u8, u32); 16] {
        match self {
            // Counts per million of all-MiniLM-L6-v2's top 16 (python: safetensors read, f32 rounded
            // to nearest-even BF16, exponent field histogram over the 2-D tensors).
            Bulk::Trained => &[
                (122, 288562),
                (121, 211782),
                (123, 211572),
                (120, 121188),
                (119, 63393),
                (124, 38235),
                (118, 32177),
                (117, 16132),
                (116, 8075),
                (115, 4034),
                (114, 2034),
                (113, 1024),
                (125, 902),
                (112, 511),
                (111, 253),
                (110, 127),
            ],
            Bulk::Flat => &[
                (121, 16),
                (120, 15),
                (122, 14),
                (119, 13),
                (118, 12),
                (123, 11),
                (117, 10),
                (116, 9),
                (115, 8),
                (114, 7),
                (113, 6),
                (112, 5),
                (111, 4),
                (110, 3),
                (109, 2),
                (108, 1),
            ],
        }
    }

    /// Finite exponents outside the bulk (tiny and large), for planted escapes.
    fn finite_escapes(self) -> &'static [u16] {
        match self {
            Bulk::Trained => &[100, 104, 106, 107, 108, 126, 127],
            Bulk::Flat => &[100, 104, 106, 107, 124, 125, 126],
        }
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
    /// The bulk's exponent histogram.
    pub bulk: Bulk,
}

/// Row-major bf16 bits `[rows][cols]` with `spec.escape_groups` of the (row, 64-column) groups
/// escaped. The bulk uses exactly the 16 exponents of `spec.bulk`, so for a large enough matrix
/// the palette is the bulk and the escapes are the planted groups.
pub fn weights(rng: &mut Rng, rows: usize, cols: usize, spec: WeightSpec) -> Vec<u16> {
    let table = spec.bulk.table();
    let total: u64 = table.iter().map(|&(_, w)| w as u64).sum();
    let mut w = Vec::with_capacity(rows * cols);
    for _ in 0..rows * cols {
        let r = rng.next_u64();
        let mut pick = (r >> 40) % total;
        let mut e = table[15].0;
        for &(b, weight) in table {
            if pick < weight as u64 {
                e = b;
                break;
            }
            pick -= weight as u64;
        }
        let sign = ((r >> 8) & 1) as u16;
        w.push((sign << 15) | ((e as u16) << 7) | (r & 0x7F) as u16);
    }
    let escapes = spec.bulk.finite_escapes();
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
                escapes[rng.below(escapes.len() as u64) as usize]
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
        for bulk in [Bulk::Trained, Bulk::Flat] {
            let mut rng = Rng::new(7);
            let (rows, cols) = (256, 1024);
            let spec = WeightSpec {
                escape_groups: 0.01,
                specials: true,
                bulk,
            };
            let w = weights(&mut rng, rows, cols, spec);
            let t = compress(&w, &[rows, cols], Orientation::Standard, Encoding::Palette).unwrap();
            let mut palette = t.palette;
            palette.sort();
            let mut want: Vec<u8> = bulk.table().iter().map(|&(e, _)| e).collect();
            want.sort();
            assert_eq!(palette.to_vec(), want, "{bulk:?}");
            let frac = t.escape_count() as f64 / t.groups() as f64;
            assert!(
                (0.005..0.02).contains(&frac),
                "{bulk:?}: escape fraction {frac}"
            );
        }
    }

    /// The two histograms give the Huffman streams their docs state: trained ~2.66 bits per
    /// symbol with codes longer than 7 bits, flat ~3.79 with none.
    #[test]
    fn bulk_histograms_give_their_stated_code_lengths() {
        for (bulk, lo, hi, longest) in [
            (Bulk::Trained, 2.62, 2.75, 8..=15),
            (Bulk::Flat, 3.75, 3.83, 7..=7),
        ] {
            let (rows, cols) = (512, 1024);
            let spec = WeightSpec {
                escape_groups: 0.0,
                specials: false,
                bulk,
            };
            let w = weights(&mut Rng::new(11), rows, cols, spec);
            let t = compress(&w, &[rows, cols], Orientation::Standard, Encoding::Huffman).unwrap();
            let crate::codec::Indices::Huffman(h) = &t.indices else {
                panic!("{bulk:?}: not a Huffman tensor")
            };
            let per = h.total_bits as f64 / (rows * cols) as f64;
            assert!((lo..hi).contains(&per), "{bulk:?}: {per} bits per symbol");
            let max = *h.code_lengths.iter().max().unwrap();
            assert!(longest.contains(&max), "{bulk:?}: longest code {max}");
        }
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
                bulk: Bulk::Trained,
            },
        );
        let b = weights(
            &mut Rng::new(3),
            4,
            100,
            WeightSpec {
                escape_groups: 0.5,
                specials: false,
                bulk: Bulk::Trained,
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
                    specials: false,
                    bulk: Bulk::Trained,
                }
            )
        );
    }
}
