//! `compress` and `decompress`.

use std::path::Path;
use std::process::ExitCode;

use super::{progress, table};
use crate::bundle::{self, CompressOptions, Selection, TensorReport};
use crate::codec::Encoding;

/// The per-tensor table with a total row, as `compress` and `demo` print it.
pub fn report_table(rows: &[TensorReport]) -> String {
    let mut body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                table::shape(&r.shape),
                r.encoding.to_string(),
                r.orientation.to_string(),
                r.elements.to_string(),
                format!(
                    "{} ({})",
                    r.escapes,
                    table::percent(r.escapes as f64, r.groups as f64)
                ),
                table::bytes(r.bytes_before),
                table::bytes(r.bytes_after),
                table::percent(
                    r.bytes_before as f64 - r.bytes_after as f64,
                    r.bytes_before as f64,
                ),
            ]
        })
        .collect();
    let sum = |f: fn(&TensorReport) -> usize| rows.iter().map(f).sum::<usize>();
    let (before, after, groups, escapes) = (
        sum(|r| r.bytes_before),
        sum(|r| r.bytes_after),
        sum(|r| r.groups),
        sum(|r| r.escapes),
    );
    body.push(vec![
        format!("total ({} tensors)", rows.len()),
        String::new(),
        String::new(),
        String::new(),
        sum(|r| r.elements).to_string(),
        format!(
            "{escapes} ({})",
            table::percent(escapes as f64, groups as f64)
        ),
        table::bytes(before),
        table::bytes(after),
        table::percent(before as f64 - after as f64, before as f64),
    ]);
    table::render(
        &[
            "tensor",
            "shape",
            "encoding",
            "orientation",
            "elements",
            "escape groups",
            "before",
            "after",
            "saved",
        ],
        &body,
    )
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub fn run(
    input: &Path,
    output: &Path,
    encoding: Encoding,
    tensors: Option<&str>,
    transpose: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let selection = Selection::new(tensors, transpose).map_err(anyhow::Error::msg)?;
    let bar = progress::bytes("compressing", file_len(input));
    let report = bundle::compress_file(
        input,
        output,
        &CompressOptions {
            encoding,
            selection,
        },
        &|n| bar.inc(n),
    );
    bar.finish_and_clear();
    let report = report?;
    print!("{}", report_table(&report.tensors));
    println!(
        "{} → {}: {} → {} ({} tensors passed through unchanged)",
        input.display(),
        output.display(),
        table::bytes(file_len(input) as usize),
        table::bytes(file_len(output) as usize),
        report.passed_through
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_decompress(input: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let bar = progress::bytes("decompressing", file_len(input));
    let report = bundle::decompress_file(input, output, &|n| bar.inc(n));
    bar.finish_and_clear();
    let report = report?;
    println!(
        "{} → {}: {} tensors decoded, {} passed through, {}",
        input.display(),
        output.display(),
        report.decoded,
        report.passed_through,
        table::bytes(file_len(output) as usize)
    );
    Ok(ExitCode::SUCCESS)
}
