//! The stable counterpart of the cargo-fuzz target: damaged bundles (every truncation, a bit
//! flipped in every byte, random multi-byte damage) are read with errors, never panics, and a
//! compressed tensor that still decodes is always the original (the hash guards it).

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use unweight::bundle::{self, CompressOptions, Decoded, Selection};
use unweight::codec::Encoding;

fn bits(n: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .flat_map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            // Mostly small weights; every 29th value an outlier exponent to make escape groups.
            let e = if i % 29 == 0 {
                150 + (s % 40)
            } else {
                118 + (s % 7)
            };
            let v = ((s >> 16) & 0x807F) as u16 | ((e as u16) << 7);
            v.to_le_bytes()
        })
        .collect()
}

/// Small bundles (huffman, palette; standard and transposed tensors) and the original tensors,
/// built once for all tests and cases.
fn bundles() -> &'static [(Vec<u8>, Decoded)] {
    static BUNDLES: std::sync::OnceLock<Vec<(Vec<u8>, Decoded)>> = std::sync::OnceLock::new();
    BUNDLES.get_or_init(|| build(tempfile::tempdir().unwrap().path()))
}

fn build(dir: &Path) -> Vec<(Vec<u8>, Decoded)> {
    let input = dir.join("in.safetensors");
    let data = [
        bits(3 * 70, 1),
        bits(70 * 3, 2),
        bits(2 * 64, 3),
        vec![1, 2, 3, 4],
    ];
    let views = vec![
        (
            "a.mlp.up_proj.weight",
            TensorView::new(Dtype::BF16, vec![3, 70], &data[0]).unwrap(),
        ),
        (
            "a.mlp.down_proj.weight",
            TensorView::new(Dtype::BF16, vec![70, 3], &data[1]).unwrap(),
        ),
        (
            "a.mlp.gate_proj.weight",
            TensorView::new(Dtype::BF16, vec![2, 64], &data[2]).unwrap(),
        ),
        (
            "a.other",
            TensorView::new(Dtype::U8, vec![4], &data[3]).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(
        views,
        Some(HashMap::from([("k".into(), "v".into())])),
        &input,
    )
    .unwrap();
    let original = bundle::decode_bytes(&std::fs::read(&input).unwrap()).unwrap();
    [Encoding::Huffman, Encoding::Palette]
        .into_iter()
        .map(|encoding| {
            let out = dir.join("b.safetensors");
            let opts = CompressOptions {
                encoding,
                selection: Selection::new(None, Some("down")).unwrap(),
            };
            bundle::compress_file(&input, &out, &opts, &|_| {}).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(
                bundle::decode_bytes(&bytes).unwrap(),
                original,
                "undamaged bundle decodes to the original"
            );
            (bytes, original.clone())
        })
        .collect()
}

/// Reads damaged bytes: an error is fine; decoded compressed tensors must be the original.
fn check(bytes: &[u8], original: &Decoded) {
    if let Ok(layout) = bundle::parse(bytes) {
        if let Ok(d) = bundle::decode_bytes(bytes) {
            for c in &layout.compressed {
                assert_eq!(
                    d.tensors.get(&c.name),
                    original.tensors.get(&c.name),
                    "{} decoded to different data",
                    c.name
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    for (bytes, _) in bundles() {
        for cut in 0..bytes.len() {
            assert!(
                bundle::decode_bytes(&bytes[..cut]).is_err(),
                "truncation to {cut} bytes was accepted"
            );
        }
    }
}

#[test]
fn a_bit_flipped_in_any_byte_never_panics_or_misdecodes() {
    for (bytes, original) in bundles() {
        let mut damaged = bytes.clone();
        for i in 0..bytes.len() {
            for bit in [i % 8, (i + 3) % 8] {
                damaged[i] ^= 1 << bit;
                check(&damaged, original);
                damaged[i] ^= 1 << bit;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn random_damage_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), which in 0usize..2) {
        let (bytes, original) = &bundles()[which];
        let mut damaged = bytes.clone();
        for (at, v) in edits {
            let i = at.index(damaged.len());
            damaged[i] = v;
        }
        check(&damaged, original);
    }
}
