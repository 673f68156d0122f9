//! `verify`.

use std::path::Path;
use std::process::ExitCode;

use super::progress;
use crate::model;

pub fn run(file: &Path, against: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bar = progress::bytes("verifying", model::progress_total(file).unwrap_or(0));
    let report = model::verify_path(file, against, &|n| bar.inc(n));
    bar.finish_and_clear();
    let report = report?;
    let failures = report.failures();
    for f in &failures {
        eprintln!("unweight: mismatch: {f}");
    }
    let (decoded, compared) = report
        .shards
        .iter()
        .filter_map(|s| s.report.as_ref())
        .fold((0, 0), |(d, c), r| (d + r.decoded, c + r.compared));
    let compared = match against {
        Some(o) if report.is_dir => format!(
            ", {compared} tensors and {} other files compared with {}",
            report.copied.len() + report.indexes.len(),
            o.display()
        ),
        Some(o) => format!(", {compared} tensors compared with {}", o.display()),
        None => String::new(),
    };
    let shards = if report.is_dir {
        format!("{} shards, ", report.shards.len())
    } else {
        String::new()
    };
    if failures.is_empty() {
        println!(
            "{}: OK ({shards}{decoded} compressed tensors decoded, hashes match{compared})",
            file.display(),
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: FAILED ({} problems{compared})",
            file.display(),
            failures.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
