//! `inspect`.

use std::path::Path;
use std::process::ExitCode;

use super::{progress, table};
use crate::bundle::inspect::{inspect, Stored, TensorStats};
use crate::bundle::Bundle;
use crate::model::ModelDir;

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

/// BF16 bytes as stored, with huffman and with palette.
type Totals = (usize, usize, usize);

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    if !path.is_dir() {
        let bundle = Bundle::open(path)?;
        let bar = progress::bytes("inspecting", bundle.bytes().len() as u64);
        let r = inspect_file(&bundle, &bar);
        bar.finish_and_clear();
        r?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = ModelDir::scan(path)?;
    let bundles = dir
        .shards
        .iter()
        .map(|rel| Bundle::open(&dir.root.join(rel)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = bundles.iter().map(|b| b.bytes().len() as u64).sum();
    let bar = progress::bytes("inspecting", total);
    let mut rows = Vec::new();
    let mut sum = (0, 0, 0);
    for (rel, b) in dir.shards.iter().zip(&bundles) {
        if !rows.is_empty() {
            println!();
        }
        println!("== {} ==", rel.display());
        let t = match inspect_file(b, &bar) {
            Ok(t) => t,
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        };
        sum = (sum.0 + t.0, sum.1 + t.1, sum.2 + t.2);
        rows.push(totals_row(rel.display().to_string(), t));
    }
    bar.finish_and_clear();
    rows.push(totals_row(format!("total ({} shards)", rows.len()), sum));
    println!();
    println!(
        "{}: model directory, {} shards, {} index files, {} other files",
        path.display(),
        dir.shards.len(),
        dir.indexes.len(),
        dir.others.len()
    );
    print!(
        "{}",
        table::render(
            &["shard", "BF16", "huffman", "saved", "palette", "saved"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn totals_row(name: String, (b, h, p): Totals) -> Vec<String> {
    vec![
        name,
        table::bytes(b),
        table::bytes(h),
        table::percent(b as f64 - h as f64, b as f64),
        table::bytes(p),
        table::percent(b as f64 - p as f64, b as f64),
    ]
}

/// Prints one file's statistics; returns its totals.
fn inspect_file(bundle: &Bundle, bar: &indicatif::ProgressBar) -> anyhow::Result<Totals> {
    let file = bundle.path.as_path();
    let stats = inspect(bundle, &|n| bar.inc(n))?;
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
    let mut totals = (0, 0, 0);
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
        totals = (b, h, p);
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
    Ok(totals)
}
