//! Errors of model-level operations: every one displays as the single line the CLI prints after
//! `unweight: error: `, naming the file or directory and the problem.

use std::path::PathBuf;

use crate::bundle::BundleError;

/// A failed file or directory operation.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A problem with one safetensors file (a shard, or the single input file).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A problem with a directory, an index or a file that is not a shard.
    #[error("{}: {problem}", path.display())]
    Dir { path: PathBuf, problem: DirProblem },
}

/// What went wrong at the directory level (see [`ModelError::Dir`]).
#[derive(Debug, thiserror::Error)]
pub enum DirProblem {
    // The I/O error is part of the message, not a `source`, so `{:#}` chains print it once.
    #[error("{action}: {error}")]
    Io {
        action: &'static str,
        error: std::io::Error,
    },
    #[error("no .safetensors file in the directory")]
    NoShards,
    #[error("the index maps tensor `{tensor}` to shard `{shard}`, which is not in the directory")]
    MissingShard { shard: String, tensor: String },
    #[error("not a valid safetensors index: {0}")]
    BadIndex(String),
    #[error("is neither a regular file nor a directory")]
    NotFileOrDir,
    #[error("already exists; choose a new output directory (or remove it first)")]
    OutputExists,
    #[error("lies inside the input directory; choose an output outside it")]
    OutputInsideInput,
    #[error("contains the output {0}; choose an output outside the input")]
    InputInsideOutput(PathBuf),
    #[error("no shard is an unweight bundle (decompress takes a compressed directory)")]
    NoBundle,
    #[error("no tensor of any shard matches --tensors `{0}`")]
    NothingSelected(String),
    #[error("--transpose `{0}` matches none of the tensors selected in any shard")]
    NothingTransposed(String),
    #[error("is a directory; --against needs a directory too, and so does a directory input")]
    KindMismatch,
}

impl ModelError {
    pub fn dir(path: impl Into<PathBuf>, problem: DirProblem) -> Self {
        Self::Dir {
            path: path.into(),
            problem,
        }
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, error: std::io::Error) -> Self {
        Self::dir(path, DirProblem::Io { action, error })
    }
}
