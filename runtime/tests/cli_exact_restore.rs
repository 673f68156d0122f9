//! `decompress` restores the very bytes that were compressed: the bundle keeps the input's
//! header, and the tensors go back to the offsets it names, whatever writer made the file
//! (tensor order, metadata key order, padding, a BF16 tensor at an odd offset). Bundles
//! without the kept header still restore every tensor and the metadata.

mod cli_common;

use cli_common::*;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

/// compress (extra args) → decompress; the restored file must equal the input byte for byte.
fn exact(dir: &std::path::Path, input: &str, extra: &[&str]) {
    let mut args = vec!["compress", input, "-o", "b.safetensors"];
    args.extend_from_slice(extra);
    ok(&unweight(dir, &args));
    ok(&unweight(
        dir,
        &["verify", "b.safetensors", "--against", input],
    ));
    ok(&unweight(
        dir,
        &["decompress", "b.safetensors", "-o", "back.safetensors"],
    ));
    assert!(
        std::fs::read(dir.join(input)).unwrap()
            == std::fs::read(dir.join("back.safetensors")).unwrap(),
        "{input} {extra:?}: not restored byte for byte"
    );
}

#[test]
fn safetensors_writer_output_restores_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    exact(dir.path(), "model.safetensors", &[]);
    exact(
        dir.path(),
        "model.safetensors",
        &["--encoding", "palette", "--transpose", "down_proj"],
    );
    exact(
        dir.path(),
        "model.safetensors",
        &["--tensors", r"(proj|conv)\.weight$"],
    );
}

/// A file as another writer might lay it out: U8 first with an odd length, so the BF16 tensor
/// after it starts at an odd offset; header keys in no particular order; no padding.
fn odd_file(path: &std::path::Path) -> Vec<u8> {
    let w = le_bytes(&bf16_values(64 * 70, 9));
    let header = format!(
        r#"{{"z.u8":{{"dtype":"U8","shape":[3],"data_offsets":[0,3]}},"__metadata__":{{"b":"2","a":"1"}},"x.mlp.up_proj.weight":{{"dtype":"BF16","shape":[64,70],"data_offsets":[3,{}]}}}}"#,
        3 + w.len()
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[7, 8, 9]);
    bytes.extend_from_slice(&w);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn unusual_layout_restores_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    odd_file(&dir.path().join("odd.safetensors"));
    // The reference reader accepts it (it is a valid safetensors file).
    let (tensors, _) = read_all(&dir.path().join("odd.safetensors"));
    assert_eq!(tensors.len(), 2);
    exact(dir.path(), "odd.safetensors", &[]);
    exact(
        dir.path(),
        "odd.safetensors",
        &["--encoding", "palette", "--transpose", "up_proj"],
    );
}

#[test]
fn bundle_without_kept_header_restores_tensors_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    ok(&unweight(
        dir.path(),
        &["compress", "model.safetensors", "-o", "b.safetensors"],
    ));
    let b = dir.path().join("b.safetensors");
    edit_unweight(&b, |u| {
        u.as_object_mut()
            .unwrap()
            .remove("original_header")
            .unwrap();
    });
    ok(&unweight(
        dir.path(),
        &["verify", "b.safetensors", "--against", "model.safetensors"],
    ));
    ok(&unweight(
        dir.path(),
        &["decompress", "b.safetensors", "-o", "back.safetensors"],
    ));
    assert!(read_all(&input) == read_all(&dir.path().join("back.safetensors")));
}

#[test]
fn tampered_kept_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    ok(&unweight(
        dir.path(),
        &["compress", "model.safetensors", "-o", "b.safetensors"],
    ));
    let b = dir.path().join("b.safetensors");
    edit_unweight(&b, |u| {
        let h = u["original_header"].as_str().unwrap().to_string();
        let changed = h.replacen("[96,130]", "[130,96]", 1);
        assert_ne!(h, changed);
        u["original_header"] = serde_json::Value::String(changed);
    });
    let before = snapshot(&b);
    let o = unweight(
        dir.path(),
        &["decompress", "b.safetensors", "-o", "back.safetensors"],
    );
    assert_fails(
        &o,
        &["b.safetensors", "`original_header` gives it another shape"],
    );
    assert_eq!(
        extra_files(dir.path(), &[&input, &b]),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(snapshot(&b) == before);
    let o = unweight(dir.path(), &["verify", "b.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`original_header` gives it another shape"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn large_tensors_decode_window_by_window() {
    // Each tensor is above decompress's 64 MB window, so each gets a window of its own and the
    // second decodes from component buffers kept from the first (smaller: a pool buffer with
    // room to spare is reused).
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ((4096usize, 8704usize), (4096usize, 8192usize));
    let tensors = vec![
        (
            "model.layers.0.mlp.up_proj.weight",
            safetensors::Dtype::BF16,
            vec![a.0, a.1],
            le_bytes(&bf16_values(a.0 * a.1, 21)),
        ),
        (
            "model.layers.1.mlp.up_proj.weight",
            safetensors::Dtype::BF16,
            vec![b.0, b.1],
            le_bytes(&bf16_values(b.0 * b.1, 22)),
        ),
    ];
    write_safetensors(&dir.path().join("big.safetensors"), &tensors, None);
    exact(dir.path(), "big.safetensors", &[]);
}

#[test]
fn restores_byte_identical_on_tmpfs() {
    // On tmpfs the output's pages are reserved another way (the front half populated on every
    // core, the back half allocated by `fallocate`); the restore is still exact, and nothing but
    // the outputs is left beside the input.
    let shm = std::path::Path::new("/dev/shm");
    assert!(
        shm.is_dir(),
        "this test needs the tmpfs at /dev/shm (Linux)"
    );
    let dir = tempfile::tempdir_in(shm).unwrap();
    let (a, b) = ((2048usize, 4160usize), (1000usize, 3000usize));
    let tensors = vec![
        (
            "model.layers.0.mlp.gate_proj.weight",
            safetensors::Dtype::BF16,
            vec![a.0, a.1],
            le_bytes(&bf16_values(a.0 * a.1, 31)),
        ),
        (
            "model.layers.0.mlp.up_proj.weight",
            safetensors::Dtype::BF16,
            vec![b.0, b.1],
            le_bytes(&bf16_values(b.0 * b.1, 32)),
        ),
        (
            "model.norm.weight",
            safetensors::Dtype::BF16,
            vec![77],
            le_bytes(&bf16_values(77, 33)),
        ),
    ];
    write_safetensors(&dir.path().join("m.safetensors"), &tensors, None);
    exact(dir.path(), "m.safetensors", &[]);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["b.safetensors", "back.safetensors", "m.safetensors"]);
}
