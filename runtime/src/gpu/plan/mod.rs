//! The execution pipelines of `y = x·Wᵀ` and the plan of one call (which kernels run, after any fallback).
//!
//! | pipeline | weights | preprocess | matmul |
//! |---|---|---|---|
//! | full_decode | huffman | huff_bf16 → scratch | cuBLAS |
//! | exponent | huffman | huff_exponent → scratch | rmm_exponent |
//! | palette_transcode | huffman | huff_palette → scratch | rmm_palette |
//! | direct_palette | palette | none | rmm_palette |
//! | raw | raw bf16 | none | rmm_raw |
//! | cublas | raw bf16 | none | cuBLAS |
//!
//! Fallback: the rmm kernels need `n_out % 128 == 0` and `k % 64 == 0`. For other shapes
//! exponent and palette_transcode run as full_decode, raw runs as cublas; palette residency is
//! refused at upload for such shapes, so direct_palette never needs one.
//!
//! [`select`] picks the default variant per batch size, [`stream_k`] sizes the launch.

pub mod select;
pub mod stream_k;

use std::fmt;
use std::str::FromStr;

use unweight_codegen::abi::{BK, BM};
use unweight_codegen::variant::{ASource, HuffOutput, Operand, RegistryEntry, Variant};

pub use select::{
    default_set, default_variant, default_variant_for, default_variant_in, default_variant_of,
    default_variant_sized, huff_entry, huff_variant_entry, rmm_candidates, rmm_candidates_of,
    sized_for,
};
pub use stream_k::{
    choose_ctas, cta_slots, ctas_for, ctas_valid, rmm_tiles, split_buffers, split_buffers_bound,
    Schedule, Spread, MAX_CTAS_PER_SM,
};

use crate::gpu::error::GpuError;
use crate::gpu::jit::registry;
use crate::gpu::layout::{Geometry, Residency};

/// How one call computes `y = x·Wᵀ` (the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecPipeline {
    /// Huffman → bf16 preprocess, then the raw rmm.
    FullDecode,
    /// Huffman → exponent bytes preprocess, then the exponent rmm.
    Exponent,
    /// Huffman → palette nibbles preprocess, then the palette rmm (hard layers).
    PaletteTranscode,
    /// The palette rmm straight on palette-resident weights (easy layers).
    DirectPalette,
    /// The raw rmm on bf16 weights (the bit-exact twin).
    Raw,
    /// cuBLAS on bf16 weights (the reference).
    Cublas,
}

impl ExecPipeline {
    /// Every pipeline, in table order.
    pub const ALL: [ExecPipeline; 6] = [
        ExecPipeline::FullDecode,
        ExecPipeline::Exponent,
        ExecPipeline::PaletteTranscode,
        ExecPipeline::DirectPalette,
        ExecPipeline::Raw,
        ExecPipeline::Cublas,
    ];

    /// The name used by the CLI, the benchmark tables and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecPipeline::FullDecode => "full_decode",
            ExecPipeline::Exponent => "exponent",
            ExecPipeline::PaletteTranscode => "palette_transcode",
            ExecPipeline::DirectPalette => "direct_palette",
            ExecPipeline::Raw => "raw",
            ExecPipeline::Cublas => "cublas",
        }
    }

    /// The residency the weights must have.
    pub fn residency(self) -> Residency {
        match self {
            ExecPipeline::FullDecode | ExecPipeline::Exponent | ExecPipeline::PaletteTranscode => {
                Residency::Huffman
            }
            ExecPipeline::DirectPalette => Residency::Palette,
            ExecPipeline::Raw | ExecPipeline::Cublas => Residency::Raw,
        }
    }

    /// The rmm kernel family it launches, if any.
    pub fn rmm(self) -> Option<Operand> {
        match self {
            ExecPipeline::Exponent => Some(Operand::Exponent),
            ExecPipeline::PaletteTranscode | ExecPipeline::DirectPalette => Some(Operand::Palette),
            ExecPipeline::Raw => Some(Operand::Raw),
            ExecPipeline::FullDecode | ExecPipeline::Cublas => None,
        }
    }

    /// The Huffman preprocess it launches, if any.
    pub fn preprocess(self) -> Option<HuffOutput> {
        match self {
            ExecPipeline::FullDecode => Some(HuffOutput::Bf16),
            ExecPipeline::Exponent => Some(HuffOutput::Exponent),
            ExecPipeline::PaletteTranscode => Some(HuffOutput::Palette),
            _ => None,
        }
    }

    /// What runs instead when the rmm cannot take the shape.
    pub fn fallback(self) -> ExecPipeline {
        match self {
            ExecPipeline::Exponent | ExecPipeline::PaletteTranscode => ExecPipeline::FullDecode,
            ExecPipeline::Raw => ExecPipeline::Cublas,
            other => other,
        }
    }
}

impl fmt::Display for ExecPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecPipeline {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        ExecPipeline::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| GpuError::UnknownPipeline {
                name: s.to_string(),
                expected: ExecPipeline::ALL.map(ExecPipeline::as_str).join(", "),
            })
    }
}

/// What one call runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// What the caller asked for.
    pub requested: ExecPipeline,
    /// What runs (differs after a fallback).
    pub pipeline: ExecPipeline,
    /// The batch: `x` is `[m][k]`.
    pub m: usize,
    /// The preprocess kernel (Huffman pipelines), if any.
    pub preprocess: Option<&'static RegistryEntry>,
    /// The matmul kernel (none for cuBLAS).
    pub rmm: Option<&'static RegistryEntry>,
    /// CTAs of the rmm launch (stream-K: they share the output tiles' k blocks evenly).
    pub ctas: u32,
}

impl Plan {
    /// The variant name to report (rmm, else the preprocess kernel + "cublas", else "cublas").
    pub fn variant_name(&self) -> String {
        match (self.rmm, self.preprocess) {
            (Some(r), _) => r.name.to_string(),
            (None, Some(p)) => format!("{}+cublas", p.name),
            (None, None) => "cublas".to_string(),
        }
    }
}

/// Plans `pipeline` for a weight of `geometry` at batch `m`, with `rmm` overriding the default
/// variant (it must be of the pipeline's family and orientation). The default is an SS variant.
pub fn plan(
    geometry: &Geometry,
    pipeline: ExecPipeline,
    m: usize,
    rmm: Option<&'static RegistryEntry>,
    sm_count: u32,
) -> Result<Plan, GpuError> {
    plan_for(geometry, pipeline, m, rmm, ASource::Smem, sm_count)
}

/// How a default plan spreads `e`'s `tiles` output tiles over `slots` CTA slots. Below one wave,
/// raw at any width, every RS form and every pipeline on tiles 256 wide keep whole splits per
/// tile; narrower SS compressed tiles, bound by their rebuild, spread evenly over every SM. H200,
/// same run (`2026-12-04-nvidia-h200-spread-*.md`, µs even → whole splits): 14336×4096 m = 256
/// (112 tiles of 256) raw 57.5 → 52.2, direct palette 67.7 → 64.9, exponent 116.6 → 114.0;
/// 4096×14336 m = 256…1024 direct palette 3–5% and exponent / palette transcode 0–3% faster.
/// RS, memory-bound (`2026-12-04-nvidia-h200-small-*.md`, s11a): direct palette RS 14336×4096
/// m = 1 30.9 → 27.8 µs on 112 CTAs (cuBLAS 33.0 / 32.6), m = 64 35.4 → 33.2; 4096×14336 m = 1
/// 32.9 → 30.7 on 128; 112 of 132 SMs still fill the memory. Why the even spread, whose ranges
/// span two tiles, loses is not settled (Nsight shows a DRAM dip mid-run; taking the hand-off's
/// release off the consumers did not change it, s11d). SS direct palette, rebuild-bound, lost
/// with whole splits there (37.9 → 39.7 µs). Tiles that fill the GPU: `Even`, whose rule picks one CTA per tile or
/// persistent CTAs.
pub fn default_spread(pipeline: ExecPipeline, e: &RegistryEntry, tiles: u32, slots: u32) -> Spread {
    let (wide, rs) = match e.variant {
        Variant::Rmm(v) => (v.tile_n >= WHOLE_SPLITS_TILE_N, v.a_src == ASource::Regs),
        _ => (false, false),
    };
    if tiles < slots && (pipeline == ExecPipeline::Raw || wide || rs) {
        Spread::WholeSplits
    } else {
        Spread::Even
    }
}

/// The CTA count a default plan gives `e` running `pipeline` on `n_out × k` at batch `m` on
/// `sm_count` SMs: [`ctas_for`] under [`default_spread`].
pub fn default_ctas(
    pipeline: ExecPipeline,
    e: &RegistryEntry,
    n_out: usize,
    k: usize,
    m: usize,
    sm_count: u32,
) -> u32 {
    let spread = default_spread(pipeline, e, rmm_tiles(e, n_out, m), cta_slots(e, sm_count));
    ctas_for(e, n_out, k, m, sm_count, spread)
}

/// Tile width from which every pipeline keeps whole splits below one wave ([`default_spread`]).
const WHOLE_SPLITS_TILE_N: u32 = 256;

/// [`plan`] whose default rmm is of the form `a_src` (the weight's block layout decides it:
/// fragment-layout weights take the RS variants).
pub fn plan_for(
    geometry: &Geometry,
    pipeline: ExecPipeline,
    m: usize,
    rmm: Option<&'static RegistryEntry>,
    a_src: ASource,
    sm_count: u32,
) -> Result<Plan, GpuError> {
    let transpose = geometry.transposed();
    let effective = if pipeline.rmm().is_some() && !geometry.rmm_ok() {
        pipeline.fallback()
    } else {
        pipeline
    };
    if effective.rmm().is_some() && !geometry.rmm_ok() {
        return Err(GpuError::NoVariantFits {
            shape: geometry.shape_text(),
            reason: format!("{pipeline} needs n_out % {BM} == 0 and k % {BK} == 0"),
        });
    }
    let rmm = match (effective.rmm(), rmm) {
        (None, _) => None,
        (Some(_), None) => default_variant_for(effective, transpose, a_src, m)?
            .map(|one| sized_for(registry::VARIANTS, one, m, geometry.n_out, sm_count)),
        (Some(fam), Some(e)) => match e.variant {
            Variant::Rmm(v) if v.operand == fam && v.transpose == transpose => Some(e),
            _ => {
                return Err(GpuError::WrongVariant {
                    variant: e.name.to_string(),
                    expected: format!(
                        "rmm_{}_*_{}",
                        fam.as_str(),
                        if transpose { "t" } else { "nt" }
                    ),
                })
            }
        },
    };
    let preprocess = effective.preprocess().map(huff_entry).transpose()?;
    let ctas = match rmm {
        Some(e) => default_ctas(effective, e, geometry.n_out, geometry.k, m, sm_count),
        None => 1,
    };
    Ok(Plan {
        requested: pipeline,
        pipeline: effective,
        m,
        preprocess,
        rmm,
        ctas,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use unweight_codegen::variant::{GridRule, RmmVariant};

    /// A registry shaped like the generator's: every family, orientation and tile width, deep
    /// rings only for narrow tiles, `max_kb` on palette.
    pub(crate) fn entries() -> &'static [RegistryEntry] {
        let mut v = Vec::new();
        // The RS form: palette and raw, tiles 8..64, rings 4 and 8; pairs (two CTAs per SM) of
        // tiles 8 and 16, rings 4 and 6.
        let rs = [8, 16, 32, 64]
            .into_iter()
            .flat_map(|n| [(n, 4, 1), (n, 8, 1)])
            .chain([8, 16].into_iter().flat_map(|n| [(n, 4, 2), (n, 6, 2)]));
        for pipeline in [Operand::Palette, Operand::Raw] {
            for transpose in [false, true] {
                for (tile_n, stages, ctas_per_sm) in rs.clone() {
                    {
                        let variant = Variant::Rmm(RmmVariant {
                            operand: pipeline,
                            tile_n,
                            stages,
                            transpose,
                            a_src: ASource::Regs,
                            ctas_per_sm,
                        });
                        v.push(RegistryEntry {
                            variant,
                            name: Box::leak(variant.to_string().into_boxed_str()),
                            block: [384, 1, 1],
                            grid: GridRule::RmmTiles {
                                rows_per_cta: 128,
                                tile_n,
                            },
                            dynamic_smem: 1000,
                            max_kb: (pipeline == Operand::Palette).then_some(256),
                            source_hash: 0,
                            source: "",
                        });
                    }
                }
            }
        }
        for pipeline in Operand::ALL {
            for transpose in [false, true] {
                for tile_n in [8, 16, 32, 64, 128, 256] {
                    // Deep rings only fit narrow tiles, as the generator's pruning would have it.
                    let max_stages = if tile_n >= 128 { 3 } else { 6 };
                    for stages in 2..=max_stages {
                        let variant = Variant::Rmm(RmmVariant {
                            operand: pipeline,
                            tile_n,
                            stages,
                            transpose,
                            a_src: ASource::Smem,
                            ctas_per_sm: 1,
                        });
                        v.push(RegistryEntry {
                            variant,
                            name: Box::leak(variant.to_string().into_boxed_str()),
                            block: [384, 1, 1],
                            grid: GridRule::RmmTiles {
                                rows_per_cta: 128,
                                tile_n,
                            },
                            dynamic_smem: 1000,
                            max_kb: (pipeline == Operand::Palette).then_some(256),
                            source_hash: 0,
                            source: "",
                        });
                    }
                }
            }
        }
        Box::leak(v.into_boxed_slice())
    }

    #[test]
    fn default_spread_keeps_whole_splits_below_a_wave_for_raw_rs_and_wide_tiles() {
        let find = |name: &str| entries().iter().find(|e| e.name == name).unwrap();
        let (narrow, wide) = (find("rmm_palette_n8_s6_nt"), find("rmm_palette_n256_s3_nt"));
        let raw = find("rmm_raw_n8_s6_nt");
        let rs = find("rmm_palette_rs_n8_s4_nt");
        use ExecPipeline::*;
        assert_eq!(
            default_spread(DirectPalette, narrow, 112, 132),
            Spread::Even
        );
        assert_eq!(
            default_spread(DirectPalette, rs, 112, 132),
            Spread::WholeSplits
        );
        assert_eq!(default_spread(DirectPalette, rs, 224, 132), Spread::Even);
        assert_eq!(
            default_spread(Exponent, wide, 112, 132),
            Spread::WholeSplits
        );
        assert_eq!(
            default_spread(DirectPalette, wide, 112, 132),
            Spread::WholeSplits
        );
        assert_eq!(default_spread(Raw, raw, 112, 132), Spread::WholeSplits);
        // Tiles that fill the GPU: the even rule (one CTA per tile or persistent CTAs).
        for e in [narrow, wide, raw] {
            assert_eq!(default_spread(Raw, e, 448, 132), Spread::Even);
            assert_eq!(default_spread(DirectPalette, e, 132, 132), Spread::Even);
        }
    }

    #[test]
    fn names_round_trip() {
        for p in ExecPipeline::ALL {
            assert_eq!(p.as_str().parse::<ExecPipeline>().unwrap(), p);
        }
        assert!("palette".parse::<ExecPipeline>().is_err());
    }

    #[test]
    fn fallback_rules() {
        use ExecPipeline::*;
        assert_eq!(
            [
                Exponent.fallback(),
                PaletteTranscode.fallback(),
                Raw.fallback()
            ],
            [FullDecode, FullDecode, Cublas]
        );
        for p in ExecPipeline::ALL {
            assert!(
                p.fallback().rmm().is_none() || p == DirectPalette,
                "{p} falls back to another rmm"
            );
            assert_eq!(
                p.fallback().residency(),
                p.residency(),
                "{p} fallback changes residency"
            );
        }
    }
}
