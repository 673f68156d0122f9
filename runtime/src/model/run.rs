//! The file-or-directory operations: compress, decompress, verify.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::bundle::components::Component;
use crate::bundle::meta::COMPONENT_SEP;
use crate::bundle::{
    self, Bundle, CompressOptions, CompressReport, DecompressReport, VerifyReport,
};
use crate::codec::Orientation;

use super::error::{DirProblem, ModelError};
use super::index::Index;
use super::scan::ModelDir;
use super::staging::Staging;
use super::{ModelReport, ShardReport};

type Progress<'a> = &'a (dyn Fn(u64) + Sync);

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn name_of(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A report of one file.
fn single<R>(input: &Path, output: Option<&Path>, report: R) -> ModelReport<R> {
    let (bytes_in, bytes_out) = (file_len(input), output.map_or(0, file_len));
    ModelReport {
        is_dir: false,
        shards: vec![ShardReport {
            name: input
                .file_name()
                .map_or_else(|| name_of(input), |n| n.to_string_lossy().into_owned()),
            bytes_in,
            bytes_out,
            report: Some(report),
        }],
        indexes: Vec::new(),
        copied: Vec::new(),
        bytes_in,
        bytes_out,
        problems: Vec::new(),
    }
}

/// The directory's indexes, each checked to name only shards the directory has.
fn indexes(dir: &ModelDir) -> Result<Vec<(PathBuf, Index)>, ModelError> {
    dir.indexes
        .iter()
        .map(|rel| {
            let idx = Index::read(&dir.root.join(rel))?;
            idx.check_shards(rel, &dir.shards)?;
            Ok((rel.clone(), idx))
        })
        .collect()
}

/// Opens every shard: a file that is not safetensors fails here, before anything is written.
fn open_shards(dir: &ModelDir) -> Result<Vec<Bundle>, ModelError> {
    dir.shards
        .iter()
        .map(|rel| Bundle::open(&dir.root.join(rel)).map_err(ModelError::from))
        .collect()
}

/// Bytes of a safetensors file's data section (its size less the header).
fn data_bytes(path: &Path) -> Result<u64, ModelError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| ModelError::io(path, "cannot read", e))?;
    Ok(file_len(path).saturating_sub(8 + u64::from_le_bytes(head)))
}

/// `metadata.total_size` for an index: the data bytes of the shards it names.
fn index_total(rel: &Path, idx: &Index, sizes: &BTreeMap<PathBuf, u64>) -> u64 {
    idx.shard_paths(rel)
        .values()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|p| sizes.get(p).copied().unwrap_or(0))
        .sum()
}

/// Creates the subdirectories, copies the other files; returns their names and bytes.
fn copy_others(
    dir: &ModelDir,
    out: &Staging,
    progress: Progress,
) -> Result<(Vec<String>, u64), ModelError> {
    let mut names = Vec::new();
    let mut bytes = 0;
    for rel in &dir.others {
        let n = out.copy(&dir.root.join(rel), rel)?;
        progress(n);
        bytes += n;
        names.push(name_of(rel));
    }
    Ok((names, bytes))
}

/// The common end of a directory compress or decompress: copies the other files, renames the
/// staging directory into place and adds up the report.
fn finish_dir<R>(
    dir: &ModelDir,
    out: Staging,
    shards: Vec<ShardReport<R>>,
    indexes: Vec<String>,
    index_bytes: u64,
    progress: Progress,
) -> Result<ModelReport<R>, ModelError> {
    let (copied, copied_bytes) = copy_others(dir, &out, progress)?;
    out.finish()?;
    let bytes_out = index_bytes + copied_bytes + shards.iter().map(|s| s.bytes_out).sum::<u64>();
    Ok(ModelReport {
        is_dir: true,
        bytes_in: dir.total_bytes(),
        bytes_out,
        shards,
        indexes,
        copied,
        problems: Vec::new(),
    })
}

/// Compresses a file into a bundle, or every shard of a model directory into a new directory
/// (see the [module docs](super)). `progress` receives input bytes as they are done; they sum to
/// [`progress_total`](super::progress_total) of `input`. In a directory, `opts.selection` applies
/// to every shard; a shard without any selected tensor is copied unchanged, and it is an error
/// only if no shard has one (or `--transpose` matches in none).
pub fn compress_path(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    progress: Progress,
) -> Result<ModelReport<CompressReport>, ModelError> {
    if !input.is_dir() {
        let r = bundle::compress_file(input, output, opts, progress)?;
        return Ok(single(input, Some(output), r));
    }
    let dir = ModelDir::scan(input)?;
    let idx = indexes(&dir)?;
    for b in open_shards(&dir)? {
        if b.layout.is_bundle() {
            return Err(bundle::BundleError::file(&b.path, bundle::Problem::AlreadyBundle).into());
        }
    }
    let out = Staging::new(input, output)?;
    for d in &dir.dirs {
        out.mkdir(d)?;
    }
    let mut shards = Vec::new();
    let mut components: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for rel in &dir.shards {
        let src = dir.root.join(rel);
        let dst = out.path(rel);
        let report = bundle::compress_shard(&src, &dst, opts, false, progress)?;
        match &report {
            Some(r) => {
                for t in &r.tensors {
                    let names = Component::expected(t.encoding)
                        .iter()
                        .map(|c| format!("{}{COMPONENT_SEP}{}", t.name, c.name()))
                        .collect();
                    components.insert(t.name.clone(), names);
                }
            }
            None => {
                out.copy(&src, rel)?;
                progress(file_len(&src));
            }
        }
        sizes.insert(rel.clone(), data_bytes(&dst)?);
        shards.push(ShardReport {
            name: name_of(rel),
            bytes_in: file_len(&src),
            bytes_out: file_len(&dst),
            report,
        });
    }
    let compressed = || shards.iter().filter_map(|s| s.report.as_ref());
    if compressed().next().is_none() {
        return Err(ModelError::dir(
            input,
            DirProblem::NothingSelected(opts.selection.tensors.as_str().to_string()),
        ));
    }
    if let Some(re) = &opts.selection.transpose {
        let any = compressed()
            .flat_map(|r| &r.tensors)
            .any(|t| t.orientation == Orientation::Transposed);
        if !any {
            return Err(ModelError::dir(
                input,
                DirProblem::NothingTransposed(re.as_str().to_string()),
            ));
        }
    }
    let mut index_names = Vec::new();
    let mut bytes_out = 0;
    for (rel, i) in &idx {
        let bytes = i.compressed(&components, index_total(rel, i, &sizes))?;
        out.write(rel, &bytes)?;
        progress(i.bytes.len() as u64);
        bytes_out += bytes.len() as u64;
        index_names.push(name_of(rel));
    }
    finish_dir(&dir, out, shards, index_names, bytes_out, progress)
}

/// Restores a bundle into the original file, or a compressed model directory into a new
/// directory byte-identical to the original (see the [module docs](super)). Shards that are
/// not bundles are copied unchanged; it is an error if no shard is one. `progress` as in
/// [`compress_path`].
pub fn decompress_path(
    input: &Path,
    output: &Path,
    progress: Progress,
) -> Result<ModelReport<DecompressReport>, ModelError> {
    if !input.is_dir() {
        let r = bundle::decompress_file(input, output, progress)?;
        return Ok(single(input, Some(output), r));
    }
    let dir = ModelDir::scan(input)?;
    let idx = indexes(&dir)?;
    let is_bundle: Vec<bool> = open_shards(&dir)?
        .iter()
        .map(|b| b.layout.is_bundle())
        .collect();
    if !is_bundle.contains(&true) {
        return Err(ModelError::dir(input, DirProblem::NoBundle));
    }
    let out = Staging::new(input, output)?;
    for d in &dir.dirs {
        out.mkdir(d)?;
    }
    let mut shards = Vec::new();
    let mut sizes = BTreeMap::new();
    for (rel, &bundle) in dir.shards.iter().zip(&is_bundle) {
        let src = dir.root.join(rel);
        let dst = out.path(rel);
        let report = if bundle {
            Some(bundle::decompress_file(&src, &dst, progress)?)
        } else {
            out.copy(&src, rel)?;
            progress(file_len(&src));
            None
        };
        sizes.insert(rel.clone(), data_bytes(&dst)?);
        shards.push(ShardReport {
            name: name_of(rel),
            bytes_in: file_len(&src),
            bytes_out: file_len(&dst),
            report,
        });
    }
    let mut index_names = Vec::new();
    let mut bytes_out = 0;
    for (rel, i) in &idx {
        let bytes = i.restored(index_total(rel, i, &sizes))?;
        // What is written must itself name only shards that exist.
        let path = dir.root.join(rel);
        let restored = Index::read_bytes(&path, bytes.clone())?;
        restored.check_shards(rel, &dir.shards)?;
        out.write(rel, &bytes)?;
        progress(i.bytes.len() as u64);
        bytes_out += bytes.len() as u64;
        index_names.push(name_of(rel));
    }
    finish_dir(&dir, out, shards, index_names, bytes_out, progress)
}

/// Decodes every compressed tensor of a file or of every shard of a directory and checks its
/// hash; with `against` (a file for a file, a directory for a directory), also that `path`
/// restores exactly the original: every tensor and the metadata of each shard, the index
/// (byte for byte, from the kept original) and every other file. For a directory, also that
/// every index entry names a shard that holds the tensor. Mismatches are collected, not fatal:
/// see [`ModelReport::failures`].
pub fn verify_path(
    path: &Path,
    against: Option<&Path>,
    progress: Progress,
) -> Result<ModelReport<VerifyReport>, ModelError> {
    if !path.is_dir() {
        if let Some(a) = against.filter(|a| a.is_dir()) {
            return Err(ModelError::dir(a, DirProblem::KindMismatch));
        }
        let r = bundle::verify_file(path, against, progress)?;
        return Ok(single(path, None, r));
    }
    if let Some(a) = against.filter(|a| !a.is_dir()) {
        return Err(ModelError::dir(path, DirProblem::KindMismatch)).map_err(|e| {
            match a.exists() {
                true => e,
                false => ModelError::io(
                    a,
                    "cannot open",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ),
            }
        });
    }
    let dir = ModelDir::scan(path)?;
    let idx = indexes(&dir)?;
    let orig = against.map(ModelDir::scan).transpose()?;
    let mut problems = Vec::new();
    let mut shards = Vec::new();
    let mut names_in: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for rel in &dir.shards {
        let file = dir.root.join(rel);
        let b = Bundle::open(&file)?;
        let header = safetensors::SafeTensors::read_metadata(b.bytes())
            .map(|(_, m)| m.tensors().keys().cloned().collect::<BTreeSet<_>>())
            .unwrap_or_default();
        names_in.insert(rel.clone(), header);
        let original = orig.as_ref().map(|o| o.root.join(rel));
        if let Some(o) = original.as_ref().filter(|o| !o.is_file()) {
            problems.push(format!("{}: not in {}", file.display(), o.display()));
        }
        let original = original.filter(|o| o.is_file());
        let report = if b.layout.is_bundle() {
            drop(b);
            Some(bundle::verify_file(&file, original.as_deref(), progress)?)
        } else {
            drop(b);
            if let Some(o) = &original {
                same_bytes(&file, o, &mut problems)?;
            }
            progress(file_len(&file));
            None
        };
        shards.push(ShardReport {
            name: name_of(rel),
            bytes_in: file_len(&file),
            bytes_out: 0,
            report,
        });
    }
    let mut index_names = Vec::new();
    for (rel, i) in &idx {
        let paths = i.shard_paths(rel);
        for (tensor, shard) in &i.weight_map {
            if !names_in[&paths[shard]].contains(tensor) {
                problems.push(format!(
                    "{}: maps tensor `{tensor}` to `{shard}`, which does not hold it",
                    i.path.display()
                ));
            }
        }
        if let Some(o) = &orig {
            let theirs = o.root.join(rel);
            match (i.original()?, std::fs::read(&theirs)) {
                (_, Err(_)) => {
                    problems.push(format!("{}: not in {}", i.path.display(), o.root.display()))
                }
                (Some(kept), Ok(b)) if kept.bytes != b => problems.push(format!(
                    "{}: the kept original index differs from {}",
                    i.path.display(),
                    theirs.display()
                )),
                (None, Ok(b)) if i.bytes != b => problems.push(format!(
                    "{}: differs from {}",
                    i.path.display(),
                    theirs.display()
                )),
                _ => {}
            }
        }
        progress(i.bytes.len() as u64);
        index_names.push(name_of(rel));
    }
    let mut compared = Vec::new();
    for rel in &dir.others {
        let file = dir.root.join(rel);
        if let Some(o) = &orig {
            let theirs = o.root.join(rel);
            if theirs.is_file() {
                same_bytes(&file, &theirs, &mut problems)?;
                compared.push(name_of(rel));
            } else {
                problems.push(format!("{}: not in {}", file.display(), o.root.display()));
            }
        }
        progress(file_len(&file));
    }
    if let Some(o) = &orig {
        let ours: BTreeSet<&PathBuf> = dir.files().collect();
        for rel in o.files().filter(|f| !ours.contains(f)) {
            problems.push(format!(
                "{}: missing from {}",
                o.root.join(rel).display(),
                path.display()
            ));
        }
    }
    Ok(ModelReport {
        is_dir: true,
        bytes_in: dir.total_bytes(),
        bytes_out: 0,
        shards,
        indexes: index_names,
        copied: compared,
        problems,
    })
}

/// Compares two files byte for byte; a difference is a problem, an unreadable file an error.
fn same_bytes(ours: &Path, theirs: &Path, problems: &mut Vec<String>) -> Result<(), ModelError> {
    let a = std::fs::read(ours).map_err(|e| ModelError::io(ours, "cannot read", e))?;
    let b = std::fs::read(theirs).map_err(|e| ModelError::io(theirs, "cannot read", e))?;
    if a != b {
        problems.push(format!(
            "{}: differs from {}",
            ours.display(),
            theirs.display()
        ));
    }
    Ok(())
}
