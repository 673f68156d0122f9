//! Every registry variant compiles for sm_90a with NVRTC — no GPU needed — with no register
//! spills, no stack frame, no local-memory instructions, SMEM within 227 KB, no C75xx
//! performance warning, and HGMMA in every rmm variant's SASS.
//!
//! Needs NVRTC 13.0 and cuobjdump/nvdisasm: `source $(scripts/setup-tools.sh)`. Without them the
//! test fails (never skips) and says so.

use unweight_codegen::compile;
use unweight_codegen::generate::Generated;
use unweight_codegen::space;

/// The machine has two cores shared by everyone; NVRTC programs are independent, so two threads.
const THREADS: usize = 2;

#[test]
fn every_variant_compiles_for_sm90a_without_spills() {
    if let Err(e) = compile::tools_available() {
        panic!("{e}");
    }
    let (major, minor) = compile::nvrtc_version().unwrap();
    // Exactly what the runtime ships: the registry's sources (codegen_generated.rs checks that
    // generated/ matches the templates).
    let kernels: Vec<Generated> = unweight::gpu::jit::registry::VARIANTS
        .iter()
        .map(|e| Generated {
            variant: e.variant,
            budget: space::check(&e.variant)
                .unwrap_or_else(|p| panic!("{}: registered but pruned: {p}", e.name)),
            source: e.source.to_string(),
            hash: e.source_hash,
        })
        .collect();
    assert_eq!(
        kernels.len(),
        space::kept().len(),
        "the registry lists every kept variant"
    );
    let dir = tempfile::tempdir().unwrap();
    let results = compile::check_all(&kernels, THREADS, dir.path());
    let table = compile::summary_table(&results);
    println!(
        "NVRTC {major}.{minor}, options {:?}\n{table}",
        unweight_codegen::nvrtc::options()
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvrtc_compile_summary.txt");
    std::fs::write(&out, &table).unwrap();
    println!("summary written to {}", out.display());

    let problems: Vec<String> = results
        .iter()
        .flat_map(|c| c.problems.iter().cloned())
        .collect();
    let failing: Vec<String> = results
        .iter()
        .filter(|c| !c.problems.is_empty())
        .map(|c| format!("{}:\n  {}", c.variant, c.ptxas_lines.join("\n  ")))
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} variants fail the compile check:\n{}\n\nptxas reports:\n{}",
        failing.len(),
        results.len(),
        problems.join("\n"),
        failing.join("\n")
    );
    assert_eq!(results.len(), kernels.len());
}

/// The diagnostic build (`UNWEIGHT_PROBE=1`: `-DUNWEIGHT_PROBE`) compiles and exports the
/// timeline `unweight bench` reads back; the normal build carries none of it.
#[test]
fn probe_build_compiles_and_exports_its_timeline() {
    if let Err(e) = compile::tools_available() {
        panic!("{e}");
    }
    let has = |image: &[u8]| image.windows(14).any(|w| w == b"unweight_probe");
    for name in ["rmm_palette_rs_n8_s12_nt", "rmm_raw_n8_s6_nt"] {
        let e = unweight::gpu::jit::registry::find(name).unwrap();
        let mut options = unweight_codegen::nvrtc::options();
        options.retain(|o| !o.starts_with("-DUNWEIGHT_PROBE"));
        let plain = unweight_codegen::nvrtc::compile(name, e.source, &options).unwrap();
        options.push("-DUNWEIGHT_PROBE=1".to_string());
        let probed = unweight_codegen::nvrtc::compile(name, e.source, &options)
            .unwrap_or_else(|f| panic!("{name} with the probe: {f}"));
        assert!(
            !has(&plain.image),
            "{name}: the normal build exports a probe"
        );
        assert!(
            has(&probed.image),
            "{name}: the probe build lacks unweight_probe"
        );
    }
}
