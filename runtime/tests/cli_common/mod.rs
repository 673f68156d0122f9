//! Helpers of the CLI tests: small fixture checkpoints, running the built binary, and checks
//! that a failed command left nothing behind.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Tensors as (name, dtype, shape, bytes), sorted by name.
pub type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

pub const BIN: &str = env!("CARGO_BIN_EXE_unweight");

/// Runs `unweight ARGS` in `dir`.
pub fn unweight(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the unweight binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, one stderr line with every `needles`, no panic.
pub fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout:\n{}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

/// Deterministic BF16 bits: Gaussian-like values plus every kind of special value.
pub fn bf16_values(n: usize, seed: u64) -> Vec<u16> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let specials = [
        0x7FC1u16, 0xFF80, 0x7F80, 0x8000, 0x0000, 0x0001, 0x807F, 0x7F7F, 0x0080,
    ];
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i % 97 == 5 {
                return specials[(s % specials.len() as u64) as usize];
            }
            // Sum of uniforms ≈ normal; scale ~0.02.
            let u: f32 = (0..4)
                .map(|k| ((s >> (k * 16)) & 0xFFFF) as f32 / 65536.0)
                .sum::<f32>()
                - 2.0;
            half::bf16::from_f32(u * 0.03).to_bits()
        })
        .collect()
}

pub fn le_bytes(bits: &[u16]) -> Vec<u8> {
    bits.iter().flat_map(|b| b.to_le_bytes()).collect()
}

/// Writes a safetensors file of `(name, dtype, shape, bytes)` with `metadata`.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                TensorView::new(*d, s.clone(), b).expect("consistent fixture"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, path).expect("fixture written");
}

/// A small Llama-like checkpoint: MLP projections with rows not a multiple of 64, an attention
/// weight, a 1-D norm, a rank-4 BF16 tensor, an F32 and an I64 tensor, and metadata.
pub fn fixture(dir: &Path) -> PathBuf {
    let path = dir.join("model.safetensors");
    let bf = |n: usize, seed| le_bytes(&bf16_values(n, seed));
    let tensors = vec![
        (
            "model.layers.0.mlp.gate_proj.weight",
            Dtype::BF16,
            vec![96, 130],
            bf(96 * 130, 1),
        ),
        (
            "model.layers.0.mlp.up_proj.weight",
            Dtype::BF16,
            vec![96, 130],
            bf(96 * 130, 2),
        ),
        (
            "model.layers.0.mlp.down_proj.weight",
            Dtype::BF16,
            vec![130, 96],
            bf(130 * 96, 3),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            Dtype::BF16,
            vec![64, 64],
            bf(64 * 64, 4),
        ),
        (
            "model.layers.0.conv.weight",
            Dtype::BF16,
            vec![2, 3, 4, 70],
            bf(2 * 3 * 4 * 70, 5),
        ),
        ("model.norm.weight", Dtype::BF16, vec![130], bf(130, 6)),
        (
            "model.head.fp32.weight",
            Dtype::F32,
            vec![4, 4],
            (0..64u8).collect(),
        ),
        (
            "model.position_ids",
            Dtype::I64,
            vec![1, 3],
            (0..24u8).collect(),
        ),
    ];
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("note".to_string(), "fixture \"quoted\"".to_string()),
    ]);
    write_safetensors(&path, &tensors, Some(metadata));
    path
}

/// Bytes and modification time: what "the input was not modified" compares.
pub fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

/// Files in `dir` other than `keep`: a failed command must leave none (no output, no temp file).
pub fn extra_files(dir: &Path, keep: &[&Path]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.iter().any(|k| k == p))
        .collect()
}

/// Byte range of tensor `name` in a safetensors file's bytes.
pub fn tensor_range(bytes: &[u8], name: &str) -> Range<usize> {
    let (n, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let info = meta
        .info(name)
        .unwrap_or_else(|| panic!("no tensor {name}"));
    8 + n + info.data_offsets.0..8 + n + info.data_offsets.1
}

/// Tensors (name → dtype, shape, bytes) and metadata of a safetensors file, via the
/// safetensors crate (an independent reader).
pub fn read_all(path: &Path) -> (Tensors, Option<HashMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    (t, meta.metadata().clone())
}

/// Rewrites a safetensors file's header JSON with `edit`, keeping the data section.
pub fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Edits the `unweight` JSON inside a bundle's metadata.
pub fn edit_unweight(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    edit_header(path, |h| {
        let s = h["__metadata__"]["unweight"].as_str().unwrap().to_string();
        let mut u: serde_json::Value = serde_json::from_str(&s).unwrap();
        edit(&mut u);
        h["__metadata__"]["unweight"] = serde_json::Value::String(u.to_string());
    });
}

/// all-MiniLM-L6-v2 (fp32) converted to a BF16 safetensors file in `dir`: every F32 tensor
/// rounded to nearest even, other tensors and the metadata kept.
pub fn minilm_bf16(dir: &Path) -> PathBuf {
    let src = std::env::var("UNWEIGHT_MINILM").unwrap_or_else(|_| {
        panic!("UNWEIGHT_MINILM is not set: run `source $(scripts/setup-tools.sh)` first (it fetches all-MiniLM-L6-v2)")
    });
    let bytes =
        std::fs::read(&src).unwrap_or_else(|e| panic!("{src}: {e} (run scripts/setup-tools.sh)"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(name, v)| match v.dtype() {
            Dtype::F32 => {
                let bits: Vec<u16> = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| {
                        half::bf16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_bits()
                    })
                    .collect();
                (name, Dtype::BF16, v.shape().to_vec(), le_bytes(&bits))
            }
            d => (name, d, v.shape().to_vec(), v.data().to_vec()),
        })
        .collect();
    let refs: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    let path = dir.join("minilm-bf16.safetensors");
    write_safetensors(&path, &refs, meta.metadata().clone());
    path
}

/// Shard file names of [`minilm_dir`].
pub const MINILM_SHARDS: [&str; 3] = [
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
];

/// A model directory `dir/minilm` as checkpoints are published: all-MiniLM-L6-v2 rounded to
/// BF16 (see [`minilm_bf16`]) split into 3 shards (tensors in name order, a third each, the
/// original metadata on every shard), `model.safetensors.index.json` as `transformers` writes
/// it (sorted keys, two-space indent, final newline), and the checkpoint's own `config.json`,
/// `tokenizer.json` and `1_Pooling/config.json`.
pub fn minilm_dir(dir: &Path) -> PathBuf {
    let single = minilm_bf16(dir);
    let (tensors, meta) = read_all(&single);
    std::fs::remove_file(&single).unwrap();
    let root = dir.join("minilm");
    std::fs::create_dir_all(root.join("1_Pooling")).unwrap();
    let per = tensors.len().div_ceil(MINILM_SHARDS.len());
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (chunk, shard) in tensors.chunks(per).zip(MINILM_SHARDS) {
        let refs: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = chunk
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect();
        write_safetensors(&root.join(shard), &refs, meta.clone());
        for (n, _, _, b) in chunk {
            weight_map.insert(n.clone(), serde_json::Value::String(shard.into()));
            total += b.len();
        }
    }
    let index = serde_json::json!({
        "metadata": {"total_size": total},
        "weight_map": weight_map,
    });
    let mut text = serde_json::to_string_pretty(&index).unwrap();
    text.push('\n');
    std::fs::write(root.join("model.safetensors.index.json"), text).unwrap();
    let src = Path::new(&std::env::var("UNWEIGHT_MINILM").unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    for f in ["config.json", "tokenizer.json", "1_Pooling/config.json"] {
        std::fs::copy(src.join(f), root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    root
}

/// Every file under `root` (relative path → bytes), recursively.
pub fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, rel: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            } else {
                out.insert(r.clone(), std::fs::read(root.join(&r)).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// [`tree`] with every file's modification time: what "the input was not touched" compares.
pub fn tree_snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    tree(root)
        .into_iter()
        .map(|(p, b)| {
            let m = std::fs::metadata(root.join(&p))
                .unwrap()
                .modified()
                .unwrap();
            (p, b, m)
        })
        .collect()
}
