//! compress → verify → decompress through the binary restores every tensor and the metadata,
//! with every encoding and orientation; inspect reads plain files and bundles.

mod cli_common;

use cli_common::*;
use safetensors::Dtype;

fn round_trip(extra: &[&str]) -> (String, Tensors) {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let before = snapshot(&input);
    let mut args = vec!["compress", "model.safetensors", "-o", "b.safetensors"];
    args.extend_from_slice(extra);
    let o = unweight(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);

    let o = unweight(
        dir.path(),
        &["verify", "b.safetensors", "--against", "model.safetensors"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("OK"));

    let o = unweight(
        dir.path(),
        &["decompress", "b.safetensors", "-o", "back.safetensors"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (orig, orig_meta) = read_all(&input);
    let (back, back_meta) = read_all(&dir.path().join("back.safetensors"));
    assert!(orig == back, "tensors differ after the round trip");
    assert_eq!(orig_meta, back_meta);
    let o = unweight(
        dir.path(),
        &[
            "verify",
            "back.safetensors",
            "--against",
            "model.safetensors",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    assert!(snapshot(&input) == before, "the input changed");
    // New outputs get ordinary permissions (the umask's), not the temporary file's 0600.
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("b.safetensors"), mode("plain"));
    assert_eq!(mode("back.safetensors"), mode("plain"));
    let (bundle, meta) = read_all(&dir.path().join("b.safetensors"));
    assert_eq!(meta.as_ref().unwrap()["format"], "pt");
    assert!(meta.unwrap().contains_key("unweight"));
    (table, bundle)
}

#[test]
fn default_selection_huffman() {
    let (table, bundle) = round_trip(&[]);
    for t in ["gate_proj", "up_proj", "down_proj"] {
        assert!(
            table.contains(&format!("model.layers.0.mlp.{t}.weight")),
            "{table}"
        );
        assert!(bundle
            .iter()
            .any(|b| b.0 == format!("model.layers.0.mlp.{t}.weight.uw.idx")));
    }
    assert!(table.contains("total (3 tensors)"), "{table}");
    // Not selected: passed through unchanged, under their own names.
    for t in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.norm.weight",
        "model.head.fp32.weight",
    ] {
        assert!(bundle.iter().any(|b| b.0 == t), "{t}");
    }
    assert!(bundle.iter().all(|b| !b.0.ends_with("gate_proj.weight")));
}

#[test]
fn palette_transposed_and_folded() {
    let (table, bundle) = round_trip(&[
        "--encoding",
        "palette",
        "--tensors",
        "mlp|conv|q_proj",
        "--transpose",
        "down_proj|conv",
    ]);
    assert!(table.contains("palette"), "{table}");
    assert!(table.contains("transposed"), "{table}");
    assert!(table.contains("model.layers.0.conv.weight"), "{table}");
    assert!(table.contains("total (5 tensors)"), "{table}");
    assert!(
        !bundle.iter().any(|b| b.0.ends_with(".uw.chunk_offsets")),
        "palette has no chunk offsets"
    );
}

#[test]
fn huffman_everything_bf16_transposed() {
    let (_, bundle) = round_trip(&["--tensors", "(proj|conv)\\.weight$", "--transpose", "."]);
    // Every component is a 1-D U8 tensor.
    for (name, dtype, shape, _) in bundle.iter().filter(|b| b.0.contains(".uw.")) {
        assert_eq!((*dtype, shape.len()), (Dtype::U8, 1), "{name}");
    }
}

#[test]
fn inspect_plain_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let o = unweight(dir.path(), &["inspect", "model.safetensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("safetensors file"), "{text}");
    assert!(
        text.contains("model.layers.0.mlp.gate_proj.weight [96×130] plain BF16"),
        "{text}"
    );
    assert!(
        text.contains("exponent entropy")
            && text.contains("palette [")
            && text.contains("escape groups"),
        "{text}"
    );
    assert!(
        !text.contains("model.head.fp32.weight"),
        "only BF16 tensors are inspected"
    );

    let o = unweight(
        dir.path(),
        &[
            "compress",
            "model.safetensors",
            "-o",
            "b.safetensors",
            "--transpose",
            "down",
        ],
    );
    assert!(o.status.success());
    let o = unweight(dir.path(), &["inspect", "b.safetensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("unweight bundle, 8 tensors (3 compressed)"),
        "{text}"
    );
    assert!(
        text.contains(
            "model.layers.0.mlp.down_proj.weight [130×96] compressed, huffman, transposed"
        ),
        "{text}"
    );
}

#[test]
fn empty_and_tiny_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    write_safetensors(
        &path,
        &[
            ("a.weight", Dtype::BF16, vec![0, 5], vec![]),
            ("b.weight", Dtype::BF16, vec![1, 1], le_bytes(&[0x7FC3])),
            ("c.weight", Dtype::BF16, vec![3, 0, 2], vec![]),
        ],
        None,
    );
    for enc in ["huffman", "palette"] {
        let o = unweight(
            dir.path(),
            &[
                "compress",
                "tiny.safetensors",
                "-o",
                "b.safetensors",
                "--tensors",
                ".",
                "--encoding",
                enc,
                "--transpose",
                "b|c",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = unweight(
            dir.path(),
            &["decompress", "b.safetensors", "-o", "back.safetensors"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            read_all(&path) == read_all(&dir.path().join("back.safetensors")),
            "{enc}"
        );
        let o = unweight(
            dir.path(),
            &["verify", "b.safetensors", "--against", "tiny.safetensors"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn metadata_absent_stays_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_safetensors(
        &path,
        &[(
            "mlp.fc1.weight",
            Dtype::BF16,
            vec![2, 64],
            le_bytes(&bf16_values(128, 9)),
        )],
        None,
    );
    assert!(unweight(
        dir.path(),
        &["compress", "m.safetensors", "-o", "b.safetensors"]
    )
    .status
    .success());
    assert!(unweight(
        dir.path(),
        &["decompress", "b.safetensors", "-o", "back.safetensors"]
    )
    .status
    .success());
    assert_eq!(read_all(&dir.path().join("back.safetensors")).1, None);
}
