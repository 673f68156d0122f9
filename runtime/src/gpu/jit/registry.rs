//! The generated kernel registry (`cargo xtask gen-kernels` writes generated/registry.rs).
//!
//! Every variant's name, launch geometry, shared memory and CUDA source come from there, so the
//! runtime never keeps a hand-synced list of kernels.

use unweight_codegen::variant::*;

include!("../../../../generated/registry.rs");

/// The registry entry named `name` (a variant name such as `rmm_palette_n64_s4_t`).
pub fn find(name: &str) -> Option<&'static RegistryEntry> {
    VARIANTS.iter().find(|e| e.name == name)
}

/// The registry entry of `variant`.
pub fn entry(variant: &Variant) -> Option<&'static RegistryEntry> {
    VARIANTS.iter().find(|e| e.variant == *variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_match_the_variant() {
        let mut seen = std::collections::HashSet::new();
        for e in VARIANTS {
            assert!(seen.insert(e.name), "duplicate registry name {}", e.name);
            assert_eq!(e.name, e.variant.to_string());
            assert!(std::ptr::eq(find(e.name).unwrap(), e));
            assert!(
                e.source.contains(&format!("void {}", e.name)) || e.source.contains(e.name),
                "{} source lacks its symbol",
                e.name
            );
        }
    }

    #[test]
    fn every_activation_kernel_is_registered() {
        for op in ActOp::ALL {
            let v = Variant::Act(ActVariant { op });
            let e = entry(&v).unwrap_or_else(|| panic!("{v} missing from generated/registry.rs"));
            assert!(matches!(e.grid, GridRule::Elementwise { .. }), "{v}");
        }
    }

    #[test]
    fn every_huffman_kernel_is_registered() {
        for output in HuffOutput::ALL {
            for refill in HuffRefill::ALL {
                let v = Variant::Huff(HuffVariant { output, refill });
                assert!(
                    entry(&v).is_some(),
                    "{v} missing from generated/registry.rs"
                );
            }
        }
    }
}
