//! `verify`.

use std::path::Path;
use std::process::ExitCode;

use super::progress;
use crate::bundle;

pub fn run(file: &Path, against: Option<&Path>) -> anyhow::Result<ExitCode> {
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes("verifying", total);
    let report = bundle::verify_file(file, against, &|n| bar.inc(n));
    bar.finish_and_clear();
    let report = report?;
    for f in &report.failures {
        eprintln!("unweight: mismatch: {f}");
    }
    let compared = match against {
        Some(o) => format!(
            ", {} tensors compared with {}",
            report.compared,
            o.display()
        ),
        None => String::new(),
    };
    if report.ok() {
        println!(
            "{}: OK ({} compressed tensors decoded, hashes match{compared})",
            file.display(),
            report.decoded
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: FAILED ({} problems{compared})",
            file.display(),
            report.failures.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
