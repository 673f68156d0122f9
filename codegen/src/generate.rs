//! Writing and checking `generated/`: every file goes through [`ensure_file_contents`], which
//! normalizes newlines, writes only when the bytes differ and, in check mode, names each stale
//! file and the command that fixes it. Files in generated/ that nothing produces fail too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::render::Generated;
use crate::render::{workspace_root, RenderError, Templates};
use crate::space::{self, Pruned, VariantSet};
use crate::variant::{ParseVariantError, Variant};

/// The command that regenerates generated/.
pub const FIX: &str = "cargo xtask gen-kernels";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Write what differs, delete orphans.
    Write,
    /// Change nothing; fail on any difference.
    Check,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub kernels: usize,
    pub pruned: Vec<(Variant, Pruned)>,
    /// Files written (write mode) — relative to the workspace root.
    pub written: Vec<String>,
    /// Orphans deleted (write mode).
    pub deleted: Vec<String>,
    /// Whether registry.rs and manifest.txt were part of the run (only for the `all` set).
    pub registry: bool,
}

/// Why `generate` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A template failed to load, lint or render.
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Name(#[from] ParseVariantError),
    #[error("{variant} is pruned: {reason}")]
    Pruned { variant: Variant, reason: Pruned },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Check mode: files that differ from what the templates produce, and orphans.
    #[error("{}", stale_text(stale, orphans))]
    Stale {
        stale: Vec<String>,
        orphans: Vec<String>,
    },
}

/// One line per stale file and per orphan, each with the command that fixes it.
fn stale_text(stale: &[String], orphans: &[String]) -> String {
    let lines = stale
        .iter()
        .map(|s| format!("{s} is out of date; run `{FIX}` and commit the result"))
        .chain(
            orphans
                .iter()
                .map(|o| format!("{o} is not produced by any variant; run `{FIX}` to delete it")),
        );
    lines.collect::<Vec<_>>().join("\n")
}

/// generated/ in this workspace.
pub fn generated_dir() -> PathBuf {
    workspace_root().join("generated")
}

/// templates/ in this workspace.
pub fn templates_dir() -> PathBuf {
    workspace_root().join("templates")
}

/// Renders every kept variant in `set`, in variant order.
pub fn render_set(set: &VariantSet) -> Result<Vec<Generated>, GenError> {
    let templates = Templates::load(&templates_dir())?;
    let mut out = Vec::new();
    for (variant, budget) in space::kept() {
        if !set.contains(&variant) {
            continue;
        }
        let source = templates.render(&variant, &budget)?;
        let hash = xxhash_rust::xxh64::xxh64(source.as_bytes(), 0);
        out.push(Generated {
            variant,
            budget,
            source,
            hash,
        });
    }
    Ok(out)
}

/// Renders one variant by name (kept variants only).
pub fn render_one(name: &str) -> Result<Generated, GenError> {
    let variant: Variant = name.parse()?;
    let budget = space::check(&variant).map_err(|reason| GenError::Pruned { variant, reason })?;
    let templates = Templates::load(&templates_dir())?;
    let source = templates.render(&variant, &budget)?;
    let hash = xxhash_rust::xxh64::xxh64(source.as_bytes(), 0);
    Ok(Generated {
        variant,
        budget,
        source,
        hash,
    })
}

/// `generate(Mode::Check)` is the staleness test; `generate(Mode::Write)` is `cargo xtask gen-kernels`.
pub fn generate(mode: Mode) -> Result<Report, GenError> {
    generate_set(mode, &VariantSet::All)
}

/// Like [`generate`] for a subset: only the selected kernels' files are written or checked;
/// registry.rs, manifest.txt and the orphan check need the full set and are skipped otherwise.
pub fn generate_set(mode: Mode, set: &VariantSet) -> Result<Report, GenError> {
    let kernels = render_set(set)?;
    let dir = generated_dir();
    let root = workspace_root();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for k in &kernels {
        files.insert(format!("{}.cu", k.variant), k.source.clone());
    }
    let full = *set == VariantSet::All;
    let pruned = space::pruned();
    if full {
        files.insert(
            "registry.rs".into(),
            crate::registry::registry_source(&kernels),
        );
        files.insert("manifest.txt".into(), manifest(&kernels, &pruned));
    }
    let mut report = Report {
        kernels: kernels.len(),
        pruned,
        registry: full,
        ..Report::default()
    };
    let mut stale = Vec::new();
    if mode == Mode::Write {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    for (name, contents) in &files {
        let path = dir.join(name);
        match ensure_file_contents(&path, contents, mode)? {
            Outcome::Unchanged => {}
            Outcome::Written => report.written.push(rel(&root, &path)),
            Outcome::Stale => stale.push(rel(&root, &path)),
        }
    }
    let mut orphans = Vec::new();
    if full && dir.exists() {
        let entries = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let known = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| files.contains_key(n));
            if !known {
                orphans.push(path);
            }
        }
    }
    match mode {
        Mode::Check => {
            if !stale.is_empty() || !orphans.is_empty() {
                return Err(GenError::Stale {
                    stale,
                    orphans: orphans.iter().map(|p| rel(&root, p)).collect(),
                });
            }
        }
        Mode::Write => {
            for path in orphans {
                let r = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                r.map_err(|e| io(&path, e))?;
                report.deleted.push(rel(&root, &path));
            }
        }
    }
    Ok(report)
}

enum Outcome {
    Unchanged,
    Written,
    Stale,
}

/// The only way generated/ is written: `\r\n` → `\n`, compare bytes, write when different (check
/// mode reports instead of writing).
fn ensure_file_contents(path: &Path, contents: &str, mode: Mode) -> Result<Outcome, GenError> {
    let contents = contents.replace("\r\n", "\n");
    if let Ok(old) = std::fs::read_to_string(path) {
        if old.replace("\r\n", "\n") == contents {
            return Ok(Outcome::Unchanged);
        }
    }
    match mode {
        Mode::Check => Ok(Outcome::Stale),
        Mode::Write => {
            std::fs::write(path, contents).map_err(|e| io(path, e))?;
            Ok(Outcome::Written)
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> GenError {
    GenError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// generated/manifest.txt: what was generated and what was pruned, with the reason.
pub fn manifest(kernels: &[Generated], pruned: &[(Variant, Pruned)]) -> String {
    let mut s = String::from(
        "# Generated by `cargo xtask gen-kernels` from codegen/src/space.rs; do not edit by hand.\n",
    );
    s.push_str(&format!(
        "# {} kernels generated, {} combinations pruned.\n",
        kernels.len(),
        pruned.len()
    ));
    for k in kernels {
        let [x, y, z] = k.budget.block();
        s.push_str(&format!(
            "generated {:<24} block [{x},{y},{z}] dynamic_smem {:>7} total_smem {:>7}\n",
            k.variant.to_string(),
            space::thousands(k.budget.dynamic_smem()),
            space::thousands(k.budget.total_smem())
        ));
    }
    for (v, p) in pruned {
        s.push_str(&format!("pruned    {:<24} {p}\n", v.to_string()));
    }
    s
}

/// The variant table reviewers see in the snapshot: every kept variant with its parameters,
/// launch geometry, SMEM, source hash and derived constants, then every pruned combination.
pub fn variant_table(kernels: &[Generated], pruned: &[(Variant, Pruned)]) -> String {
    let mut s = String::new();
    for k in kernels {
        let [x, y, z] = k.budget.block();
        s.push_str(&format!(
            "{}\n  grid {:?} block [{x},{y},{z}] dynamic_smem {} total_smem {} hash {:016x}\n  ",
            k.variant,
            k.budget.grid(),
            k.budget.dynamic_smem(),
            k.budget.total_smem(),
            k.hash
        ));
        let consts: Vec<String> = k
            .budget
            .constants()
            .into_iter()
            .filter(|(key, _)| *key != "name")
            .map(|(key, v)| format!("{key}={v}"))
            .collect();
        s.push_str(&consts.join(" "));
        s.push('\n');
    }
    for (v, p) in pruned {
        s.push_str(&format!("{v}\n  PRUNED: {p}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_error_names_each_file_and_the_fix() {
        let e = GenError::Stale {
            stale: vec!["generated/a.cu".into()],
            orphans: vec!["generated/old.cu".into()],
        };
        assert_eq!(
            e.to_string(),
            "generated/a.cu is out of date; run `cargo xtask gen-kernels` and commit the result\n\
             generated/old.cu is not produced by any variant; run `cargo xtask gen-kernels` to delete it"
        );
    }
}
