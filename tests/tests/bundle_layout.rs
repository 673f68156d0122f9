//! The bundle as a file: any safetensors reader opens it, pass-through tensors are byte-identical
//! and aligned, components have the lengths FORMAT.md gives, and output is deterministic.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use unweight::bundle::{self, CompressOptions, Selection};
use unweight::codec::Encoding;

fn values(n: usize, seed: u16) -> Vec<u8> {
    (0..n as u16)
        .flat_map(|i| {
            let e: u16 = if i % 53 == 7 {
                140
            } else {
                118 + (i.wrapping_mul(seed) % 5)
            };
            ((i.wrapping_mul(31) & 0x807F) | (e << 7)).to_le_bytes()
        })
        .collect()
}

fn input(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("in.safetensors");
    let data = [
        values(100 * 130, 3),
        values(130 * 100, 5),
        values(7, 1),
        vec![9u8; 12],
        vec![1u8; 3],
    ];
    let views = vec![
        (
            "x.mlp.up_proj.weight",
            TensorView::new(Dtype::BF16, vec![100, 130], &data[0]).unwrap(),
        ),
        (
            "x.mlp.down_proj.weight",
            TensorView::new(Dtype::BF16, vec![130, 100], &data[1]).unwrap(),
        ),
        (
            "x.norm",
            TensorView::new(Dtype::BF16, vec![7], &data[2]).unwrap(),
        ),
        (
            "x.f32",
            TensorView::new(Dtype::F32, vec![3], &data[3]).unwrap(),
        ),
        (
            "x.u8",
            TensorView::new(Dtype::U8, vec![3], &data[4]).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(
        views,
        Some(HashMap::from([("format".into(), "pt".into())])),
        &p,
    )
    .unwrap();
    p
}

#[test]
fn bundle_is_plain_safetensors_with_documented_components() {
    let dir = tempfile::tempdir().unwrap();
    let inp = input(dir.path());
    let in_bytes = std::fs::read(&inp).unwrap();
    let orig = SafeTensors::deserialize(&in_bytes).unwrap();
    for encoding in [Encoding::Huffman, Encoding::Palette] {
        let out = dir.path().join("b.safetensors");
        let opts = CompressOptions {
            encoding,
            selection: Selection::new(None, Some("down")).unwrap(),
        };
        bundle::compress_file(&inp, &out, &opts, &|_| {}).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let (n, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(n % 8, 0, "header padded to 8 bytes");
        let st = SafeTensors::deserialize(&bytes).unwrap();

        // Pass-through tensors: identical, and aligned to their element size in the file.
        for name in ["x.norm", "x.f32", "x.u8"] {
            let (a, b) = (st.tensor(name).unwrap(), orig.tensor(name).unwrap());
            assert_eq!(
                (a.dtype(), a.shape(), a.data()),
                (b.dtype(), b.shape(), b.data()),
                "{name}"
            );
            let at = a.data().as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(
                at % a.dtype().bitsize().div_ceil(8),
                0,
                "{name} misaligned at {at}"
            );
        }
        assert!(
            st.tensor("x.mlp.up_proj.weight").is_err(),
            "compressed tensors are stored as components"
        );

        let u: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["unweight"]).unwrap();
        assert_eq!(u["format_version"], 3);
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        for (name, rows, cols, orient) in [
            ("x.mlp.up_proj.weight", 100, 130, "standard"),
            ("x.mlp.down_proj.weight", 100, 130, "transposed"),
        ] {
            let t = &u["tensors"][name];
            assert_eq!(
                (
                    t["rows"].as_u64(),
                    t["cols"].as_u64(),
                    t["orientation"].as_str()
                ),
                (Some(rows), Some(cols), Some(orient))
            );
            let padded = 192;
            let n_sym = rows as usize * padded;
            let groups = n_sym / 64;
            let len = |c: &str| {
                st.tensor(&format!("{name}.uw.{c}")).map(|v| {
                    assert_eq!((v.dtype(), v.shape().len()), (Dtype::U8, 1));
                    v.data().len()
                })
            };
            assert_eq!(t["groups"].as_u64(), Some(groups as u64));
            assert_eq!(len("sm").unwrap(), n_sym);
            assert_eq!(len("palette").unwrap(), 16);
            assert_eq!(len("esc_bitmap").unwrap(), 8 * groups.div_ceil(64));
            assert_eq!(
                len("esc_exp").unwrap(),
                64 * t["escapes"].as_u64().unwrap() as usize
            );
            match encoding {
                Encoding::Huffman => {
                    let bits = t["huffman"]["total_bits"].as_u64().unwrap() as usize;
                    assert_eq!(len("idx").unwrap(), bits.div_ceil(8));
                    assert_eq!(
                        len("chunk_offsets").unwrap(),
                        4 * n_sym
                            .div_ceil(t["huffman"]["chunk_symbols"].as_u64().unwrap() as usize)
                    );
                }
                _ => {
                    assert_eq!(len("idx").unwrap(), n_sym / 2);
                    assert!(len("chunk_offsets").is_err());
                    assert!(t.get("huffman").is_none());
                }
            }
        }

        // Deterministic: the same input and options give the same bytes.
        let again = dir.path().join("again.safetensors");
        bundle::compress_file(&inp, &again, &opts, &|_| {}).unwrap();
        assert!(
            std::fs::read(&again).unwrap() == bytes,
            "{encoding}: output differs between runs"
        );
    }
}
