//! Errors of bundle I/O: every one names the file, the tensor when there is one, and the problem,
//! so the CLI can print it as a single line.

use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::codec::CodecError;

/// What went wrong, without the file (see [`BundleError`]).
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("bad `unweight` metadata: {0}")]
    Metadata(String),
    #[error("{}", version_text(*found, *supported))]
    Version { found: u64, supported: u32 },
    #[error("missing component tensor `{0}`")]
    MissingComponent(String),
    #[error("component tensor `{name}` is {dtype:?} of shape {shape:?}; expected a 1-D U8 tensor")]
    ComponentType {
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
    },
    #[error("component `{component}` holds {found} bytes; expected {expected}")]
    ComponentLength {
        component: &'static str,
        expected: String,
        found: usize,
    },
    #[error("corrupt component `{component}`: {reason}")]
    Corrupt {
        component: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("is {0:?}, but only BF16 tensors can be compressed")]
    NotBf16(Dtype),
    #[error("has shape {0:?}; only tensors of rank 2 or more can be compressed (higher ranks fold their leading dimensions into rows)")]
    NotMatrix(Vec<usize>),
    #[error("no tensor matches --tensors `{0}`")]
    NothingSelected(String),
    #[error("--transpose `{0}` matches none of the tensors selected for compression")]
    NothingTransposed(String),
    #[error("is already an unweight bundle; decompress it first")]
    AlreadyBundle,
    #[error("is not an unweight bundle (its metadata has no `unweight` entry)")]
    NotBundle,
    #[error(
        "output name `{0}` would be written twice (an input tensor already has a component's name)"
    )]
    NameClash(String),
    #[error("is also the input file; choose another output path")]
    OutputIsInput,
    #[error("header would take {need} bytes but {reserved} were reserved")]
    HeaderOverflow { need: usize, reserved: usize },
    #[error("size overflows: {0}")]
    Overflow(String),
}

/// An older bundle names the fix: this build no longer reads it, but the original compresses again.
fn version_text(found: u64, supported: u32) -> String {
    if found < u64::from(supported) {
        format!(
            "unweight format version {found} is older than this build reads (version {supported}, \
             whose checksum covers each tensor's description and stored components): compress it again from the \
             original weights (decompress it first with the unweight version that wrote it)"
        )
    } else {
        format!(
            "unsupported unweight format version {found} (this build reads version {supported})"
        )
    }
}

/// A bundle error: file, optional tensor, problem. Displays as one line:
/// `FILE: tensor NAME: PROBLEM` or `FILE: PROBLEM`.
#[derive(Debug)]
pub struct BundleError {
    pub path: PathBuf,
    pub tensor: Option<String>,
    pub problem: Problem,
}

impl BundleError {
    pub fn file(path: &Path, problem: impl Into<Problem>) -> Self {
        Self {
            path: path.to_path_buf(),
            tensor: None,
            problem: problem.into(),
        }
    }

    pub fn tensor(path: &Path, tensor: &str, problem: impl Into<Problem>) -> Self {
        Self {
            path: path.to_path_buf(),
            tensor: Some(tensor.to_string()),
            problem: problem.into(),
        }
    }

    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Self::file(path, Problem::Io { action, source })
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(t) = &self.tensor {
            write!(f, ": tensor `{t}`")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for BundleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The problem's text is already part of Display; exposing it again as a source would
        // make `{:#}` chains print it twice.
        None
    }
}

/// A parse failure without the file name yet (the reader works on bytes so it can be fuzzed).
#[derive(Debug)]
pub struct ParseError {
    pub tensor: Option<String>,
    pub problem: Problem,
}

impl ParseError {
    pub fn file(problem: impl Into<Problem>) -> Self {
        Self {
            tensor: None,
            problem: problem.into(),
        }
    }

    pub fn tensor(tensor: &str, problem: impl Into<Problem>) -> Self {
        Self {
            tensor: Some(tensor.to_string()),
            problem: problem.into(),
        }
    }

    pub fn at(self, path: &Path) -> BundleError {
        BundleError {
            path: path.to_path_buf(),
            tensor: self.tensor,
            problem: self.problem,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = &self.tensor {
            write!(f, "tensor `{t}`: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for ParseError {}
