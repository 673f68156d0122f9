//! `demo`: the synthetic Llama-3.1-8B MLP layer, compressed both ways and verified on the CPU,
//! then (on an sm_90 GPU) the fused direct-palette matmul checked and timed beside cuBLAS.

use std::process::ExitCode;
use std::time::Instant;

use super::compress::report_table;
use super::table;
use crate::codec::Encoding;
use crate::demo::{self, DemoLayer};
use crate::gpu;
use crate::gpu::harness::demo::{DemoOptions, Report};

pub fn run(seed: u64, (hidden, intermediate): (usize, usize)) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let layer = DemoLayer::build(seed, hidden, intermediate);
    let what = if (hidden, intermediate) == (demo::HIDDEN, demo::INTERMEDIATE) {
        "a Llama-3.1-8B-shaped MLP layer"
    } else {
        "an MLP layer"
    };
    println!(
        "Built {what} in memory (seed {seed}): gate_proj, up_proj {intermediate}×{hidden}, down_proj {hidden}×{intermediate}, {} of BF16 ({:.1} s)",
        table::bytes(layer.bytes()),
        start.elapsed().as_secs_f64()
    );
    let stats = demo::measure(&layer)?;
    println!(
        "Measured: exponent entropy {:.2} bits/element, {} distinct exponents, {} of 64-element groups escape the 16-exponent palette",
        stats.exponent_entropy,
        stats.distinct_exponents,
        table::percent(stats.escape_rate, 1.0)
    );
    for encoding in [Encoding::Huffman, Encoding::Palette] {
        let results = demo::round_trip(&layer, encoding)?;
        let bytes: f64 = results.iter().map(|r| r.report.bytes_before as f64).sum();
        let (c, d): (f64, f64) = results.iter().fold((0.0, 0.0), |(c, d), r| {
            (c + r.compress_s, d + r.decompress_s)
        });
        println!();
        println!("{encoding}: every tensor decoded bit-exact (hash checked); compress {:.2} GB/s, decompress {:.2} GB/s of BF16",
            bytes / c / 1e9, bytes / d / 1e9);
        let reports: Vec<_> = results.into_iter().map(|r| r.report).collect();
        print!("{}", report_table(&reports));
    }
    gpu_demo(&layer)?;
    println!();
    println!("Done in {:.1} s.", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The GPU half: the fused direct-palette matmul beside cuBLAS on an sm_90 GPU, or one line
/// saying why it is skipped (no driver, no device, not Hopper).
fn gpu_demo(layer: &DemoLayer) -> anyhow::Result<()> {
    println!();
    let dev = match gpu::harness::demo::open()? {
        Ok(dev) => dev,
        Err(reason) => {
            println!("GPU part skipped: {reason}");
            return Ok(());
        }
    };
    let opts = DemoOptions::default();
    let report = gpu::harness::demo::run_on(&dev, layer, &opts)?;
    print_report(&report);
    anyhow::ensure!(
        report.passed(),
        "GPU check failed for {} case(s) (x seed {}): {}",
        report.failures.len(),
        report.seed,
        report.failures.join("; ")
    );
    stack_demo(&dev, layer)
}

/// Layers of the demo's MLP stack: the demo layer repeated (each copy uploaded on its own).
const STACK_LAYERS: usize = 2;

/// A small stack of the demo layer, all easy / mixed / all hard, timed beside cuBLAS.
fn stack_demo(dev: &std::sync::Arc<gpu::GpuDevice>, layer: &DemoLayer) -> anyhow::Result<()> {
    use crate::codec::Orientation;
    use crate::gpu::harness::mlp::{Matrix, StackCase};
    let t = &layer.tensors;
    if let Some(d) = t
        .iter()
        .find(|d| d.shape[0] % 128 != 0 || d.shape[1] % 64 != 0)
    {
        println!(
            "MLP stack part skipped: {} is {}x{}; palette residency needs rows % 128 == 0 and columns % 64 == 0",
            d.name, d.shape[0], d.shape[1]
        );
        return Ok(());
    }
    let case = StackCase {
        name: "demo".into(),
        act: unweight_codegen::variant::ActOp::SiluMul,
        layers: (0..STACK_LAYERS)
            .map(|l| {
                t.iter()
                    .map(|d| Matrix {
                        name: format!("layers.{l}.{}", d.name),
                        bits: d.bits.clone(),
                        n_out: d.shape[0],
                        k: d.shape[1],
                        // The down projection is stored transposed, as DESIGN.md has it.
                        orientation: if d.name.contains("down") {
                            Orientation::Transposed
                        } else {
                            Orientation::Standard
                        },
                    })
                    .collect()
            })
            .collect(),
    };
    let rows = gpu::harness::bench_mlp::demo(dev, &case, &[1, 16])?;
    println!();
    println!(
        "MLP stack of {STACK_LAYERS} such layers (SwiGLU), one forward beside a cuBLAS BF16 stack:"
    );
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.layout.clone(),
                r.m.to_string(),
                format!("{:.1}", r.us),
                format!("{:.1}", r.cublas_us),
                format!("{:.2}x", r.cublas_us / r.us),
                format!(
                    "{} / {}",
                    table::bytes(r.resident_bytes),
                    table::bytes(r.bf16_bytes)
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "layout",
                "M",
                "stack µs",
                "cuBLAS µs",
                "speed vs cuBLAS",
                "resident / BF16"
            ],
            &rows
        )
    );
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "Fused direct-palette matmul y = x·Wᵀ beside cuBLAS BF16 on {} (CUDA events, median of {} after {} warm-up; x seed {}):",
        r.device, r.iters, r.warmup, r.seed
    );
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            vec![
                row.projection.clone(),
                format!("{}×{}", row.n_out, row.k),
                row.orientation.to_string(),
                row.m.to_string(),
                format!("{} ×{} CTAs", row.variant, row.ctas),
                format!("{:.1}", row.palette_us),
                format!("{:.1}", row.cublas_us),
                format!("{:.2}x", row.cublas_us / row.palette_us),
                format!(
                    "{} / {}",
                    table::bytes(row.palette_bytes),
                    table::bytes(row.bf16_bytes)
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "projection",
                "shape",
                "orientation",
                "M",
                "kernel",
                "palette µs",
                "cuBLAS µs",
                "speed vs cuBLAS",
                "read: palette / BF16"
            ],
            &rows
        )
    );
    for s in &r.skipped {
        println!("skipped {s}");
    }
    if r.passed() {
        let worst = r.rows.iter().map(|row| row.rel_err).fold(0.0, f64::max);
        println!(
            "Every fused result bit-identical to the raw-BF16 kernel of the same tiling; worst relative Frobenius error vs cuBLAS {worst:.1e} (GPU part {:.1} s).",
            r.seconds
        );
    } else {
        for f in &r.failures {
            println!("FAILED {f}");
        }
    }
}
