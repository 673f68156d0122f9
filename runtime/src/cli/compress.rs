//! `compress` and `decompress`.

use std::path::Path;
use std::process::ExitCode;

use super::{progress, table};
use crate::bundle::{CompressOptions, CompressReport, DecompressReport, Selection, TensorReport};
use crate::codec::Encoding;
use crate::model::{self, ModelReport};

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

/// One row per shard and a total: what `compress DIR` prints instead of every tensor.
fn shard_table(report: &ModelReport<CompressReport>) -> String {
    let row = |name: String, tensors: &[&TensorReport], passed: usize, before: u64, after: u64| {
        let (b, a) = (
            tensors.iter().map(|t| t.bytes_before).sum::<usize>(),
            tensors.iter().map(|t| t.bytes_after).sum::<usize>(),
        );
        vec![
            name,
            tensors.len().to_string(),
            passed.to_string(),
            table::bytes(b),
            table::bytes(a),
            table::bytes(before as usize),
            table::bytes(after as usize),
            table::percent(before as f64 - after as f64, before as f64),
        ]
    };
    let mut body = Vec::new();
    let mut all = Vec::new();
    let mut passed_all = 0;
    for s in &report.shards {
        let (tensors, passed): (Vec<&TensorReport>, usize) = match &s.report {
            Some(r) => (r.tensors.iter().collect(), r.passed_through),
            None => (Vec::new(), 0),
        };
        let mut name = s.name.clone();
        if s.report.is_none() {
            name.push_str(" (copied: nothing selected)");
        }
        body.push(row(name, &tensors, passed, s.bytes_in, s.bytes_out));
        passed_all += passed;
        all.extend(tensors);
    }
    let (before, after) = report
        .shards
        .iter()
        .fold((0, 0), |(b, a), s| (b + s.bytes_in, a + s.bytes_out));
    body.push(row(
        format!("total ({} shards)", report.shards.len()),
        &all,
        passed_all,
        before,
        after,
    ));
    table::render(
        &[
            "shard",
            "compressed",
            "passed through",
            "tensors before",
            "tensors after",
            "file before",
            "file after",
            "saved",
        ],
        &body,
    )
}

pub fn run(
    input: &Path,
    output: &Path,
    encoding: Encoding,
    tensors: Option<&str>,
    transpose: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let selection = Selection::new(tensors, transpose).map_err(anyhow::Error::msg)?;
    let bar = progress::bytes("compressing", model::progress_total(input).unwrap_or(0));
    let report = model::compress_path(
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
    if report.is_dir {
        print!("{}", shard_table(&report));
        println!(
            "{} → {}: {} → {} ({} shards, {} index files rewritten, {} other files copied)",
            input.display(),
            output.display(),
            table::bytes(report.bytes_in as usize),
            table::bytes(report.bytes_out as usize),
            report.shards.len(),
            report.indexes.len(),
            report.copied.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = report.shards[0].report.as_ref().expect("a file's report");
    print!("{}", report_table(&r.tensors));
    println!(
        "{} → {}: {} → {} ({} tensors passed through unchanged)",
        input.display(),
        output.display(),
        table::bytes(file_len(input) as usize),
        table::bytes(file_len(output) as usize),
        r.passed_through
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_decompress(input: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let bar = progress::bytes("decompressing", model::progress_total(input).unwrap_or(0));
    let report = model::decompress_path(input, output, &|n| bar.inc(n));
    bar.finish_and_clear();
    let report = report?;
    if report.is_dir {
        let mut body: Vec<Vec<String>> = report
            .shards
            .iter()
            .map(|s| {
                let (d, p) = s
                    .report
                    .map_or(("-".into(), "(copied: not a bundle)".into()), |r| {
                        (r.decoded.to_string(), r.passed_through.to_string())
                    });
                vec![
                    s.name.clone(),
                    d,
                    p,
                    table::bytes(s.bytes_in as usize),
                    table::bytes(s.bytes_out as usize),
                ]
            })
            .collect();
        let sum = |f: fn(&DecompressReport) -> usize| {
            report
                .shards
                .iter()
                .filter_map(|s| s.report.as_ref())
                .map(f)
                .sum::<usize>()
                .to_string()
        };
        let (before, after) = report
            .shards
            .iter()
            .fold((0, 0), |(b, a), s| (b + s.bytes_in, a + s.bytes_out));
        body.push(vec![
            format!("total ({} shards)", report.shards.len()),
            sum(|r| r.decoded),
            sum(|r| r.passed_through),
            table::bytes(before as usize),
            table::bytes(after as usize),
        ]);
        print!(
            "{}",
            table::render(
                &["shard", "decoded", "passed through", "before", "after"],
                &body
            )
        );
        println!(
            "{} → {}: {} → {} ({} shards, {} index files restored, {} other files copied)",
            input.display(),
            output.display(),
            table::bytes(report.bytes_in as usize),
            table::bytes(report.bytes_out as usize),
            report.shards.len(),
            report.indexes.len(),
            report.copied.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = report.shards[0].report.expect("a file's report");
    println!(
        "{} → {}: {} tensors decoded, {} passed through, {}",
        input.display(),
        output.display(),
        r.decoded,
        r.passed_through,
        table::bytes(file_len(output) as usize)
    );
    Ok(ExitCode::SUCCESS)
}
