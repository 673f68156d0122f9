//! Reading a safetensors file (plain or bundle) from memory-mapped bytes.
//!
//! [`parse`] works on bytes (so it can be fuzzed) and returns a [`Layout`]: byte ranges and
//! checked metadata, no copies. Every length and count a decoder relies on is checked here, so
//! a corrupt or hostile file fails with an error naming the tensor and the component.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::components::{Component, Parts};
use super::error::{BundleError, ParseError, Problem};
use super::meta::{self, BundleMeta, TensorMeta, COMPONENT_SEP, FORMAT_VERSION, METADATA_KEY};

/// A tensor stored as is.
#[derive(Debug, Clone)]
pub struct PlainTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub range: Range<usize>,
}

/// A compressed tensor: its metadata and its components' byte ranges.
#[derive(Debug, Clone)]
pub struct CompressedEntry {
    pub name: String,
    pub meta: TensorMeta,
    pub parts: Parts,
}

/// Everything a file holds, in name order.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The user's `__metadata__` (the `unweight` entry removed), as the original file had it.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Present when the file is a bundle.
    pub bundle: Option<BundleMeta>,
    pub plain: Vec<PlainTensor>,
    pub compressed: Vec<CompressedEntry>,
}

impl Layout {
    pub fn is_bundle(&self) -> bool {
        self.bundle.is_some()
    }
}

/// Parses a whole safetensors file held in `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Layout, ParseError> {
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(ParseError::file)?;
    let st = SafeTensors::deserialize(bytes).map_err(ParseError::file)?;
    // SafeTensors' views borrow the data section; keep them as absolute ranges instead.
    let base = bytes.as_ptr() as usize;
    let mut all: HashMap<String, (Dtype, Vec<usize>, Range<usize>)> = HashMap::new();
    for (name, view) in st.iter() {
        let start = view.data().as_ptr() as usize - base;
        debug_assert!(start >= 8 + header_len);
        all.insert(
            name.to_string(),
            (
                view.dtype(),
                view.shape().to_vec(),
                start..start + view.data().len(),
            ),
        );
    }

    let mut metadata: Option<BTreeMap<String, String>> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());

    let bundle = match metadata.as_mut().and_then(|m| m.remove(METADATA_KEY)) {
        None => None,
        Some(json) => Some(parse_bundle_meta(&json)?),
    };
    if let Some(b) = &bundle {
        if !b.input_had_metadata {
            match &metadata {
                Some(m) if m.is_empty() => metadata = None,
                _ => {
                    return Err(ParseError::file(Problem::Metadata(
                        "`input_had_metadata` is false but other metadata entries exist".into(),
                    )))
                }
            }
        }
    }

    let mut layout = Layout {
        metadata,
        bundle: bundle.clone(),
        ..Layout::default()
    };
    if let Some(b) = &bundle {
        for (name, tm) in &b.tensors {
            let parts = take_parts(&mut all, name, tm)?;
            layout.compressed.push(CompressedEntry {
                name: name.clone(),
                meta: tm.clone(),
                parts,
            });
        }
    }
    let mut plain: Vec<_> = all
        .into_iter()
        .map(|(name, (dtype, shape, range))| PlainTensor {
            name,
            dtype,
            shape,
            range,
        })
        .collect();
    plain.sort_by(|a, b| a.name.cmp(&b.name));
    if bundle.is_some() {
        // A leftover `X.uw.<component>` is a tampered or mixed-up bundle: either X is not listed
        // in the metadata or its encoding has no such component.
        if let Some(p) = plain.iter().find(|p| is_component_name(&p.name)) {
            return Err(ParseError::tensor(
                &p.name,
                Problem::Metadata("component tensor that no `unweight` entry accounts for".into()),
            ));
        }
    }
    layout.plain = plain;
    Ok(layout)
}

pub fn is_component_name(name: &str) -> bool {
    name.rsplit_once(COMPONENT_SEP)
        .is_some_and(|(_, c)| Component::from_name(c).is_some())
}

fn parse_bundle_meta(json: &str) -> Result<BundleMeta, ParseError> {
    // Read the version first so a future format says "unsupported version", not "bad field".
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ParseError::file(Problem::Metadata(e.to_string())))?;
    let version = value.get("format_version").and_then(|v| v.as_u64());
    match version {
        Some(v) if v == FORMAT_VERSION as u64 => {}
        Some(v) => {
            return Err(ParseError::file(Problem::Version {
                found: v,
                supported: FORMAT_VERSION,
            }))
        }
        None => {
            return Err(ParseError::file(Problem::Metadata(
                "no `format_version`".into(),
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| ParseError::file(Problem::Metadata(e.to_string())))
}

fn take_parts(
    all: &mut HashMap<String, (Dtype, Vec<usize>, Range<usize>)>,
    name: &str,
    tm: &TensorMeta,
) -> Result<Parts, ParseError> {
    let err = |p: Problem| ParseError::tensor(name, p);
    let encoding = meta::parse_encoding(&tm.encoding).ok_or_else(|| {
        err(Problem::Metadata(format!(
            "unknown encoding `{}`",
            tm.encoding
        )))
    })?;
    let mut ranges = BTreeMap::new();
    for c in Component::expected(encoding) {
        let full = format!("{name}{COMPONENT_SEP}{}", c.name());
        let (dtype, shape, range) = all
            .remove(&full)
            .ok_or_else(|| err(Problem::MissingComponent(full.clone())))?;
        if dtype != Dtype::U8 || shape.len() != 1 {
            return Err(err(Problem::ComponentType {
                name: full,
                dtype,
                shape,
            }));
        }
        ranges.insert(*c, range);
    }
    Parts::check(name, tm, ranges)
}

/// A file opened read-only and memory-mapped, with its layout parsed.
pub struct Bundle {
    pub path: PathBuf,
    file: File,
    mmap: Mmap,
    pub layout: Layout,
}

impl Bundle {
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let file = File::open(path).map_err(|e| BundleError::io(path, "cannot open", e))?;
        // SAFETY: the map is read-only; like every safetensors reader, we rely on no other
        // process truncating the file while it is open.
        let mmap =
            unsafe { Mmap::map(&file) }.map_err(|e| BundleError::io(path, "cannot map", e))?;
        let layout = parse(&mmap).map_err(|e| e.at(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            mmap,
            layout,
        })
    }

    /// The open file, for copies out of it inside the kernel.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Where the data section starts: 8 + the header's length.
    pub fn data_start(&self) -> usize {
        let n = self.mmap.get(..8).map_or(0, |b| {
            u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
        });
        8 + n
    }

    pub fn slice(&self, range: &Range<usize>) -> &[u8] {
        &self.mmap[range.clone()]
    }
}
