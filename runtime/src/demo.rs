//! The demo's synthetic MLP layer: Llama-3.1-8B shapes with weight statistics like real ones,
//! and the CPU round trip the `demo` command reports.
//!
//! Real BF16 checkpoints have ~2.6 bits of exponent entropy and ~1% of 64-element groups with
//! an exponent outside the tensor's 16 most frequent. Gaussian weights with per-row scales
//! (log-normal, σ = 0.2, around 0.02) give the entropy; a sprinkling of outliers (8 in 10⁵
//! elements, 16–256× larger) gives the escapes. `demo` prints what it measured.

use rayon::prelude::*;

use crate::bundle::inspect::{entropy, exponent_histogram};
use crate::bundle::TensorReport;
use crate::codec::{self, CodecError, Encoding, Orientation};
use crate::rng::SplitMix64;

/// Llama-3.1-8B: hidden size and MLP intermediate size.
pub const HIDDEN: usize = 4096;
pub const INTERMEDIATE: usize = 14336;

/// One weight matrix of the layer.
#[derive(Debug, Clone)]
pub struct DemoTensor {
    pub name: String,
    /// `[rows, cols]` as PyTorch stores the weight (`[out_features, in_features]`).
    pub shape: [usize; 2],
    pub bits: Vec<u16>,
}

/// gate_proj, up_proj (`[intermediate, hidden]`) and down_proj (`[hidden, intermediate]`).
#[derive(Debug, Clone)]
pub struct DemoLayer {
    pub tensors: Vec<DemoTensor>,
}

/// SplitMix64 seeded per row, so rows can be generated in parallel and the result does not
/// depend on the thread count.
struct SplitMix(SplitMix64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Two independent standard normals (Box–Muller).
    fn normals(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.unit().ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * self.unit()).sin_cos();
        (r * c, r * s)
    }
}

const ROW_SCALE: f64 = 0.02;
const ROW_SCALE_LOG_SIGMA: f64 = 0.2;
const OUTLIER_RATE: f64 = 8e-5;

fn weights(seed: u64, rows: usize, cols: usize) -> Vec<u16> {
    let mut bits = vec![0u16; rows * cols];
    bits.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let mut rng = SplitMix(SplitMix64::new(
                seed ^ (r as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ));
            let scale = ROW_SCALE * (ROW_SCALE_LOG_SIGMA * rng.normals().0).exp();
            for pair in row.chunks_mut(2) {
                let (a, b) = rng.normals();
                for (v, z) in pair.iter_mut().zip([a, b]) {
                    let mut x = z * scale;
                    if rng.unit() < OUTLIER_RATE {
                        x *= f64::from(1u32 << (4 + rng.next() % 5));
                    }
                    *v = half::bf16::from_f32(x as f32).to_bits();
                }
            }
        });
    bits
}

impl DemoLayer {
    /// Builds the layer with the given sizes (the demo uses [`HIDDEN`], [`INTERMEDIATE`]).
    pub fn build(seed: u64, hidden: usize, intermediate: usize) -> Self {
        let spec = [
            ("mlp.gate_proj.weight", [intermediate, hidden]),
            ("mlp.up_proj.weight", [intermediate, hidden]),
            ("mlp.down_proj.weight", [hidden, intermediate]),
        ];
        let tensors = spec
            .iter()
            .enumerate()
            .map(|(i, (name, shape))| DemoTensor {
                name: name.to_string(),
                shape: *shape,
                bits: weights(
                    seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
                        .wrapping_add(i as u64),
                    shape[0],
                    shape[1],
                ),
            })
            .collect();
        Self { tensors }
    }

    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(|t| 2 * t.bits.len()).sum()
    }
}

/// What the layer's weights look like, over all three tensors.
#[derive(Debug, Clone)]
pub struct LayerStats {
    /// Exponent entropy, bits per element.
    pub exponent_entropy: f64,
    /// Escaped groups / groups (standard orientation, each tensor's own palette).
    pub escape_rate: f64,
    pub distinct_exponents: usize,
}

/// One compressed variant of one tensor, verified bit-exact.
#[derive(Debug, Clone)]
pub struct DemoResult {
    pub report: TensorReport,
    pub compress_s: f64,
    pub decompress_s: f64,
}

/// Statistics measured from the layer; escapes come from the codec's own palette choice.
pub fn measure(layer: &DemoLayer) -> Result<LayerStats, CodecError> {
    let mut hist = [0u64; 256];
    let (mut groups, mut escapes) = (0usize, 0usize);
    for t in &layer.tensors {
        let h = exponent_histogram(&t.bits);
        hist.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        let pal = codec::compress(&t.bits, &t.shape, Orientation::Standard, Encoding::Palette)?;
        groups += pal.groups();
        escapes += pal.escape_count();
    }
    Ok(LayerStats {
        exponent_entropy: entropy(&hist),
        escape_rate: escapes as f64 / groups.max(1) as f64,
        distinct_exponents: hist.iter().filter(|&&c| c > 0).count(),
    })
}

/// Compresses every tensor with `encoding` (down_proj also transposed), decodes it again and
/// checks the result bit for bit against the original.
pub fn round_trip(layer: &DemoLayer, encoding: Encoding) -> Result<Vec<DemoResult>, CodecError> {
    let mut out = Vec::new();
    for t in &layer.tensors {
        let mut orientations = vec![Orientation::Standard];
        if t.name.contains("down_proj") {
            orientations.push(Orientation::Transposed);
        }
        for o in orientations {
            let start = std::time::Instant::now();
            let ct = codec::compress(&t.bits, &t.shape, o, encoding)?;
            let compress_s = start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            let back = codec::decompress(&ct)?;
            let decompress_s = start.elapsed().as_secs_f64();
            if back != t.bits {
                let at = back
                    .iter()
                    .zip(&t.bits)
                    .position(|(a, b)| a != b)
                    .unwrap_or(back.len().min(t.bits.len()));
                return Err(CodecError::Dims {
                    problem: format!(
                        "{} ({encoding}, {o}) decoded differently at element {at}",
                        t.name
                    ),
                });
            }
            out.push(DemoResult {
                report: TensorReport::of(&t.name, &ct),
                compress_s,
                decompress_s,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_layer_is_realistic_and_round_trips() {
        let layer = DemoLayer::build(7, 256, 896);
        let s = measure(&layer).unwrap();
        assert!(
            (2.45..2.8).contains(&s.exponent_entropy),
            "entropy {}",
            s.exponent_entropy
        );
        assert!(
            (0.003..0.03).contains(&s.escape_rate),
            "escape rate {}",
            s.escape_rate
        );
        for e in [Encoding::Huffman, Encoding::Palette] {
            let r = round_trip(&layer, e).unwrap();
            assert_eq!(r.len(), 4);
            assert!(r
                .iter()
                .all(|x| x.report.bytes_after < x.report.bytes_before));
        }
    }

    #[test]
    fn build_is_deterministic() {
        let a = DemoLayer::build(3, 64, 128);
        let b = DemoLayer::build(3, 64, 128);
        assert!(a
            .tensors
            .iter()
            .zip(&b.tensors)
            .all(|(x, y)| x.bits == y.bits));
        assert_ne!(
            a.tensors[0].bits,
            DemoLayer::build(4, 64, 128).tensors[0].bits
        );
    }
}
