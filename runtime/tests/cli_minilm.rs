//! Real weights through the binary: all-MiniLM-L6-v2 rounded to BF16, compressed with each
//! encoding (and transposed output projections), verified, decompressed to identical tensors
//! and metadata. Needs UNWEIGHT_MINILM (scripts/setup-tools.sh).

mod cli_common;

use cli_common::*;

/// BF16 bytes of the MLP weights and the bytes their components take in the bundle.
fn mlp_sizes(bundle: &std::path::Path) -> (usize, usize) {
    let (tensors, meta) = read_all(bundle);
    let u: serde_json::Value = serde_json::from_str(&meta.unwrap()["unweight"]).unwrap();
    let mlp = regex::Regex::new(r"layer\.\d+\.(intermediate|output)\.dense\.weight$").unwrap();
    let (mut before, mut after) = (0, 0);
    for (name, t) in u["tensors"].as_object().unwrap() {
        assert!(
            mlp.is_match(name),
            "{name} compressed by the default selection"
        );
        before += 2 * t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .product::<usize>();
        after += tensors
            .iter()
            .filter(|c| c.0.starts_with(&format!("{name}.uw.")))
            .map(|c| c.3.len())
            .sum::<usize>();
    }
    assert_eq!(
        u["tensors"].as_object().unwrap().len(),
        12,
        "6 layers × 2 MLP weights"
    );
    (before, after)
}

#[test]
fn minilm_compress_verify_decompress() {
    let dir = tempfile::tempdir().unwrap();
    let input = minilm_bf16(dir.path());
    let before = snapshot(&input);
    let name = input.file_name().unwrap().to_str().unwrap();
    for (enc, extra, min_saved) in [
        ("huffman", None, 32.5),
        ("palette", None, 24.0),
        ("huffman", Some("output\\.dense"), 32.5),
        ("palette", Some("output\\.dense"), 24.0),
    ] {
        let mut args = vec!["compress", name, "-o", "b.safetensors", "--encoding", enc];
        if let Some(t) = extra {
            args.extend(["--transpose", t]);
        }
        let o = unweight(dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let (bf16, stored) = mlp_sizes(&dir.path().join("b.safetensors"));
        let saved = 100.0 * (bf16 - stored) as f64 / bf16 as f64;
        eprintln!("{enc} transpose={extra:?}: MLP {bf16} → {stored} bytes, {saved:.2}% saved");
        assert!(saved >= min_saved, "{enc}: {saved:.2}% < {min_saved}%");

        let o = unweight(dir.path(), &["verify", "b.safetensors", "--against", name]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let o = unweight(
            dir.path(),
            &["decompress", "b.safetensors", "-o", "back.safetensors"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            read_all(&input) == read_all(&dir.path().join("back.safetensors")),
            "{enc}: round trip differs"
        );
    }
    assert!(snapshot(&input) == before, "the input changed");
}
