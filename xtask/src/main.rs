//! Developer commands: `cargo xtask <command>` (alias in .cargo/config.toml). Thin: parses flags and
//! calls into the crates.
//!
//! - `gen-kernels [--check] [--filter SET]`: render templates/ into generated/ (or check it is fresh).
//! - `check-kernels [--filter SET] [--jobs N] [--verbose] [--keep DIR]`: compile kernels with NVRTC for
//!   sm_90a and print ptxas/SASS facts per variant (needs `source $(scripts/setup-tools.sh)`); `--keep`
//!   leaves each variant's CUBIN and SASS text (`<name>.cubin`, `<name>.sass`) in DIR for reading.
//!
//! - `bench-codec [--runs N] [--out DIR] [--minilm PATH] [--keep DIR] [--baseline BIN]`: CPU codec throughput (xtask/src/bench_codec.rs).
//!
//! SET is `all` (default), `smoke`, or comma-separated name globs such as `rmm_palette_*_t`.

mod bench_codec;

use std::process::ExitCode;

use unweight_codegen::compile;
use unweight_codegen::generate::{self, Mode};
use unweight_codegen::space::VariantSet;

const USAGE: &str = "usage: cargo xtask gen-kernels [--check] [--filter SET]\n\
                     \x20      cargo xtask check-kernels [--filter SET] [--jobs N] [--verbose] [--keep DIR]\n\
                     \x20      cargo xtask bench-codec [--runs N] [--out DIR] [--minilm PATH] [--keep DIR] [--baseline BIN]\n\
                     SET: all (default) | smoke | comma-separated globs, e.g. 'rmm_palette_*_t,huff_*'";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen-kernels") => gen_kernels(&args[1..]),
        Some("check-kernels") => check_kernels(&args[1..]),
        Some("bench-codec") => {
            bench_codec::run(&args[1..]).map_err(|e| format!("bench-codec: {e:#}"))
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

struct Flags {
    check: bool,
    verbose: bool,
    set: VariantSet,
    jobs: usize,
    keep: Option<std::path::PathBuf>,
}

fn flags(args: &[String], allowed: &[&str]) -> Result<Flags, String> {
    let mut f = Flags {
        check: false,
        verbose: false,
        set: VariantSet::All,
        jobs: 2,
        keep: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !allowed.contains(&a.as_str()) {
            return Err(format!("unknown flag {a:?}\n{USAGE}"));
        }
        match a.as_str() {
            "--check" => f.check = true,
            "--verbose" => f.verbose = true,
            "--filter" => {
                f.set = VariantSet::parse(
                    it.next()
                        .ok_or(format!("--filter needs a value\n{USAGE}"))?,
                )
            }
            "--jobs" => {
                let v = it.next().ok_or(format!("--jobs needs a value\n{USAGE}"))?;
                f.jobs = v
                    .parse()
                    .map_err(|_| format!("--jobs {v:?}: not a number"))?;
            }
            "--keep" => {
                let v = it
                    .next()
                    .ok_or(format!("--keep needs a directory\n{USAGE}"))?;
                f.keep = Some(v.into());
            }
            _ => unreachable!("checked against `allowed`"),
        }
    }
    Ok(f)
}

fn gen_kernels(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["--check", "--filter"])?;
    let mode = if f.check { Mode::Check } else { Mode::Write };
    let report = generate::generate_set(mode, &f.set).map_err(|e| e.to_string())?;
    for (v, reason) in &report.pruned {
        println!("pruned {v}: {reason}");
    }
    for w in &report.written {
        println!("wrote {w}");
    }
    for d in &report.deleted {
        println!("deleted {d}");
    }
    if !report.registry {
        println!("(subset: registry.rs, manifest.txt and the orphan check need the full set; run without --filter)");
    }
    let verb = if f.check { "checked" } else { "generated" };
    println!(
        "{verb} {} kernels ({} combinations pruned); generated/ is up to date",
        report.kernels,
        report.pruned.len()
    );
    Ok(())
}

fn check_kernels(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["--filter", "--jobs", "--verbose", "--keep"])?;
    compile::tools_available()?;
    let kernels = generate::render_set(&f.set).map_err(|e| e.to_string())?;
    let dir = match &f.keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("--keep {}: {e}", d.display()))?;
            d.clone()
        }
        None => compile::scratch_dir("check-kernels")?,
    };
    let results = compile::check_all(&kernels, f.jobs, &dir);
    if f.keep.is_some() {
        // The CUBINs stay where check_all wrote them; disassemble each once more beside it for reading.
        for c in &results {
            let name = c.variant.to_string();
            let Ok(cubin) = std::fs::read(dir.join(format!("{name}.cubin"))) else {
                continue; // it did not compile: its problem is printed below
            };
            let text = compile::sass(&name, &cubin, &dir)?;
            let path = dir.join(format!("{name}.sass"));
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    print!("{}", compile::summary_table(&results));
    let mut failed = 0;
    for c in &results {
        if f.verbose || !c.problems.is_empty() {
            println!("--- {}", c.variant);
            for l in &c.ptxas_lines {
                println!("  {l}");
            }
        }
        for p in &c.problems {
            println!("  PROBLEM {p}");
        }
        failed += usize::from(!c.problems.is_empty());
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {} kernels failed the compile check",
            results.len()
        ));
    }
    println!(
        "{} kernels compiled for sm_90a: no spills, no stack, no local memory, HGMMA in every rmm",
        results.len()
    );
    Ok(())
}
