//! insta snapshots of the generator: the whole variant table (every kept variant with parameters,
//! derived constants, launch geometry, SMEM and source hash; every pruned combination with its
//! reason) and the full source of one representative variant per kernel family and orientation.
//! Any template change shows up here for review; see ARCHITECTURE.md ("Reviewing snapshots").
//!
//! `snapshots_are_all_referenced` replaces `cargo insta test --unreferenced=reject`: a snapshot
//! file in tests/tests/snapshots/codegen that no test here produces fails the run.

use std::collections::BTreeSet;

use insta::internals::Content;
use unweight_codegen::generate::{render_set, variant_table};
use unweight_codegen::space::{self, Value, VariantSet};

/// Representative full sources: rmm in both orientations and both A sources, the Huffman family
/// (each refill), both activations (their math differs entirely) and both re-layouts (nibble
/// and byte element reads differ).
const SOURCES: [&str; 11] = [
    "rmm_palette_n64_s4_nt",
    "rmm_palette_n64_s4_t",
    "rmm_palette_rs_n8_s8_nt",
    "rmm_palette_rs_n8_s8_t",
    "huff_bf16_word",
    "huff_bf16_vec4",
    "huff_palette_sub256",
    "act_silu_mul",
    "act_gelu",
    "relayout_nibble",
    "relayout_byte",
];
const TABLE: &str = "variant_table";
const SNAPSHOT_DIR: &str = "snapshots/codegen";

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.set_snapshot_path(SNAPSHOT_DIR);
    s
}

#[test]
fn variant_table_snapshot() {
    let kernels = render_set(&VariantSet::All).unwrap();
    let pruned = space::pruned();
    let mut s = settings();
    s.set_raw_info(&Content::Map(vec![
        ("kernels".into(), (kernels.len() as u64).into()),
        ("pruned".into(), (pruned.len() as u64).into()),
    ]));
    s.bind(|| insta::assert_snapshot!(TABLE, variant_table(&kernels, &pruned)));
}

#[test]
fn representative_sources_snapshot() {
    let set = VariantSet::Globs(SOURCES.iter().map(|s| s.to_string()).collect());
    let kernels = render_set(&set).unwrap();
    assert_eq!(
        kernels.len(),
        SOURCES.len(),
        "every representative variant is kept"
    );
    for k in kernels {
        let mut s = settings();
        let params = k.budget.constants().into_iter().map(|(key, v)| {
            let v: Content = match v {
                Value::Int(x) => x.into(),
                Value::Bool(b) => b.into(),
                Value::Str(t) => t.into(),
            };
            (key.into(), v)
        });
        s.set_raw_info(&Content::Map(params.collect()));
        let name = k.variant.to_string();
        s.bind(|| insta::assert_snapshot!(name, k.source));
    }
}

#[test]
fn snapshots_are_all_referenced() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(SNAPSHOT_DIR);
    let expected: BTreeSet<String> = SOURCES
        .iter()
        .chain([&TABLE])
        .map(|n| format!("{n}.snap"))
        .collect();
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // Pending `.snap.new` files belong to a review in progress; they fail the snapshot tests themselves.
        if name.ends_with(".snap") && !expected.contains(&name) {
            stray.push(name);
        }
    }
    assert!(
        stray.is_empty(),
        "unreferenced snapshots in {}: {stray:?}; delete them",
        dir.display()
    );
}
