//! generated/ is fresh, its registry parses back and matches the variant space, and every variant
//! name round-trips through `FromStr`.

use std::collections::BTreeSet;

use unweight_codegen::generate::{generate, generated_dir, render_set, Mode};
use unweight_codegen::space::{self, VariantSet};
use unweight_codegen::variant::{HuffOutput, HuffRefill, Operand, Variant};

#[test]
fn generated_is_fresh() {
    if let Err(e) = generate(Mode::Check) {
        panic!("{e}");
    }
}

#[test]
fn names_round_trip() {
    let mut seen = BTreeSet::new();
    for v in space::variants() {
        let name = v.to_string();
        assert_eq!(name.parse::<Variant>(), Ok(v), "{name}");
        assert!(seen.insert(name.clone()), "duplicate name {name}");
    }
    for bad in [
        "rmm_palette_n064_s4_t",
        "rmm_palette_n64_s4",
        "rmm_palette_rs_n8_s6_c1_nt",
        "rmm_palette_rs_n8_s6_c02_nt",
        "rmm_palette_n8_s6_c2_nt",
        "huff_bf16_x",
        "huff_bf16",
        "act_silu",
        "act_gelu_",
        "act_",
        "rmm_Palette_n64_s4_t",
        "",
    ] {
        assert!(bad.parse::<Variant>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn space_covers_the_acceptance_grid() {
    let kept: Vec<Variant> = space::kept().into_iter().map(|(v, _)| v).collect();
    for p in Operand::ALL {
        for t in [false, true] {
            let rmm: Vec<_> = kept
                .iter()
                .filter_map(|v| match v {
                    Variant::Rmm(r) if r.operand == p && r.transpose == t => Some(*r),
                    _ => None,
                })
                .collect();
            let widths: BTreeSet<u32> = rmm.iter().map(|r| r.tile_n).collect();
            let depths: BTreeSet<u32> = rmm.iter().map(|r| r.stages).collect();
            assert!(
                widths.len() >= 4 && depths.len() >= 3,
                "{p:?} transpose={t}: {widths:?} x {depths:?}"
            );
        }
    }
    assert_eq!(
        kept.iter()
            .filter(|v| matches!(v, Variant::Huff(_)))
            .count(),
        HuffOutput::ALL.len() * HuffRefill::ALL.len(),
        "every Huffman output with every refill"
    );
    assert_eq!(
        kept.iter().filter(|v| matches!(v, Variant::Act(_))).count(),
        2
    );
    assert_eq!(
        kept.iter()
            .filter(|v| matches!(v, Variant::Relayout(_)))
            .count(),
        2,
        "a re-layout per element width (nibble, byte)"
    );
    // Nothing vanishes silently: every combination is either kept or pruned with a reason.
    assert_eq!(
        space::kept().len() + space::pruned().len(),
        space::variants().count()
    );
    assert!(space::pruned()
        .iter()
        .all(|(_, p)| !p.to_string().is_empty()));
}

#[test]
fn smoke_set_touches_every_branch() {
    let smoke = render_set(&VariantSet::Smoke).unwrap();
    let names: BTreeSet<String> = smoke.iter().map(|g| g.variant.to_string()).collect();
    for n in [
        "rmm_raw_n64_s4_nt",
        "rmm_exponent_n64_s4_t",
        "rmm_palette_n8_s2_nt",
        "rmm_palette_n256_s2_t",
        "huff_bf16_word",
        "huff_bf16_vec4",
        "act_silu_mul",
        "act_gelu",
        "relayout_nibble",
        "relayout_byte",
    ] {
        assert!(names.contains(n), "smoke lacks {n}: {names:?}");
    }
}

/// One registry entry as parsed back from generated/registry.rs.
#[derive(Debug, PartialEq)]
struct Entry {
    variant: String,
    name: String,
    block: String,
    grid: String,
    dynamic_smem: u32,
    max_kb: String,
    source_hash: u64,
    source_file: String,
}

fn expr_string(e: &syn::Expr) -> String {
    use quote::ToTokens;
    e.to_token_stream()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn int_lit(e: &syn::Expr) -> u64 {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().unwrap(),
        other => panic!("expected an integer literal, got {}", expr_string(other)),
    }
}

fn str_lit(e: &syn::Expr) -> String {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s.value(),
        syn::Expr::Macro(m) => {
            assert!(
                m.mac.path.is_ident("include_str"),
                "only include_str! is expected"
            );
            m.mac.parse_body::<syn::LitStr>().unwrap().value()
        }
        other => panic!("expected a string, got {}", expr_string(other)),
    }
}

fn parse_registry() -> Vec<Entry> {
    let text = std::fs::read_to_string(generated_dir().join("registry.rs")).unwrap();
    let file = syn::parse_file(&text).expect("registry.rs parses");
    assert_eq!(
        file.items.len(),
        1,
        "registry.rs holds exactly the VARIANTS static"
    );
    let syn::Item::Static(st) = &file.items[0] else {
        panic!("not a static")
    };
    assert_eq!(st.ident, "VARIANTS");
    let syn::Expr::Reference(r) = &*st.expr else {
        panic!("VARIANTS is not &[...]")
    };
    let syn::Expr::Array(arr) = &*r.expr else {
        panic!("VARIANTS is not &[...]")
    };
    arr.elems
        .iter()
        .map(|e| {
            let syn::Expr::Struct(s) = e else {
                panic!("entry is not a struct literal")
            };
            assert!(s.path.is_ident("RegistryEntry"));
            let field = |name: &str| {
                &s.fields
                    .iter()
                    .find(|f| matches!(&f.member, syn::Member::Named(i) if i == name))
                    .unwrap_or_else(|| panic!("entry lacks {name}"))
                    .expr
            };
            Entry {
                variant: expr_string(field("variant")),
                name: str_lit(field("name")),
                block: expr_string(field("block")),
                grid: expr_string(field("grid")),
                dynamic_smem: int_lit(field("dynamic_smem")) as u32,
                max_kb: expr_string(field("max_kb")),
                source_hash: int_lit(field("source_hash")),
                source_file: str_lit(field("source")),
            }
        })
        .collect()
}

#[test]
fn registry_parses_back_and_matches_the_space() {
    let entries = parse_registry();
    let kept = space::kept();
    assert_eq!(
        entries.len(),
        kept.len(),
        "one registry entry per kept variant"
    );
    for (e, (v, budget)) in entries.iter().zip(&kept) {
        let name = v.to_string();
        assert_eq!(e.name, name, "registry order = variant order");
        assert_eq!(e.name.parse::<Variant>().unwrap(), *v);
        assert_eq!(e.source_file, format!("{name}.cu"));
        let [x, y, z] = budget.block();
        assert_eq!(e.block, format!("[{x} , {y} , {z}]"), "{name}");
        assert_eq!(e.dynamic_smem, budget.dynamic_smem(), "{name}");
        let max_kb = match budget.max_kb() {
            Some(kb) => format!("Some ({kb})"),
            None => "None".to_string(),
        };
        assert_eq!(e.max_kb, max_kb, "{name}: max_kb");
        let source = std::fs::read_to_string(generated_dir().join(&e.source_file)).unwrap();
        assert_eq!(
            e.source_hash,
            xxhash_rust::xxh64::xxh64(source.as_bytes(), 0),
            "{name}: source_hash"
        );
        assert!(
            source.contains("extern \"C\" __global__"),
            "{name}: no kernel"
        );
        assert!(
            source.contains(&format!("\n{name}(")) || source.contains(&format!(" {name}(")),
            "{name}: symbol"
        );
        match v {
            Variant::Rmm(r) => {
                assert!(
                    e.grid.contains("RmmTiles")
                        && e.grid.contains(&format!("tile_n : {}", r.tile_n)),
                    "{}",
                    e.grid
                );
                let want = format!(
                    "tile_n : {} , stages : {} , transpose : {}",
                    r.tile_n, r.stages, r.transpose
                );
                assert!(e.variant.contains(&want), "{name}: {}", e.variant);
            }
            Variant::Huff(_) => assert!(e.grid.contains("HuffChunks"), "{}", e.grid),
            Variant::Act(_) => assert!(e.grid.contains("Elementwise"), "{}", e.grid),
            Variant::Relayout(_) => assert!(e.grid.contains("PerBlock"), "{}", e.grid),
        }
    }
}

#[test]
fn every_generated_file_starts_with_the_header() {
    for (v, _) in space::kept() {
        let source = std::fs::read_to_string(generated_dir().join(format!("{v}.cu"))).unwrap();
        assert!(
            source.starts_with("// Generated by `cargo xtask gen-kernels` from templates/"),
            "{v}"
        );
        assert!(
            !source.contains('\r') && source.ends_with('\n') && !source.ends_with("\n\n"),
            "{v}: line endings"
        );
        assert!(
            !source.contains("#include"),
            "{v}: generated kernels are self-contained"
        );
    }
}
