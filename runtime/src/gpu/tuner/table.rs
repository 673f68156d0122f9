//! The tuning table: per GPU, which plan wins for each (shape, orientation, residency, batch
//! bucket), as measured by `unweight tune`. A serde JSON file under the cache directory, stamped
//! with what the measurement depends on; a table whose stamp differs is refused, so a driver,
//! NVRTC or kernel change never runs on stale choices.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::Xxh64;

use crate::codec::Orientation;
use crate::gpu::jit::disk;
use crate::gpu::layout::Residency;
use crate::gpu::plan::{ExecPipeline, Spread};
use unweight_codegen::variant::RegistryEntry;

/// The `format` field every table carries (tells a tuning table from any other JSON).
pub const FORMAT: &str = "unweight-tuning-table";
/// Bumped when the layout of the file changes.
pub const SCHEMA: u32 = 1;

/// Why a table cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("tuning table {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tuning table {path} is damaged ({detail}); delete it or tune again: `unweight tune --out {path}`")]
    Damaged { path: PathBuf, detail: String },
    #[error("{path} is not an unweight tuning table (schema {SCHEMA}): {detail}")]
    Foreign { path: PathBuf, detail: String },
    #[error("tuning table {path} is stale: it was tuned with {field} {table:?}, this is {current:?}; tune again: `unweight tune --out {path}`")]
    Stale {
        path: PathBuf,
        field: &'static str,
        table: String,
        current: String,
    },
}

/// What a measurement depends on; any difference makes the table stale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    pub gpu: String,
    pub sm_count: u32,
    /// CUDA driver version as `cuDriverGetVersion` reports it (e.g. 13000).
    pub driver: i32,
    /// NVRTC `major.minor`.
    pub nvrtc: String,
    pub crate_version: String,
    /// [`registry_hash`] of the kernels the table's variants name.
    pub registry: String,
}

impl Stamp {
    /// The stamp of this process on a GPU named `gpu` with `sm_count` SMs.
    pub fn new(gpu: &str, sm_count: u32, driver: i32, nvrtc: (i32, i32)) -> Stamp {
        Stamp {
            gpu: gpu.to_string(),
            sm_count,
            driver,
            nvrtc: format!("{}.{}", nvrtc.0, nvrtc.1),
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            registry: format!(
                "{:016x}",
                registry_hash(crate::gpu::jit::registry::VARIANTS)
            ),
        }
    }

    /// The first field that differs from `current`: (name, this table's value, current value).
    pub fn mismatch(&self, current: &Stamp) -> Option<(&'static str, String, String)> {
        let fields: [(&'static str, String, String); 6] = [
            ("GPU", self.gpu.clone(), current.gpu.clone()),
            (
                "SM count",
                self.sm_count.to_string(),
                current.sm_count.to_string(),
            ),
            (
                "driver",
                self.driver.to_string(),
                current.driver.to_string(),
            ),
            ("NVRTC", self.nvrtc.clone(), current.nvrtc.clone()),
            (
                "crate version",
                self.crate_version.clone(),
                current.crate_version.clone(),
            ),
            (
                "kernel registry",
                self.registry.clone(),
                current.registry.clone(),
            ),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }
}

/// xxh64 over every registry entry's name and source hash, in registry order.
pub fn registry_hash(entries: &[RegistryEntry]) -> u64 {
    let mut h = Xxh64::new(0);
    for e in entries {
        h.update(e.name.as_bytes());
        h.update(&[0]);
        h.update(&e.source_hash.to_le_bytes());
    }
    h.digest()
}

/// What a choice is tuned for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub n_out: usize,
    pub k: usize,
    #[serde(with = "orientation_name")]
    pub orientation: Orientation,
    #[serde(with = "residency_name")]
    pub residency: Residency,
    /// The batch size the choice was measured at.
    pub bucket: usize,
}

/// What won, and how fast it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    #[serde(with = "pipeline_name")]
    pub pipeline: ExecPipeline,
    /// The rmm variant (`None` for pipelines without one).
    pub variant: Option<String>,
    pub ctas: u32,
    #[serde(with = "spread_name")]
    pub spread: Spread,
    /// SMs given to the Huffman decode of hard layers beside another layer's matmul; `Some(0)`:
    /// overlap measured slower than decode then matmul, so the stack runs them serially;
    /// `None`: the kernels take no SM split.
    pub decode_sms: Option<u32>,
    /// Hard weights: the decode + matmul pair's µs per decode share tried, `(decode SMs, µs)`,
    /// `(0, µs)` the serial pair; the stack picks one share for all its hard matrices by their
    /// sum ([`best_stack_split`](super::split::best_stack_split)). Empty in tables tuned before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_us: Vec<(u32, f64)>,
    pub us: f64,
    pub cublas_us: f64,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub key: Key,
    pub choice: Choice,
}

/// A whole tuning table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub format: String,
    pub schema: u32,
    /// The GPU and UTC date (`YYYY-MM-DD`) of the last tune that wrote the table, as every
    /// results file names them, so a committed table says where and when its figures were
    /// measured. Not part of staleness (the stamp is). `date` was `tuned_on` before.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default, alias = "tuned_on")]
    pub date: Option<String>,
    pub stamp: Stamp,
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn new(stamp: Stamp) -> Table {
        Table {
            format: FORMAT.to_string(),
            schema: SCHEMA,
            device: None,
            date: None,
            stamp,
            entries: Vec::new(),
        }
    }

    /// Sets the choice for `key`, replacing an earlier one.
    pub fn insert(&mut self, key: Key, choice: Choice) {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry { key, choice });
        self.entries.sort_by_key(|e| {
            let k = e.key;
            (
                k.n_out,
                k.k,
                k.orientation.as_str(),
                k.residency.as_str(),
                k.bucket,
            )
        });
    }

    /// The entry of the bucket nearest `m` (in log2 distance, the larger bucket on a tie) among
    /// those tuned for this shape, orientation and residency.
    pub fn nearest(
        &self,
        n_out: usize,
        k: usize,
        orientation: Orientation,
        residency: Residency,
        m: usize,
    ) -> Option<&Entry> {
        let dist = |b: usize| ((b.max(1) as f64).log2() - (m.max(1) as f64).log2()).abs();
        self.entries
            .iter()
            .filter(|e| {
                e.key.n_out == n_out
                    && e.key.k == k
                    && e.key.orientation == orientation
                    && e.key.residency == residency
            })
            .min_by(|a, b| {
                dist(a.key.bucket)
                    .total_cmp(&dist(b.key.bucket))
                    .then(b.key.bucket.cmp(&a.key.bucket))
            })
    }

    /// Reads `path`, refusing a damaged, foreign or (against `current`) stale table.
    pub fn load(path: &Path, current: &Stamp) -> Result<Table, TableError> {
        let bytes = std::fs::read(path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let table = Self::parse(path, &bytes)?;
        if let Some((field, table_value, current_value)) = table.stamp.mismatch(current) {
            return Err(TableError::Stale {
                path: path.to_path_buf(),
                field,
                table: table_value,
                current: current_value,
            });
        }
        Ok(table)
    }

    /// Parses a table without checking its stamp.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Table, TableError> {
        let damaged = |detail: String| TableError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        let foreign = |detail: String| TableError::Foreign {
            path: path.to_path_buf(),
            detail,
        };
        // Not JSON at all (a truncated write, flipped bytes): damaged.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(foreign(format!("format tag {other:?}"))),
            None => return Err(foreign("no format tag".into())),
        }
        match value.get("schema").and_then(|s| s.as_u64()) {
            Some(s) if s == SCHEMA as u64 => {}
            other => return Err(foreign(format!("schema {other:?}, expected {SCHEMA}"))),
        }
        let table: Table = serde_json::from_value(value).map_err(|e| damaged(e.to_string()))?;
        for e in &table.entries {
            if let Some(v) = &e.choice.variant {
                if crate::gpu::jit::registry::find(v).is_none() {
                    return Err(damaged(format!("unknown variant {v}")));
                }
            }
        }
        Ok(table)
    }

    /// Writes the table to `path` atomically (temp file in the same directory, renamed).
    pub fn save(&self, path: &Path) -> Result<(), TableError> {
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut text = serde_json::to_string_pretty(self).map_err(|e| TableError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        text.push('\n');
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// `<cache dir>/tuning-<gpu slug>.json`: beside the JIT cache (same `$UNWEIGHT_CACHE_DIR` rule).
pub fn default_path(gpu: &str) -> PathBuf {
    disk::default_cache_dir().join(format!(
        "tuning-{}.json",
        crate::gpu::harness::bench::slug(gpu)
    ))
}

/// Serde by name for types with `as_str`/`FromStr` (the file stays readable, the enums serde-free).
macro_rules! by_name {
    ($m:ident, $t:ty, $to:expr, $from:expr) => {
        mod $m {
            use super::*;
            pub fn serialize<S: serde::Serializer>(v: &$t, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($to(*v))
            }
            pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = String::deserialize(d)?;
                $from(s.as_str()).ok_or_else(|| {
                    <D::Error as serde::de::Error>::custom(format!(
                        "unknown {} {s:?}",
                        stringify!($m)
                    ))
                })
            }
        }
    };
}

by_name!(
    orientation_name,
    Orientation,
    Orientation::as_str,
    |s: &str| s.parse::<Orientation>().ok()
);
by_name!(residency_name, Residency, Residency::as_str, |s: &str| [
    Residency::Huffman,
    Residency::Palette,
    Residency::Raw
]
.into_iter()
.find(|r| r.as_str() == s));
by_name!(
    pipeline_name,
    ExecPipeline,
    ExecPipeline::as_str,
    |s: &str| s.parse::<ExecPipeline>().ok()
);
by_name!(spread_name, Spread, spread_str, |s: &str| match s {
    "even" => Some(Spread::Even),
    "whole_splits" => Some(Spread::WholeSplits),
    "persistent" => Some(Spread::Persistent),
    _ => None,
});

/// The table's name of a [`Spread`].
pub fn spread_str(s: Spread) -> &'static str {
    match s {
        Spread::Even => "even",
        Spread::WholeSplits => "whole_splits",
        Spread::Persistent => "persistent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp::new("NVIDIA H200", 132, 13000, (13, 0))
    }

    fn table() -> Table {
        let mut t = Table::new(stamp());
        let rmm = crate::gpu::jit::registry::VARIANTS
            .iter()
            .find(|e| e.name.starts_with("rmm_palette_"))
            .expect("a palette rmm in the registry");
        for (bucket, pipeline) in [(1, ExecPipeline::DirectPalette), (64, ExecPipeline::Raw)] {
            t.insert(
                Key {
                    n_out: 14336,
                    k: 4096,
                    orientation: Orientation::Standard,
                    residency: pipeline.residency(),
                    bucket,
                },
                Choice {
                    pipeline,
                    variant: Some(rmm.name.to_string()),
                    ctas: 132,
                    spread: Spread::WholeSplits,
                    decode_sms: None,
                    split_us: Vec::new(),
                    us: 42.5,
                    cublas_us: 32.7,
                },
            );
        }
        t
    }

    fn key(bucket: usize) -> Key {
        Key {
            n_out: 4096,
            k: 14336,
            orientation: Orientation::Transposed,
            residency: Residency::Palette,
            bucket,
        }
    }

    fn choice() -> Choice {
        Choice {
            pipeline: ExecPipeline::Cublas,
            variant: None,
            ctas: 1,
            spread: Spread::Even,
            decode_sms: Some(16),
            split_us: vec![(0, 2.0), (16, 1.5)],
            us: 1.0,
            cublas_us: 1.0,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.json");
        let mut t = table();
        t.device = Some("NVIDIA H200".into());
        t.date = Some("2026-12-02".into());
        t.save(&path).unwrap();
        assert_eq!(Table::load(&path, &stamp()).unwrap(), t);
        // Saving again replaces the file whole and leaves no temp file behind.
        t.save(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["t.json"]);
    }

    #[test]
    fn committed_tables_name_their_device_and_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.contains("tuning") && name.ends_with(".json")) {
                continue;
            }
            let t: Table = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.device.as_deref(), Some(t.stamp.gpu.as_str()), "{name}");
            assert!(
                t.date.as_deref().is_some_and(|d| name.starts_with(d)),
                "{name}"
            );
            n += 1;
        }
        assert!(n > 0, "no tuning tables under {}", dir.display());
    }

    #[test]
    fn an_older_table_names_its_date_tuned_on() {
        let t = table();
        let json = serde_json::to_string(&t)
            .unwrap()
            .replace("\"date\":null", "\"tuned_on\":\"2026-12-02\"");
        let back: Table = serde_json::from_str(&json).unwrap();
        assert_eq!(back.date.as_deref(), Some("2026-12-02"));
    }

    #[test]
    fn each_stamp_field_makes_it_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        table().save(&path).unwrap();
        type Edit = (&'static str, fn(&mut Stamp));
        let edits: [Edit; 6] = [
            ("GPU", |s| s.gpu = "NVIDIA H100".into()),
            ("SM count", |s| s.sm_count = 114),
            ("driver", |s| s.driver = 12080),
            ("NVRTC", |s| s.nvrtc = "13.1".into()),
            ("crate version", |s| s.crate_version = "9.9.9".into()),
            ("kernel registry", |s| s.registry = "0".into()),
        ];
        for (field, edit) in edits {
            let mut current = stamp();
            edit(&mut current);
            match Table::load(&path, &current) {
                Err(e @ TableError::Stale { field: f, .. }) => {
                    assert_eq!(f, field);
                    let msg = e.to_string();
                    assert!(msg.contains("unweight tune"), "{msg}");
                    assert!(!msg.contains('\n'), "{msg}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn damaged_truncated_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let good = serde_json::to_string(&table()).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("flipped", {
                let mut b = good.clone().into_bytes();
                b[0] = b'!';
                b
            }),
            (
                "bad entry",
                good.replace("direct_palette", "teleport").into_bytes(),
            ),
            (
                "unknown variant",
                good.replace("rmm_palette_", "rmm_nothing_").into_bytes(),
            ),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            assert!(
                matches!(
                    Table::load(&path, &stamp()),
                    Err(TableError::Damaged { .. })
                ),
                "{what}"
            );
        }
        for (what, bytes) in [
            ("other JSON", r#"{"rows": []}"#.to_string()),
            ("array", "[1, 2]".to_string()),
            ("other format", good.replace(FORMAT, "unweight-bench")),
            ("other schema", good.replace("\"schema\":1", "\"schema\":2")),
        ] {
            std::fs::write(&path, bytes).unwrap();
            assert!(
                matches!(
                    Table::load(&path, &stamp()),
                    Err(TableError::Foreign { .. })
                ),
                "{what}"
            );
        }
        assert!(matches!(
            Table::load(&dir.path().join("none.json"), &stamp()),
            Err(TableError::Io { .. })
        ));
    }

    #[test]
    fn nearest_bucket() {
        let mut t = Table::new(stamp());
        for b in [1, 16, 256] {
            t.insert(key(b), choice());
        }
        let near = |m| {
            t.nearest(4096, 14336, Orientation::Transposed, Residency::Palette, m)
                .map(|e| e.key.bucket)
        };
        assert_eq!(near(1), Some(1));
        assert_eq!(near(3), Some(1));
        assert_eq!(near(4), Some(16)); // log2 tie between 1 and 16: the larger
        assert_eq!(near(40), Some(16));
        assert_eq!(near(100), Some(256));
        assert_eq!(near(4096), Some(256));
        assert!(t
            .nearest(4096, 14336, Orientation::Standard, Residency::Palette, 1)
            .is_none());
        assert!(t
            .nearest(4096, 14336, Orientation::Transposed, Residency::Raw, 1)
            .is_none());
        // Inserting a key again replaces it.
        t.insert(key(16), choice());
        assert_eq!(t.entries.len(), 3);
    }

    #[test]
    fn registry_hash_sees_names_and_sources() {
        let e = crate::gpu::jit::registry::VARIANTS;
        let h = registry_hash(e);
        assert_eq!(h, registry_hash(e));
        assert_ne!(h, registry_hash(&e[1..]));
        let mut v: Vec<RegistryEntry> = e.to_vec();
        v[0].source_hash ^= 1;
        assert_ne!(h, registry_hash(&v));
    }
}
