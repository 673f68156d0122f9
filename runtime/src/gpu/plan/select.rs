//! The default variant per batch size until the tuner exists (the tuner replaces this module),
//! and the ahead-of-time compile set.

use unweight_codegen::variant::{
    ASource, HuffOutput, HuffRefill, HuffVariant, Operand, RegistryEntry, RelayoutElem,
    RelayoutVariant, RmmVariant, Variant,
};

use super::ExecPipeline;
use crate::gpu::error::GpuError;
use crate::gpu::jit::registry;

/// The SS-form rmm variants of `pipeline` and orientation in `entries` (what tiled weights take).
pub fn rmm_candidates(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
) -> Vec<(&'static RegistryEntry, RmmVariant)> {
    rmm_candidates_of(entries, pipeline, transpose, ASource::Smem)
}

/// The rmm variants of `pipeline`, orientation and A-operand form in `entries`.
pub fn rmm_candidates_of(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
    a_src: ASource,
) -> Vec<(&'static RegistryEntry, RmmVariant)> {
    entries
        .iter()
        .filter_map(|e| match e.variant {
            Variant::Rmm(v)
                if v.operand == pipeline && v.transpose == transpose && v.a_src == a_src =>
            {
                Some((e, v))
            }
            _ => None,
        })
        .collect()
}

/// The default variant among `entries` until the autotuner exists: the smallest batch tile
/// that covers `m` in one tile (the largest tile when none does), with the deepest ring the
/// registry kept for that tile (more bytes in flight, which small batches need most).
pub fn default_variant_in(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
    m: usize,
) -> Option<&'static RegistryEntry> {
    default_variant_of(entries, pipeline, transpose, ASource::Smem, m)
}

/// [`default_variant_in`] among the variants of one A-operand form.
pub fn default_variant_of(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
    a_src: ASource,
    m: usize,
) -> Option<&'static RegistryEntry> {
    let c: Vec<_> = rmm_candidates_of(entries, pipeline, transpose, a_src)
        .into_iter()
        .filter(|(_, v)| v.ctas_per_sm == 1)
        .collect();
    let tile = c
        .iter()
        .map(|(_, v)| v.tile_n)
        .filter(|&n| n as usize >= m)
        .min()
        .or_else(|| c.iter().map(|(_, v)| v.tile_n).max())?;
    c.into_iter()
        .filter(|(_, v)| v.tile_n == tile)
        .max_by_key(|(_, v)| v.stages)
        .map(|(e, _)| e)
}

/// [`default_variant_of`] for a weight with `n_out` rows on `sm_count` SMs: an RS default whose
/// output tiles outnumber the SMs (one CTA per SM would run them in two waves: 224 tiles of a
/// 28672-row weight on 132 SMs) gives way to the RS pair of the same tile, whose two CTAs per SM
/// take every tile in one wave (H200, 2026-12-02, 28672×8192: M = 1 98.3 → 91.6 µs, M = 16
/// 101.1 → 93.5 µs; on 112 tiles the pair gained nothing, 31.3 → 32.0 µs).
pub fn default_variant_sized(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
    a_src: ASource,
    m: usize,
    n_out: usize,
    sm_count: u32,
) -> Option<&'static RegistryEntry> {
    let one = default_variant_of(entries, pipeline, transpose, a_src, m)?;
    Some(sized_for(entries, one, m, n_out, sm_count))
}

/// `one` (a size-blind default), or the RS pair of its tile where its tiles outnumber the SMs
/// ([`default_variant_sized`]), or where the weight is a transposed palette one: there the pair
/// won at every tile it has (H200, 2026-12-02, M ≤ 16: 8192×28672ᵀ 97.8 → 92.5 µs, 4096×14336ᵀ
/// 35.6 → 35.1 µs), while raw transposed lost with it (34.3 → 37.2 µs) and standard weights with
/// fewer tiles than SMs lost a little (30.9 → 31.4 µs). The raw twin of a palette plan follows
/// the palette plan, not this rule.
pub fn sized_for(
    entries: &'static [RegistryEntry],
    one: &'static RegistryEntry,
    m: usize,
    n_out: usize,
    sm_count: u32,
) -> &'static RegistryEntry {
    let Variant::Rmm(v) = one.variant else {
        return one;
    };
    let two_waves = super::rmm_tiles(one, n_out, m) > sm_count;
    let transposed_palette = v.transpose && v.operand == Operand::Palette;
    if v.a_src != ASource::Regs || !(two_waves || transposed_palette) {
        return one;
    }
    deepest_pair(entries, v.operand, v.transpose, v.tile_n).unwrap_or(one)
}

/// The deepest-ring RS pair (two CTAs per SM) of a tile width, if the registry has one.
fn deepest_pair(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
    tile_n: u32,
) -> Option<&'static RegistryEntry> {
    rmm_candidates_of(entries, pipeline, transpose, ASource::Regs)
        .into_iter()
        .filter(|(_, w)| w.tile_n == tile_n && w.ctas_per_sm == 2)
        .max_by_key(|(_, w)| w.stages)
        .map(|(e, _)| e)
}

/// [`default_variant_in`] over the generated registry; `Ok(None)` for pipelines without an rmm.
pub fn default_variant(
    pipeline: ExecPipeline,
    transpose: bool,
    m: usize,
) -> Result<Option<&'static RegistryEntry>, GpuError> {
    default_variant_for(pipeline, transpose, ASource::Smem, m)
}

/// [`default_variant`] of one A-operand form: [`ASource::Regs`] for weights uploaded in
/// fragment layout (the RS rmm, the small-batch kernel).
pub fn default_variant_for(
    pipeline: ExecPipeline,
    transpose: bool,
    a_src: ASource,
    m: usize,
) -> Result<Option<&'static RegistryEntry>, GpuError> {
    let Some(p) = pipeline.rmm() else {
        return Ok(None);
    };
    default_variant_of(registry::VARIANTS, p, transpose, a_src, m)
        .map(Some)
        .ok_or_else(|| GpuError::NoVariantFits {
            shape: format!("m={m} transpose={transpose}"),
            reason: format!(
                "the registry has no rmm_{}{}_*_{} variant",
                p.as_str(),
                if a_src == ASource::Regs { "_rs" } else { "" },
                if transpose { "t" } else { "nt" }
            ),
        })
}

/// Every variant [`default_variant`] can pick (deepest ring per family, orientation and tile)
/// plus the Huffman kernels: what a process compiles ahead, in parallel, before its first call.
pub fn default_set() -> Vec<&'static RegistryEntry> {
    let mut out: Vec<&'static RegistryEntry> = Vec::new();
    for a_src in ASource::ALL {
        for fam in Operand::ALL {
            for t in [false, true] {
                let c = rmm_candidates_of(registry::VARIANTS, fam, t, a_src);
                let mut tiles: Vec<u32> = c.iter().map(|(_, v)| v.tile_n).collect();
                tiles.sort();
                tiles.dedup();
                for tile in tiles {
                    out.extend(default_variant_of(
                        registry::VARIANTS,
                        fam,
                        t,
                        a_src,
                        tile as usize,
                    ));
                    // The pair a weight with more tiles than SMs, or a transposed palette one,
                    // takes instead.
                    if a_src == ASource::Regs {
                        out.extend(deepest_pair(registry::VARIANTS, fam, t, tile));
                    }
                }
            }
        }
    }
    out.extend(
        HuffOutput::ALL
            .into_iter()
            .filter_map(|o| huff_entry(o).ok()),
    );
    // The re-layout an easy layer transcoded from Huffman runs at load (its load time then
    // measures the transcode, not a compile).
    out.extend(
        RelayoutElem::ALL
            .into_iter()
            .filter_map(|elem| registry::entry(&Variant::Relayout(RelayoutVariant { elem }))),
    );
    out
}

/// The Huffman kernel writing `output` that the runtime launches ([`HuffRefill::DEFAULT`]).
pub fn huff_entry(output: HuffOutput) -> Result<&'static RegistryEntry, GpuError> {
    huff_variant_entry(output, HuffRefill::DEFAULT)
}

/// The Huffman kernel writing `output` with bitstream refill `refill`.
pub fn huff_variant_entry(
    output: HuffOutput,
    refill: HuffRefill,
) -> Result<&'static RegistryEntry, GpuError> {
    let v = Variant::Huff(HuffVariant { output, refill });
    registry::entry(&v).ok_or_else(|| GpuError::UnknownVariant {
        name: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::entries;
    use super::*;

    #[test]
    fn more_rs_tiles_than_sms_take_the_pair_of_the_same_tile() {
        let e = entries();
        let sized = |n_out, m| {
            default_variant_sized(e, Operand::Palette, false, ASource::Regs, m, n_out, 132)
                .unwrap()
                .name
        };
        // 14336 rows: 112 tiles fit 132 SMs in one wave; 28672 rows: 224 do not.
        assert_eq!(sized(14336, 1), "rmm_palette_rs_n8_s8_nt");
        assert_eq!(sized(28672, 1), "rmm_palette_rs_n8_s6_c2_nt");
        assert_eq!(sized(28672, 16), "rmm_palette_rs_n16_s6_c2_nt");
        // No pair of the tile (n64): the one-CTA default stays.
        assert_eq!(sized(28672, 64), "rmm_palette_rs_n64_s8_nt");
        // Transposed palette weights take the pair of their tile whatever their tile count; raw
        // transposed ones do not (measured slower).
        let sized_t = |op, n_out, m| {
            default_variant_sized(e, op, true, ASource::Regs, m, n_out, 132)
                .unwrap()
                .name
        };
        assert_eq!(
            sized_t(Operand::Palette, 4096, 1),
            "rmm_palette_rs_n8_s6_c2_t"
        );
        assert_eq!(
            sized_t(Operand::Palette, 8192, 16),
            "rmm_palette_rs_n16_s6_c2_t"
        );
        assert_eq!(
            sized_t(Operand::Palette, 8192, 64),
            "rmm_palette_rs_n64_s8_t"
        );
        assert!(!sized_t(Operand::Raw, 4096, 1).contains("_c2_"));
        // The SS form never takes a pair.
        assert_eq!(
            default_variant_sized(e, Operand::Palette, false, ASource::Smem, 1, 28672, 132)
                .unwrap()
                .name,
            "rmm_palette_n8_s6_nt"
        );
        // The pairs are never the size-blind default.
        assert!(
            default_variant_of(e, Operand::Palette, false, ASource::Regs, 1)
                .is_some_and(|d| matches!(d.variant, Variant::Rmm(v) if v.ctas_per_sm == 1))
        );
    }

    #[test]
    fn default_picks_the_smallest_covering_tile_and_deepest_ring() {
        let e = entries();
        let name = |p, t, m| default_variant_in(e, p, t, m).unwrap().name;
        assert_eq!(name(Operand::Palette, false, 1), "rmm_palette_n8_s6_nt");
        assert_eq!(name(Operand::Palette, true, 7), "rmm_palette_n8_s6_t");
        assert_eq!(name(Operand::Raw, false, 16), "rmm_raw_n16_s6_nt");
        assert_eq!(name(Operand::Exponent, false, 17), "rmm_exponent_n32_s6_nt");
        assert_eq!(name(Operand::Exponent, true, 200), "rmm_exponent_n256_s3_t");
        assert_eq!(name(Operand::Raw, true, 1024), "rmm_raw_n256_s3_t");
        assert!(default_variant_in(&[], Operand::Raw, true, 1).is_none());
    }

    #[test]
    fn each_form_picks_only_its_own_variants() {
        let e = entries();
        let name = |p, t, a, m| default_variant_of(e, p, t, a, m).unwrap().name;
        assert_eq!(
            name(Operand::Palette, false, ASource::Regs, 1),
            "rmm_palette_rs_n8_s8_nt"
        );
        assert_eq!(
            name(Operand::Palette, true, ASource::Regs, 64),
            "rmm_palette_rs_n64_s8_t"
        );
        // Past the widest RS tile: the widest RS tile, never an SS variant.
        assert_eq!(
            name(Operand::Raw, false, ASource::Regs, 1024),
            "rmm_raw_rs_n64_s8_nt"
        );
        assert_eq!(
            name(Operand::Palette, false, ASource::Smem, 1),
            "rmm_palette_n8_s6_nt"
        );
        assert!(default_variant_of(e, Operand::Exponent, false, ASource::Regs, 1).is_none());
        assert!(rmm_candidates(e, Operand::Palette, false)
            .iter()
            .all(|(_, v)| v.a_src == ASource::Smem));
    }
}
