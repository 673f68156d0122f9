//! The execution pipelines of `y = x·Wᵀ`, the default variant per batch size, and the plan of
//! one call (which kernels run, after any fallback).
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

use std::fmt;
use std::str::FromStr;

use unweight_codegen::abi::{BK, BM, RMM_CONSUMER_THREADS};
use unweight_codegen::space::TILE_N;
use unweight_codegen::variant::{HuffOutput, HuffVariant, Pipeline, RegistryEntry, RmmVariant, Variant};

use super::error::GpuError;
use super::host::Geometry;
use crate::kernels;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecPipeline {
    FullDecode,
    Exponent,
    PaletteTranscode,
    DirectPalette,
    Raw,
    Cublas,
}

impl ExecPipeline {
    pub const ALL: [ExecPipeline; 6] = [
        ExecPipeline::FullDecode,
        ExecPipeline::Exponent,
        ExecPipeline::PaletteTranscode,
        ExecPipeline::DirectPalette,
        ExecPipeline::Raw,
        ExecPipeline::Cublas,
    ];

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

    /// The residency the weights must have ("huffman", "palette" or "raw").
    pub fn residency(self) -> &'static str {
        match self {
            ExecPipeline::FullDecode | ExecPipeline::Exponent | ExecPipeline::PaletteTranscode => "huffman",
            ExecPipeline::DirectPalette => "palette",
            ExecPipeline::Raw | ExecPipeline::Cublas => "raw",
        }
    }

    /// The rmm kernel family it launches, if any.
    pub fn rmm(self) -> Option<Pipeline> {
        match self {
            ExecPipeline::Exponent => Some(Pipeline::Exponent),
            ExecPipeline::PaletteTranscode | ExecPipeline::DirectPalette => Some(Pipeline::Palette),
            ExecPipeline::Raw => Some(Pipeline::Raw),
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
        ExecPipeline::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| GpuError::Shape {
            what: format!("pipeline `{s}`"),
            reason: "expected one of full_decode, exponent, palette_transcode, direct_palette, raw, cublas".into(),
        })
    }
}

/// The rmm variants of `pipeline` and orientation in `entries`.
pub fn rmm_candidates(entries: &'static [RegistryEntry], pipeline: Pipeline, transpose: bool) -> Vec<(&'static RegistryEntry, RmmVariant)> {
    entries
        .iter()
        .filter_map(|e| match e.variant {
            Variant::Rmm(v) if v.pipeline == pipeline && v.transpose == transpose => Some((e, v)),
            _ => None,
        })
        .collect()
}

/// The default variant among `entries` until the autotuner exists: the smallest batch tile
/// that covers `m` in one tile (the largest tile when none does), with the deepest ring the
/// registry kept for that tile (more bytes in flight, which small batches need most).
pub fn default_variant_in(entries: &'static [RegistryEntry], pipeline: Pipeline, transpose: bool, m: usize) -> Option<&'static RegistryEntry> {
    let c = rmm_candidates(entries, pipeline, transpose);
    let tile = c
        .iter()
        .map(|(_, v)| v.tile_n)
        .filter(|&n| n as usize >= m)
        .min()
        .or_else(|| c.iter().map(|(_, v)| v.tile_n).max())?;
    c.into_iter().filter(|(_, v)| v.tile_n == tile).max_by_key(|(_, v)| v.stages).map(|(e, _)| e)
}

/// [`default_variant_in`] over the generated registry; `Ok(None)` for pipelines without an rmm.
pub fn default_variant(pipeline: ExecPipeline, transpose: bool, m: usize) -> Result<Option<&'static RegistryEntry>, GpuError> {
    let Some(p) = pipeline.rmm() else { return Ok(None) };
    default_variant_in(kernels::VARIANTS, p, transpose, m).map(Some).ok_or_else(|| GpuError::NoVariantFits {
        shape: format!("m={m} transpose={transpose}"),
        reason: format!("the registry has no rmm_{}_*_{} variant", p.as_str(), if transpose { "t" } else { "nt" }),
    })
}

/// Every variant [`default_variant`] can pick (deepest ring per family, orientation and tile)
/// plus the Huffman kernels: what a process compiles ahead, in parallel, before its first call.
pub fn default_set() -> Vec<&'static RegistryEntry> {
    let mut out: Vec<&'static RegistryEntry> = Vec::new();
    for fam in Pipeline::ALL {
        for t in [false, true] {
            let c = rmm_candidates(kernels::VARIANTS, fam, t);
            let mut tiles: Vec<u32> = c.iter().map(|(_, v)| v.tile_n).collect();
            tiles.sort();
            tiles.dedup();
            for tile in tiles {
                out.extend(default_variant_in(kernels::VARIANTS, fam, t, tile as usize));
            }
        }
    }
    out.extend(HuffOutput::ALL.into_iter().filter_map(|o| huff_entry(o).ok()));
    out
}

/// The Huffman kernel writing `output`.
pub fn huff_entry(output: HuffOutput) -> Result<&'static RegistryEntry, GpuError> {
    let v = Variant::Huff(HuffVariant { output });
    kernels::entry(&v).ok_or_else(|| GpuError::UnknownVariant { name: v.to_string() })
}

/// What one call runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// What the caller asked for.
    pub requested: ExecPipeline,
    /// What runs (differs after a fallback).
    pub pipeline: ExecPipeline,
    pub m: usize,
    pub preprocess: Option<&'static RegistryEntry>,
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
/// variant (it must be of the pipeline's family and orientation).
pub fn plan(
    geometry: &Geometry,
    pipeline: ExecPipeline,
    m: usize,
    rmm: Option<&'static RegistryEntry>,
    sm_count: u32,
) -> Result<Plan, GpuError> {
    let transpose = geometry.orientation == crate::codec::Orientation::Transposed;
    let effective = if pipeline.rmm().is_some() && !geometry.rmm_ok() { pipeline.fallback() } else { pipeline };
    if effective.rmm().is_some() && !geometry.rmm_ok() {
        return Err(GpuError::NoVariantFits {
            shape: geometry.shape_text(),
            reason: format!("{pipeline} needs n_out % 128 == 0 and k % 64 == 0"),
        });
    }
    let rmm = match (effective.rmm(), rmm) {
        (None, _) => None,
        (Some(_), None) => default_variant(effective, transpose, m)?,
        (Some(fam), Some(e)) => match e.variant {
            Variant::Rmm(v) if v.pipeline == fam && v.transpose == transpose => Some(e),
            _ => {
                return Err(GpuError::NoVariantFits {
                    shape: geometry.shape_text(),
                    reason: format!("{} is not an rmm_{}_*_{} variant", e.name, fam.as_str(), if transpose { "t" } else { "nt" }),
                })
            }
        },
    };
    let preprocess = effective.preprocess().map(huff_entry).transpose()?;
    let ctas = match rmm {
        Some(e) => {
            let tiles = rmm_tiles(e, geometry.n_out, m);
            let spread = if effective == ExecPipeline::Raw { Spread::WholeSplits } else { Spread::Even };
            choose_ctas((geometry.k / BK as usize) as u32, tiles, sm_count, e.max_kb, spread)
        }
        None => 1,
    };
    Ok(Plan { requested: pipeline, pipeline: effective, m, preprocess, rmm, ctas })
}

/// Output tiles of an rmm launch: `(n_out / BM) × ceil(m / tile_n)`.
pub fn rmm_tiles(e: &RegistryEntry, n_out: usize, m: usize) -> u32 {
    match e.variant {
        Variant::Rmm(v) => tiles_of(v.tile_n, n_out, m),
        Variant::Huff(_) => 0,
    }
}

fn tiles_of(tile_n: u32, n_out: usize, m: usize) -> u32 {
    ((n_out / BM as usize) * m.div_ceil(tile_n as usize)) as u32
}

/// Stream-K workspace bytes and flag bytes a launch of `e` with `ctas` CTAs needs: one f32
/// `[tile_n / 2][RMM_CONSUMER_THREADS]` partial and one u32 flag per CTA, none when every CTA holds
/// whole tiles.
pub fn split_buffers(e: &RegistryEntry, n_out: usize, m: usize, ctas: u32) -> (usize, usize) {
    let Variant::Rmm(v) = e.variant else { return (0, 0) };
    partial_bytes(v.tile_n, tiles_of(v.tile_n, n_out, m), ctas)
}

fn partial_bytes(tile_n: u32, tiles: u32, ctas: u32) -> (usize, usize) {
    if ctas == tiles {
        return (0, 0);
    }
    let ctas = ctas as usize;
    (ctas * (tile_n as usize / 2) * RMM_CONSUMER_THREADS as usize * 4, ctas * 4)
}

/// Upper bound of [`split_buffers`] for a weight `n_out × k` over every tile width, batch up to
/// `max_m` and every `max_kb` cap of the registry, with the CTA counts [`choose_ctas`] picks on
/// `sm_count` SMs.
pub fn split_buffers_bound(n_out: usize, k: usize, max_m: usize, sm_count: u32) -> (usize, usize) {
    split_buffers_bound_in(kernels::VARIANTS, n_out, k, max_m, sm_count)
}

/// [`split_buffers_bound`] over `entries`.
pub fn split_buffers_bound_in(entries: &[RegistryEntry], n_out: usize, k: usize, max_m: usize, sm_count: u32) -> (usize, usize) {
    let kblocks = (k / BK as usize) as u32;
    let mut caps: Vec<Option<u32>> = entries.iter().map(|e| e.max_kb).collect();
    caps.sort();
    caps.dedup();
    let mut bound = (0, 0);
    for tile_n in TILE_N {
        for m in 1..=max_m {
            let tiles = tiles_of(tile_n, n_out, m);
            for &cap in &caps {
                for spread in [Spread::Even, Spread::WholeSplits] {
                    let (w, f) = partial_bytes(tile_n, tiles, choose_ctas(kblocks, tiles, sm_count, cap, spread));
                    bound = (bound.0.max(w), bound.1.max(f));
                }
            }
        }
    }
    bound
}

/// k blocks a CTA takes at least when the tiles are spread over more CTAs (the ring fill amortized).
const MIN_KBLOCKS_PER_CTA: u64 = 4;

/// How [`choose_ctas`] spreads tiles that do not fill the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// One CTA per SM, ranges starting mid-tile: the compressed pipelines, bound by their
    /// consumers' rebuild, gain from every SM (14336×4096, m = 1: 112 → 132 CTAs, palette
    /// 47.0 → 45.8 µs on the H100).
    Even,
    /// Each tile split into the same whole number of ranges: raw, bound by its 2-D TMA boxes'
    /// DRAM traffic, lost from more concurrent streams (same case: 44.8 → 48.3 µs).
    WholeSplits,
}

/// CTAs of a stream-K launch over `tiles × kblocks` units. Whole tiles when they fill the GPU;
/// otherwise up to one CTA per SM as `spread` says (but at least [`MIN_KBLOCKS_PER_CTA`] k
/// blocks each). Never fewer CTAs than tiles (a range then spans at most two tiles), never more
/// than units (none empty), and enough that no range exceeds `max_kb`.
pub fn choose_ctas(kblocks: u32, tiles: u32, sm_count: u32, max_kb: Option<u32>, spread: Spread) -> u32 {
    let units = tiles as u64 * kblocks as u64;
    if units == 0 {
        return tiles.max(1);
    }
    let mut ctas = tiles as u64;
    if tiles < sm_count {
        let fill = (sm_count as u64).min(units / MIN_KBLOCKS_PER_CTA);
        ctas = ctas.max(match spread {
            Spread::Even => fill,
            Spread::WholeSplits => fill / tiles as u64 * tiles as u64,
        });
    }
    if let Some(cap) = max_kb {
        ctas = ctas.max(units.div_ceil(cap.max(1) as u64));
    }
    ctas.min(units) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use unweight_codegen::variant::GridRule;

    fn entries() -> &'static [RegistryEntry] {
        let mut v = Vec::new();
        for pipeline in Pipeline::ALL {
            for transpose in [false, true] {
                for tile_n in [8, 16, 32, 64, 128, 256] {
                    // Deep rings only fit narrow tiles, as the generator's pruning would have it.
                    let max_stages = if tile_n >= 128 { 3 } else { 6 };
                    for stages in 2..=max_stages {
                        let variant = Variant::Rmm(RmmVariant { pipeline, tile_n, stages, transpose });
                        v.push(RegistryEntry {
                            variant,
                            name: Box::leak(variant.to_string().into_boxed_str()),
                            block: [384, 1, 1],
                            grid: GridRule::RmmTiles { rows_per_cta: 128, tile_n },
                            dynamic_smem: 1000,
                            max_kb: (pipeline == Pipeline::Palette).then_some(256),
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
    fn default_picks_the_smallest_covering_tile_and_deepest_ring() {
        let e = entries();
        let name = |p, t, m| default_variant_in(e, p, t, m).unwrap().name;
        assert_eq!(name(Pipeline::Palette, false, 1), "rmm_palette_n8_s6_nt");
        assert_eq!(name(Pipeline::Palette, true, 7), "rmm_palette_n8_s6_t");
        assert_eq!(name(Pipeline::Raw, false, 16), "rmm_raw_n16_s6_nt");
        assert_eq!(name(Pipeline::Exponent, false, 17), "rmm_exponent_n32_s6_nt");
        assert_eq!(name(Pipeline::Exponent, true, 200), "rmm_exponent_n256_s3_t");
        assert_eq!(name(Pipeline::Raw, true, 1024), "rmm_raw_n256_s3_t");
        assert!(default_variant_in(&[], Pipeline::Raw, true, 1).is_none());
    }

    /// The kernel's range of CTA `c` (templates/rmm.cu.tera `range_begin`).
    fn range(c: u32, units: u64, ctas: u32) -> (u64, u64) {
        (units * c as u64 / ctas as u64, units * (c as u64 + 1) / ctas as u64)
    }

    #[test]
    fn ctas_fill_the_gpu_and_respect_limits() {
        // 14336 x 4096 at m = 1: 112 tiles of 64 k blocks spread over all 132 SMs.
        assert_eq!(choose_ctas(64, 112, 132, Some(256), Spread::Even), 132);
        assert_eq!(choose_ctas(64, 112, 132, None, Spread::WholeSplits), 112);
        // 4096 x 14336: 32 tiles of 224 k blocks.
        assert_eq!(choose_ctas(224, 32, 132, None, Spread::Even), 132);
        assert_eq!(choose_ctas(224, 32, 132, None, Spread::WholeSplits), 128);
        // Tiles that fill the GPU run whole, one per CTA.
        assert_eq!(choose_ctas(64, 448, 132, None, Spread::Even), 448);
        // One tile, one k block: one CTA.
        assert_eq!(choose_ctas(1, 1, 132, None, Spread::Even), 1);
        // Small k: at least 4 k blocks per CTA.
        assert_eq!(choose_ctas(8, 1, 132, None, Spread::Even), 2);
        // A MAX_KB cap forces more CTAs even when tiles fill the GPU.
        assert_eq!(choose_ctas(224, 448, 132, Some(64), Spread::Even), 1568);
        // The kernel's preconditions (it traps otherwise): every range non-empty, within one tile's
        // length (so it spans at most two tiles), within the cap.
        for kb in 1..300u32 {
            for tiles in [1u32, 3, 32, 112, 131, 132, 200] {
                for (cap, spread) in [None, Some(16), Some(64)].into_iter().flat_map(|c| [(c, Spread::Even), (c, Spread::WholeSplits)]) {
                    let ctas = choose_ctas(kb, tiles, 132, cap, spread);
                    let units = tiles as u64 * kb as u64;
                    assert!(ctas >= tiles, "kb {kb} tiles {tiles}: {ctas} CTAs");
                    for c in 0..ctas {
                        let (a, b) = range(c, units, ctas);
                        assert!(b > a, "kb {kb} tiles {tiles}: CTA {c} empty");
                        assert!(b - a <= kb as u64, "kb {kb} tiles {tiles}: CTA {c} longer than a tile");
                        assert!((b - 1) / kb as u64 <= a / kb as u64 + 1, "kb {kb} tiles {tiles}: CTA {c} spans 3 tiles");
                        if let Some(cap) = cap {
                            assert!(b - a <= cap as u64, "kb {kb}: {} > MAX_KB {cap}", b - a);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn split_buffer_bound_covers_every_variant() {
        let e = entries();
        for (n_out, k) in [(128, 64), (4096, 14336), (14336, 4096), (128, 64 * 1000)] {
            let (wb, fb) = split_buffers_bound_in(e, n_out, k, 1024, 132);
            for m in [1, 7, 200, 1024] {
                for v in e.iter().filter(|v| matches!(v.variant, Variant::Rmm(_))) {
                    let ctas = choose_ctas((k / 64) as u32, rmm_tiles(v, n_out, m), 132, v.max_kb, Spread::Even);
                    let (w, f) = split_buffers(v, n_out, m, ctas);
                    assert!(w <= wb && f <= fb, "{} {n_out} m={m}", v.name);
                }
            }
        }
        // Whole tiles need no workspace; a spread tile does.
        assert_eq!(split_buffers(&e[0], 14336, 1, 112), (0, 0));
        assert!(split_buffers(&e[0], 14336, 1, 132).0 > 0);
    }

    #[test]
    fn max_kb_comes_from_the_registry_and_matches_the_source() {
        // The registry carries each variant's limit; its kernel declares the same `MAX_KB`.
        for e in kernels::VARIANTS.iter().filter(|e| matches!(e.variant, Variant::Rmm(_))) {
            let declared = format!("MAX_KB = {};", e.max_kb.unwrap_or(0));
            assert!(e.source.contains(&declared), "{}: source lacks `{declared}`", e.name);
            let palette = matches!(e.variant, Variant::Rmm(v) if v.pipeline == Pipeline::Palette);
            assert_eq!(e.max_kb.is_some(), palette, "{}", e.name);
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
        assert_eq!([Exponent.fallback(), PaletteTranscode.fallback(), Raw.fallback()], [FullDecode, FullDecode, Cublas]);
        for p in ExecPipeline::ALL {
            assert!(p.fallback().rmm().is_none() || p == DirectPalette, "{p} falls back to another rmm");
            assert_eq!(p.fallback().residency(), p.residency(), "{p} fallback changes residency");
        }
    }
}
