//! Real weights through the bundle library: all-MiniLM-L6-v2 rounded to BF16 (nearest even) is
//! compressed into bundles, whose MLP weights meet the savings targets (huffman ≥ 32.5%,
//! palette ≥ 24.0% of their BF16 bytes, as stored), and decompressed back to identical tensors
//! and metadata. Needs UNWEIGHT_MINILM (scripts/setup-tools.sh).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use unweight::bundle::{self, CompressOptions, Selection};
use unweight::codec::Encoding;

fn minilm_bf16(dir: &Path) -> PathBuf {
    let path = dir.join("minilm-bf16.safetensors");
    unweight::minilm::write_bf16_copy(&unweight::minilm::path_from_env().unwrap(), &path).unwrap();
    path
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
        assert!(names.iter().all(|n| unweight::minilm::is_mlp_weight(n)));

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
