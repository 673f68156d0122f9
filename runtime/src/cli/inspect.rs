//! `inspect`.

use std::path::Path;
use std::process::ExitCode;

use super::{progress, table};
use crate::bundle::inspect::{inspect, Stored, TensorStats};
use crate::bundle::Bundle;

/// Exponents holding at least 0.1% of the elements, most frequent first, then the rest summed.
fn histogram_line(s: &TensorStats) -> String {
    let n = s.elements.max(1) as f64;
    let mut items: Vec<(usize, u64)> = s
        .histogram
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, c)| c > 0)
        .collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let (shown, rest): (Vec<_>, Vec<_>) = items.iter().partition(|&&(_, c)| c as f64 / n >= 1e-3);
    let mut parts: Vec<String> = shown
        .iter()
        .map(|&&(e, c)| format!("{e}:{:.1}%", 100.0 * c as f64 / n))
        .collect();
    if !rest.is_empty() {
        let r: u64 = rest.iter().map(|&&(_, c)| c).sum();
        parts.push(format!(
            "{} others:{:.3}%",
            rest.len(),
            100.0 * r as f64 / n
        ));
    }
    parts.join(" ")
}

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(file)?;
    let bar = progress::bytes("inspecting", bundle.bytes().len() as u64);
    let stats = inspect(&bundle, &|n| bar.inc(n));
    bar.finish_and_clear();
    let stats = stats?;
    let kind = if bundle.layout.is_bundle() {
        "unweight bundle"
    } else {
        "safetensors file"
    };
    println!(
        "{}: {kind}, {} tensors ({} compressed), {} BF16 tensors inspected",
        file.display(),
        bundle.layout.plain.len() + bundle.layout.compressed.len(),
        bundle.layout.compressed.len(),
        stats.len()
    );
    let mut rows = Vec::new();
    for s in &stats {
        println!();
        let stored = match s.stored {
            Stored::Plain => "plain BF16".to_string(),
            Stored::Compressed(e, o) => format!("compressed, {e}, {o}"),
        };
        println!("{} [{}] {stored}", s.name, table::shape(&s.shape));
        println!(
            "  exponent entropy {:.3} bits; escape groups {} of {} ({})",
            s.entropy,
            s.escapes,
            s.groups,
            table::percent(s.escapes as f64, s.groups as f64)
        );
        println!("  palette {:?}", s.palette);
        println!("  exponents {}", histogram_line(s));
        println!(
            "  bytes: bf16 {}, stored {}, huffman {} ({} saved), palette {} ({} saved)",
            s.bytes_bf16,
            s.bytes_stored,
            s.bytes_huffman,
            table::percent(
                s.bytes_bf16 as f64 - s.bytes_huffman as f64,
                s.bytes_bf16 as f64
            ),
            s.bytes_palette,
            table::percent(
                s.bytes_bf16 as f64 - s.bytes_palette as f64,
                s.bytes_bf16 as f64
            ),
        );
        rows.push(s);
    }
    if !rows.is_empty() {
        let sum = |f: fn(&TensorStats) -> usize| rows.iter().map(|s| f(s)).sum::<usize>();
        let (b, h, p) = (
            sum(|s| s.bytes_bf16),
            sum(|s| s.bytes_huffman),
            sum(|s| s.bytes_palette),
        );
        println!();
        println!(
            "total: bf16 {}, huffman {} ({} saved), palette {} ({} saved)",
            table::bytes(b),
            table::bytes(h),
            table::percent(b as f64 - h as f64, b as f64),
            table::bytes(p),
            table::percent(b as f64 - p as f64, b as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}
