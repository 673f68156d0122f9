//! The default variant per batch size until the tuner exists (the tuner replaces this module),
//! and the ahead-of-time compile set.

use unweight_codegen::variant::{
    HuffOutput, HuffRefill, HuffVariant, Operand, RegistryEntry, RmmVariant, Variant,
};

use super::ExecPipeline;
use crate::gpu::error::GpuError;
use crate::gpu::jit::registry;

/// The rmm variants of `pipeline` and orientation in `entries`.
pub fn rmm_candidates(
    entries: &'static [RegistryEntry],
    pipeline: Operand,
    transpose: bool,
) -> Vec<(&'static RegistryEntry, RmmVariant)> {
    entries
        .iter()
        .filter_map(|e| match e.variant {
            Variant::Rmm(v) if v.operand == pipeline && v.transpose == transpose => Some((e, v)),
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
    let c = rmm_candidates(entries, pipeline, transpose);
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

/// [`default_variant_in`] over the generated registry; `Ok(None)` for pipelines without an rmm.
pub fn default_variant(
    pipeline: ExecPipeline,
    transpose: bool,
    m: usize,
) -> Result<Option<&'static RegistryEntry>, GpuError> {
    let Some(p) = pipeline.rmm() else {
        return Ok(None);
    };
    default_variant_in(registry::VARIANTS, p, transpose, m)
        .map(Some)
        .ok_or_else(|| GpuError::NoVariantFits {
            shape: format!("m={m} transpose={transpose}"),
            reason: format!(
                "the registry has no rmm_{}_*_{} variant",
                p.as_str(),
                if transpose { "t" } else { "nt" }
            ),
        })
}

/// Every variant [`default_variant`] can pick (deepest ring per family, orientation and tile)
/// plus the Huffman kernels: what a process compiles ahead, in parallel, before its first call.
pub fn default_set() -> Vec<&'static RegistryEntry> {
    let mut out: Vec<&'static RegistryEntry> = Vec::new();
    for fam in Operand::ALL {
        for t in [false, true] {
            let c = rmm_candidates(registry::VARIANTS, fam, t);
            let mut tiles: Vec<u32> = c.iter().map(|(_, v)| v.tile_n).collect();
            tiles.sort();
            tiles.dedup();
            for tile in tiles {
                out.extend(default_variant_in(
                    registry::VARIANTS,
                    fam,
                    t,
                    tile as usize,
                ));
            }
        }
    }
    out.extend(
        HuffOutput::ALL
            .into_iter()
            .filter_map(|o| huff_entry(o).ok()),
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
}
