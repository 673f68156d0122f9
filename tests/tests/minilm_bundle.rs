//! Real weights through the bundle library: all-MiniLM-L6-v2 rounded to BF16 (nearest even) is
//! compressed into bundles, whose MLP weights meet the savings targets (huffman ≥ 32.5%,
//! palette ≥ 24.0% of their BF16 bytes, as stored), and decompressed back to identical tensors
//! and metadata. Needs UNWEIGHT_MINILM (scripts/setup-tools.sh).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use unweight::bundle::{self, CompressOptions, Selection};
use unweight::codec::Encoding;

fn minilm_bf16(dir: &Path) -> PathBuf {
    let src = std::env::var("UNWEIGHT_MINILM").unwrap_or_else(|_| {
        panic!("UNWEIGHT_MINILM is not set: run `source $(scripts/setup-tools.sh)` first (it fetches all-MiniLM-L6-v2)")
    });
    let bytes =
        std::fs::read(&src).unwrap_or_else(|e| panic!("{src}: {e} (run scripts/setup-tools.sh)"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| match v.dtype() {
            Dtype::F32 => {
                let data = v
                    .data()
                    .chunks_exact(4)
                    .flat_map(|c| {
                        half::bf16::from_f32(f32::from_le_bytes(c.try_into().unwrap()))
                            .to_bits()
                            .to_le_bytes()
                    })
                    .collect();
                (name, Dtype::BF16, v.shape().to_vec(), data)
            }
            d => (name, d, v.shape().to_vec(), v.data().to_vec()),
        })
        .collect();
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join("minilm-bf16.safetensors");
    safetensors::serialize_to_file(views, meta.metadata().clone(), &path).unwrap();
    path
}

#[test]
fn bf16_conversion_rounds_to_nearest_even() {
    let r = |b: u32| half::bf16::from_f32(f32::from_bits(b)).to_bits();
    assert_eq!(r(0x3F80_8000), 0x3F80);
    assert_eq!(r(0x3F81_8000), 0x3F82);
    assert_eq!(r(0x3F80_8001), 0x3F81);
    assert_eq!(r(0x7F7F_FFFF), 0x7F80);
}

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn read_all(path: &Path) -> (Tensors, Option<HashMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    (
        t,
        SafeTensors::read_metadata(&bytes)
            .unwrap()
            .1
            .metadata()
            .clone(),
    )
}

#[test]
fn minilm_bundle_savings_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let input = minilm_bf16(dir.path());
    let original = read_all(&input);
    let mut measured = Vec::new();
    for (encoding, transpose, target) in [
        (Encoding::Huffman, None, 32.5),
        (Encoding::Palette, None, 24.0),
        (Encoding::Huffman, Some(r"output\.dense"), 32.5),
        (Encoding::Palette, Some(r"intermediate"), 24.0),
    ] {
        let out = dir.path().join("b.safetensors");
        let opts = CompressOptions {
            encoding,
            selection: Selection::new(None, transpose).unwrap(),
        };
        let report = bundle::compress_file(&input, &out, &opts, &|_| {}).unwrap();
        let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 12, "{names:?}");
        assert!(names.iter().all(
            |n| n.ends_with("intermediate.dense.weight") || n.ends_with("output.dense.weight")
        ));
        assert!(names.iter().all(|n| !n.contains("attention")));

        // What the bundle stores for them, measured from the file itself.
        let b = bundle::Bundle::open(&out).unwrap();
        let stored: usize = b
            .layout
            .compressed
            .iter()
            .flat_map(|c| c.parts.ranges.values())
            .map(|r| r.len())
            .sum();
        let bf16: usize = report.tensors.iter().map(|t| t.bytes_before).sum();
        assert_eq!(
            stored,
            report.tensors.iter().map(|t| t.bytes_after).sum::<usize>()
        );
        let saved = 100.0 * (bf16 - stored) as f64 / bf16 as f64;
        measured.push(format!("{encoding} {transpose:?}: {saved:.2}%"));
        assert!(saved >= target, "{encoding}: saved {saved:.2}% < {target}%");

        let v = bundle::verify_file(&out, Some(&input), &|_| {}).unwrap();
        assert!(v.ok(), "{:?}", v.failures);
        assert_eq!(v.decoded, 12);

        let back = dir.path().join("back.safetensors");
        bundle::decompress_file(&out, &back, &|_| {}).unwrap();
        assert!(
            read_all(&back) == original,
            "{encoding}: tensors or metadata differ"
        );
    }
    eprintln!("MiniLM MLP savings: {}", measured.join(", "));
}
