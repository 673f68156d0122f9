//! Files and model directories: the entry points the CLI and the Python bindings call.
//!
//! Every function takes either one `.safetensors` file or a model directory as checkpoints are
//! published (sharded `*.safetensors`, a `model.safetensors.index.json`, `config.json`, tokenizer
//! files, …) and dispatches on which it is:
//!
//! - every `*.safetensors` file of the directory (at any depth) is a shard, compressed or
//!   restored on its own (a shard none of whose tensors is selected is copied unchanged);
//! - every `*.safetensors.index.json` is rewritten so that each name in its `weight_map` points
//!   to the shard that holds it: the component tensors `NAME.uw.*` in a compressed directory,
//!   the original tensors in a restored one (see [`index`]);
//! - every other file is copied byte-identical;
//! - the output is built in a temporary directory beside the destination, renamed into place
//!   at the end (so a failure leaves nothing), and the input is only ever read.
//!
//! A restored shard is byte-identical to the original (a bundle keeps the original header), and
//! so is a restored index (a compressed index keeps the original's bytes), so a directory
//! round-trips byte-identical, file for file.
//!
//! Errors are [`ModelError`]s whose `Display` is the one line the CLI prints.

mod error;
pub mod index;
mod load;
mod run;
pub mod scan;
mod staging;

use std::path::Path;

pub use error::{DirProblem, ModelError};
pub use load::load_file;
pub use run::{compress_path, decompress_path, verify_path};
pub use scan::ModelDir;

/// What an operation did, per shard and in total. A single file is one shard.
#[derive(Debug, Clone)]
pub struct ModelReport<R> {
    /// Whether the input was a directory.
    pub is_dir: bool,
    /// One entry per shard, in path order.
    pub shards: Vec<ShardReport<R>>,
    /// Index files rewritten (directories only; relative paths).
    pub indexes: Vec<String>,
    /// Other files copied byte-identical (directories only; relative paths). For `verify`: the
    /// other files compared with the original.
    pub copied: Vec<String>,
    /// Bytes of all files read.
    pub bytes_in: u64,
    /// Bytes of all files written (0 for `verify`).
    pub bytes_out: u64,
    /// Directory-level problems `verify` found (index entries, other files); empty otherwise.
    pub problems: Vec<String>,
}

/// One shard of a [`ModelReport`].
#[derive(Debug, Clone)]
pub struct ShardReport<R> {
    /// Path relative to the directory (the file name for a single file).
    pub name: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `None` when the shard was copied unchanged: `compress` selected none of its tensors,
    /// `decompress` found it was not a bundle, `verify` found a plain file.
    pub report: Option<R>,
}

impl ModelReport<crate::bundle::VerifyReport> {
    /// Every problem found: each shard's mismatches, then the directory-level ones.
    pub fn failures(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter_map(|s| s.report.as_ref())
            .flat_map(|r| r.failures.iter().cloned())
            .chain(self.problems.iter().cloned())
            .collect()
    }

    pub fn ok(&self) -> bool {
        self.failures().is_empty()
    }
}

/// What the `progress` callbacks of [`compress_path`], [`decompress_path`] and [`verify_path`]
/// add up to for `path`: the size of the file, or of every file of the directory.
pub fn progress_total(path: &Path) -> Result<u64, ModelError> {
    if path.is_dir() {
        Ok(ModelDir::scan(path)?.total_bytes())
    } else {
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| ModelError::io(path, "cannot open", e))
    }
}
