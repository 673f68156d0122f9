//! What a model directory holds: its safetensors shards, its index files and everything else.

use std::path::{Path, PathBuf};

use super::error::{DirProblem, ModelError};

/// Suffix of the shard files.
pub const SHARD_SUFFIX: &str = ".safetensors";
/// Suffix of index files (`model.safetensors.index.json`, `diffusion_pytorch_model…`).
pub const INDEX_SUFFIX: &str = ".safetensors.index.json";

/// Nesting deeper than this is taken for a symlink loop.
const MAX_DEPTH: usize = 32;

/// A model directory's files, as paths relative to `root`, each list sorted.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    pub shards: Vec<PathBuf>,
    pub indexes: Vec<PathBuf>,
    /// Every other file (configs, tokenizer, README, …): copied byte-identical.
    pub others: Vec<PathBuf>,
    /// Every subdirectory, so that empty ones are recreated too.
    pub dirs: Vec<PathBuf>,
}

impl ModelDir {
    /// Lists `root` recursively (following symlinks, as a Hugging Face cache snapshot needs);
    /// fails on a directory without any shard.
    pub fn scan(root: &Path) -> Result<Self, ModelError> {
        let mut d = Self {
            root: root.to_path_buf(),
            shards: Vec::new(),
            indexes: Vec::new(),
            others: Vec::new(),
            dirs: Vec::new(),
        };
        d.walk(Path::new(""), 0)?;
        if d.shards.is_empty() {
            return Err(ModelError::dir(root, DirProblem::NoShards));
        }
        for v in [&mut d.shards, &mut d.indexes, &mut d.others, &mut d.dirs] {
            v.sort();
        }
        Ok(d)
    }

    fn walk(&mut self, rel: &Path, depth: usize) -> Result<(), ModelError> {
        let dir = self.root.join(rel);
        if depth > MAX_DEPTH {
            return Err(ModelError::io(
                &dir,
                "cannot list the directory",
                std::io::Error::other("nested too deeply (a symlink loop?)"),
            ));
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ModelError::io(&dir, "cannot list the directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ModelError::io(&dir, "cannot list the directory", e))?;
            let rel = rel.join(entry.file_name());
            let path = self.root.join(&rel);
            let meta =
                std::fs::metadata(&path).map_err(|e| ModelError::io(&path, "cannot read", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                self.dirs.push(rel.clone());
                self.walk(&rel, depth + 1)?;
            } else if !meta.is_file() {
                return Err(ModelError::dir(path, DirProblem::NotFileOrDir));
            } else if name.ends_with(SHARD_SUFFIX) {
                self.shards.push(rel);
            } else if name.ends_with(INDEX_SUFFIX) {
                self.indexes.push(rel);
            } else {
                self.others.push(rel);
            }
        }
        Ok(())
    }

    /// Every file, relative.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.shards.iter().chain(&self.indexes).chain(&self.others)
    }

    /// Total size of every file: what a progress bar over the directory counts to.
    pub fn total_bytes(&self) -> u64 {
        self.files()
            .map(|f| std::fs::metadata(self.root.join(f)).map_or(0, |m| m.len()))
            .sum()
    }
}
