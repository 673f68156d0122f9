//! `demo`: the synthetic Llama-3.1-8B MLP layer, compressed both ways and verified.

use std::process::ExitCode;
use std::time::Instant;

use super::compress::report_table;
use super::table;
use crate::codec::Encoding;
use crate::demo::{self, DemoLayer};

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

/// The GPU half of the demo (fused decode + matmul on an sm_90 GPU) runs from here once the GPU
/// runtime is linked into the tool; the CPU half above is complete on its own.
fn gpu_demo(_layer: &DemoLayer) -> anyhow::Result<()> {
    Ok(())
}
