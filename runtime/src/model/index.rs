//! `*.safetensors.index.json`: which shard holds each tensor, checked and rewritten.
//!
//! A compressed directory's index maps every component tensor `NAME.uw.<component>` (and every
//! pass-through tensor) to its shard, so a plain safetensors loader finds each tensor of the
//! bundles, and keeps the original index's bytes under `unweight.original_index`; decompression
//! writes those bytes back, so the restored index is byte-identical to the original.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{DirProblem, ModelError};

/// Key of the entry a compressed directory's index adds.
pub const INDEX_KEY: &str = "unweight";

/// A parsed index file.
#[derive(Debug, Clone)]
pub struct Index {
    /// The file, for messages.
    pub path: PathBuf,
    /// Its bytes as read.
    pub bytes: Vec<u8>,
    pub root: Map<String, Value>,
    /// tensor → shard file name (relative to the index's directory).
    pub weight_map: BTreeMap<String, String>,
}

fn bad(path: &Path, why: impl Into<String>) -> ModelError {
    ModelError::dir(path, DirProblem::BadIndex(why.into()))
}

impl Index {
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, "cannot read", e))?;
        Self::parse(path, bytes)
    }

    /// Parses index bytes; `path` names them in messages.
    pub fn read_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        Self::parse(path, bytes)
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let root: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let weight_map = match root.get("weight_map") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(bad(
                        path,
                        format!("`weight_map` entry `{k}` is not a file name"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad(path, "no `weight_map` object")),
        };
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            root,
            weight_map,
        })
    }

    /// The shards the index names, as paths relative to the model directory (the index's own
    /// directory joined with each name); `index_rel` is the index's relative path.
    pub fn shard_paths(&self, index_rel: &Path) -> BTreeMap<String, PathBuf> {
        let base = index_rel.parent().unwrap_or(Path::new(""));
        self.weight_map
            .values()
            .map(|s| (s.clone(), base.join(s)))
            .collect()
    }

    /// Fails when a tensor is mapped to a shard the directory does not have.
    pub fn check_shards(&self, index_rel: &Path, shards: &[PathBuf]) -> Result<(), ModelError> {
        let have: BTreeSet<&PathBuf> = shards.iter().collect();
        let paths = self.shard_paths(index_rel);
        for (tensor, shard) in &self.weight_map {
            if !have.contains(&paths[shard]) {
                return Err(ModelError::dir(
                    &self.path,
                    DirProblem::MissingShard {
                        shard: shard.clone(),
                        tensor: tensor.clone(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// The index of the compressed directory: each compressed tensor replaced by its component
    /// tensors (`components[name]`, in the same shard), `metadata.total_size` (when present)
    /// set to `total_size`, the original bytes kept under `unweight.original_index`.
    pub fn compressed(
        &self,
        components: &BTreeMap<String, Vec<String>>,
        total_size: u64,
    ) -> Result<Vec<u8>, ModelError> {
        let original =
            String::from_utf8(self.bytes.clone()).map_err(|_| bad(&self.path, "is not UTF-8"))?;
        let mut map = Map::new();
        for (tensor, shard) in &self.weight_map {
            match components.get(tensor) {
                Some(parts) => {
                    for p in parts {
                        map.insert(p.clone(), Value::String(shard.clone()));
                    }
                }
                None => {
                    map.insert(tensor.clone(), Value::String(shard.clone()));
                }
            }
        }
        let mut root = self.root.clone();
        if root.contains_key(INDEX_KEY) {
            return Err(bad(
                &self.path,
                format!(
                    "already has an `{INDEX_KEY}` entry (is the directory compressed already?)"
                ),
            ));
        }
        set_total_size(&mut root, total_size);
        root.insert("weight_map".into(), Value::Object(map));
        let mut kept = Map::new();
        kept.insert("format_version".into(), Value::from(1));
        kept.insert("original_index".into(), Value::String(original));
        root.insert(INDEX_KEY.into(), Value::Object(kept));
        Ok(to_bytes(&root))
    }

    /// The index of the restored directory: the kept original bytes when there are any, else
    /// this index with component tensors folded back into their tensor and
    /// `metadata.total_size` (when present) set to `total_size`.
    pub fn restored(&self, total_size: u64) -> Result<Vec<u8>, ModelError> {
        if let Some(kept) = self.root.get(INDEX_KEY) {
            return match kept.get("original_index") {
                Some(Value::String(s)) => {
                    // It must itself be an index; the caller checks its shards.
                    Self::parse(&self.path, s.as_bytes().to_vec())?;
                    Ok(s.as_bytes().to_vec())
                }
                _ => Err(bad(
                    &self.path,
                    format!("`{INDEX_KEY}` has no `original_index` string"),
                )),
            };
        }
        let mut map = Map::new();
        for (tensor, shard) in &self.weight_map {
            let name = match tensor.rsplit_once(crate::bundle::meta::COMPONENT_SEP) {
                Some((base, c)) if crate::bundle::components::Component::from_name(c).is_some() => {
                    base
                }
                _ => tensor.as_str(),
            };
            map.insert(name.to_string(), Value::String(shard.clone()));
        }
        let mut root = self.root.clone();
        set_total_size(&mut root, total_size);
        root.insert("weight_map".into(), Value::Object(map));
        Ok(to_bytes(&root))
    }

    /// The original index a compressed directory's index keeps, if any.
    pub fn original(&self) -> Result<Option<Index>, ModelError> {
        match self.root.get(INDEX_KEY) {
            None => Ok(None),
            Some(_) => {
                let bytes = self.restored(0)?;
                Self::parse(&self.path, bytes).map(Some)
            }
        }
    }
}

fn set_total_size(root: &mut Map<String, Value>, total: u64) {
    if let Some(Value::Object(m)) = root.get_mut("metadata") {
        if m.contains_key("total_size") {
            m.insert("total_size".into(), Value::from(total));
        }
    }
}

/// Pretty JSON (two-space indent) with a final newline, as `transformers` writes indexes.
fn to_bytes(root: &Map<String, Value>) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(root).expect("JSON values serialize");
    v.push(b'\n');
    v
}
