//! `verify`: decode every compressed tensor (hash checked) and optionally compare everything
//! with the original file.

use std::collections::BTreeSet;
use std::path::Path;

use super::bytes::{bytes_of, windowed_batch};
use super::decompress::decode_entries;
use super::error::{BundleError, Problem};
use super::reader::{Bundle, CompressedEntry};

/// What `verify` found. Mismatches do not stop it: every tensor is checked.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub decoded: usize,
    pub compared: usize,
    /// One line per problem: `tensor `NAME`: problem`, or a file-level problem.
    pub failures: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Verifies `path`; with `original`, also that it restores exactly that file's tensors and metadata.
pub fn verify_file(
    path: &Path,
    original: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, BundleError> {
    let bundle = Bundle::open(path)?;
    let orig = original.map(Bundle::open).transpose()?;
    if let (Some(o), Some(p)) = (&orig, original) {
        if o.layout.is_bundle() {
            return Err(BundleError::file(p, Problem::AlreadyBundle));
        }
    }
    let mut report = VerifyReport::default();
    // The header decompression would write: the kept original must fit the tensors.
    if let Err(e) = super::decompress::restored_layout(&bundle, &super::decompress::items(&bundle))
    {
        report.failures.push(e.to_string());
    }
    let entries: Vec<&CompressedEntry> = bundle.layout.compressed.iter().collect();
    windowed_batch(
        &entries,
        |e| e.parts.rows * e.parts.cols * 2,
        |window| {
            decode_entries(&bundle, window)
                .into_iter()
                .map(Ok::<_, BundleError>)
                .collect()
        },
        |e, decoded| {
            report.decoded += 1;
            progress(stored(e));
            let bits = match decoded {
                Ok(b) => b,
                Err(err) => {
                    report.failures.push(err.to_string());
                    return Ok(());
                }
            };
            if let Some(o) = &orig {
                let Some(t) = o.layout.plain.iter().find(|t| t.name == e.name) else {
                    report.failures.push(format!(
                        "{}: tensor `{}`: not in the original",
                        path.display(),
                        e.name
                    ));
                    return Ok(());
                };
                report.compared += 1;
                if t.dtype != safetensors::Dtype::BF16 || t.shape != e.parts.shape {
                    report.failures.push(format!(
                        "{}: tensor `{}`: BF16 {:?} here, {:?} {:?} in the original",
                        path.display(),
                        e.name,
                        e.parts.shape,
                        t.dtype,
                        t.shape
                    ));
                } else if *bytes_of(&bits) != *o.slice(&t.range) {
                    report.failures.push(format!(
                        "{}: tensor `{}`: bytes differ from the original",
                        path.display(),
                        e.name
                    ));
                }
            }
            Ok(())
        },
    )?;

    // The header and the pass-through tensors: progress then sums to the file's size.
    let components: u64 = entries.iter().map(|e| stored(e)).sum();
    progress((bundle.bytes().len() as u64).saturating_sub(components));

    if let (Some(o), Some(opath)) = (&orig, original) {
        let here = |name: &str| format!("{}: tensor `{name}`", path.display());
        for p in &bundle.layout.plain {
            match o.layout.plain.iter().find(|t| t.name == p.name) {
                None => report
                    .failures
                    .push(format!("{}: not in the original", here(&p.name))),
                Some(t) => {
                    report.compared += 1;
                    if (t.dtype, &t.shape) != (p.dtype, &p.shape) {
                        report.failures.push(format!(
                            "{}: {:?} {:?} here, {:?} {:?} in the original",
                            here(&p.name),
                            p.dtype,
                            p.shape,
                            t.dtype,
                            t.shape
                        ));
                    } else if bundle.slice(&p.range) != o.slice(&t.range) {
                        report
                            .failures
                            .push(format!("{}: bytes differ from the original", here(&p.name)));
                    }
                }
            }
        }
        let ours: BTreeSet<&str> = bundle
            .layout
            .plain
            .iter()
            .map(|t| t.name.as_str())
            .chain(bundle.layout.compressed.iter().map(|c| c.name.as_str()))
            .collect();
        for t in &o.layout.plain {
            if !ours.contains(t.name.as_str()) {
                report.failures.push(format!(
                    "{}: tensor `{}`: missing from {}",
                    opath.display(),
                    t.name,
                    path.display()
                ));
            }
        }
        if let Some(h) = bundle
            .layout
            .bundle
            .as_ref()
            .and_then(|b| b.original_header.as_ref())
        {
            if h.as_bytes() != &o.bytes()[8..o.data_start()] {
                report.failures.push(format!(
                    "{}: the kept original header differs from {}'s header (decompression would not restore it byte for byte)",
                    path.display(),
                    opath.display()
                ));
            }
        }
        if bundle.layout.metadata != o.layout.metadata {
            report.failures.push(format!(
                "{}: metadata differs from {}'s: {:?} vs {:?}",
                path.display(),
                opath.display(),
                bundle.layout.metadata,
                o.layout.metadata
            ));
        }
    }
    Ok(report)
}

/// Bytes of a compressed tensor's components in the file.
fn stored(e: &CompressedEntry) -> u64 {
    e.parts.ranges.values().map(|r| r.len() as u64).sum()
}
