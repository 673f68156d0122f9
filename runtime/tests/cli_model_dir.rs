//! Model directories through the binary: all-MiniLM-L6-v2 (BF16) split into 3 shards with an
//! index, a config, a tokenizer and a nested file, compressed and restored byte-identical file
//! for file; the index rewritten for plain safetensors readers; bad directories refused with
//! one line and nothing left behind. Needs UNWEIGHT_MINILM (scripts/setup-tools.sh).

mod cli_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cli_common::*;
use safetensors::SafeTensors;

const INDEX: &str = "model.safetensors.index.json";

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

/// The index's weight_map (tensor → shard file).
fn weight_map(dir: &Path) -> BTreeMap<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(INDEX)).unwrap()).unwrap();
    v["weight_map"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Loads every tensor of `dir` the way a plain safetensors loader does: through the index,
/// each tensor from the shard it names. name → (dtype, shape, bytes).
fn load_through_index(dir: &Path) -> BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let mut shards: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, shard) in weight_map(dir) {
        let bytes = shards
            .entry(shard.clone())
            .or_insert_with(|| std::fs::read(dir.join(&shard)).unwrap());
        let st = SafeTensors::deserialize(bytes).unwrap();
        let t = st
            .tensor(&name)
            .unwrap_or_else(|e| panic!("{name} not in {shard}: {e}"));
        out.insert(name, (t.dtype(), t.shape().to_vec(), t.data().to_vec()));
    }
    out
}

/// Every tensor of every shard of `dir`, read without the index.
fn all_tensors(dir: &Path) -> BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for s in MINILM_SHARDS {
        for (n, d, sh, b) in read_all(&dir.join(s)).0 {
            out.insert(n, (d, sh, b));
        }
    }
    out
}

#[test]
fn minilm_directory_round_trips_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    let before = tree_snapshot(&input);
    assert_eq!(
        before.len(),
        7,
        "3 shards, index, config, tokenizer, pooling config"
    );

    let o = unweight(tmp.path(), &["compress", "minilm", "-o", "packed"]);
    ok(&o);
    let text = stdout(&o);
    for s in MINILM_SHARDS {
        assert!(text.contains(s), "{text}");
    }
    assert!(text.contains("total (3 shards)"), "{text}");
    assert!(
        text.contains("1 index files rewritten, 3 other files copied"),
        "{text}"
    );
    let packed = tmp.path().join("packed");

    // Same files; everything but shards and index byte-identical.
    let (orig, comp) = (tree(&input), tree(&packed));
    assert_eq!(
        orig.keys().collect::<Vec<_>>(),
        comp.keys().collect::<Vec<_>>()
    );
    for f in ["config.json", "tokenizer.json", "1_Pooling/config.json"] {
        assert!(orig[Path::new(f)] == comp[Path::new(f)], "{f} changed");
    }
    // The 12 MLP weights are stored as components; the index sends a plain reader to the shard
    // holding each of them, and every tensor of every shard is in the index.
    let through = load_through_index(&packed);
    assert!(through == all_tensors(&packed), "index and shards disagree");
    let components: Vec<&String> = through.keys().filter(|n| n.contains(".uw.")).collect();
    assert_eq!(
        components.len(),
        12 * 6,
        "12 huffman tensors × 6 components"
    );
    let mlp = regex::Regex::new(r"layer\.\d+\.(intermediate|output)\.dense\.weight$").unwrap();
    assert_eq!(through.keys().filter(|n| mlp.is_match(n)).count(), 0);

    let o = unweight(tmp.path(), &["verify", "packed", "--against", "minilm"]);
    ok(&o);
    assert!(
        stdout(&o).contains("OK (3 shards, 12 compressed tensors decoded"),
        "{}",
        stdout(&o)
    );

    let o = unweight(tmp.path(), &["decompress", "packed", "-o", "restored"]);
    ok(&o);
    assert!(stdout(&o).contains("total (3 shards)"), "{}", stdout(&o));
    let restored = tmp.path().join("restored");
    let back = tree(&restored);
    assert_eq!(
        orig.keys().collect::<Vec<_>>(),
        back.keys().collect::<Vec<_>>()
    );
    for (f, bytes) in &orig {
        assert!(back[f] == *bytes, "{} is not byte-identical", f.display());
    }
    // Interop: a plain safetensors reader loads the restored directory shard by shard through
    // its index, and gets every original tensor.
    assert!(load_through_index(&restored) == all_tensors(&input));

    let o = unweight(tmp.path(), &["inspect", "packed"]);
    ok(&o);
    assert!(stdout(&o).contains("model directory, 3 shards, 1 index files, 3 other files"));
    assert!(stdout(&o).contains("total (3 shards)"));

    assert!(tree_snapshot(&input) == before, "the input changed");
    // Nothing beside the outputs (no temporary directory left).
    let mut left: Vec<_> = extra_files(tmp.path(), &[]);
    left.sort();
    assert_eq!(left, vec![input.clone(), packed, restored]);
}

#[test]
fn shards_without_selected_tensors_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    // Layer 0 lives in the first shard only.
    let o = unweight(
        tmp.path(),
        &[
            "compress",
            "minilm",
            "-o",
            "packed",
            "--tensors",
            r"layer\.0\..*dense\.weight$",
        ],
    );
    ok(&o);
    assert!(
        stdout(&o).contains("(copied: nothing selected)"),
        "{}",
        stdout(&o)
    );
    let packed = tmp.path().join("packed");
    for s in &MINILM_SHARDS[1..] {
        assert!(std::fs::read(packed.join(s)).unwrap() == std::fs::read(input.join(s)).unwrap());
    }
    let o = unweight(tmp.path(), &["verify", "packed", "--against", "minilm"]);
    ok(&o);
    let o = unweight(tmp.path(), &["decompress", "packed", "-o", "restored"]);
    ok(&o);
    assert!(tree(&tmp.path().join("restored")) == tree(&input));
}

#[test]
fn verify_against_finds_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    ok(&unweight(
        tmp.path(),
        &["compress", "minilm", "-o", "packed"],
    ));
    // The original's tokenizer differs from the copy; one original shard lost a byte.
    let mut tok = std::fs::read(input.join("tokenizer.json")).unwrap();
    tok.push(b' ');
    std::fs::write(input.join("tokenizer.json"), tok).unwrap();
    std::fs::write(input.join("extra.txt"), "new").unwrap();
    let o = unweight(tmp.path(), &["verify", "packed", "--against", "minilm"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("tokenizer.json: differs from"), "{err}");
    assert!(err.contains("extra.txt: missing from packed"), "{err}");
    assert!(stdout(&o).contains("FAILED (2 problems"), "{}", stdout(&o));
}

/// A failing directory command: one line naming `needles`, nothing created beside the input,
/// the input untouched.
fn fails_cleanly(tmp: &Path, args: &[&str], needles: &[&str]) {
    let before: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let snaps: Vec<_> = before
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| tree_snapshot(p))
        .collect();
    assert_fails(&unweight(tmp, args), needles);
    let mut after: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    after.sort();
    let mut want = before.clone();
    want.sort();
    assert_eq!(after, want, "the command left something behind");
    let again: Vec<_> = before
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| tree_snapshot(p))
        .collect();
    assert!(snaps == again, "an input changed");
}

#[test]
fn directory_without_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("empty");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), "{}").unwrap();
    for cmd in ["compress", "decompress"] {
        fails_cleanly(
            tmp.path(),
            &[cmd, "empty", "-o", "out"],
            &["empty: no .safetensors file in the directory"],
        );
    }
    fails_cleanly(tmp.path(), &["verify", "empty"], &["no .safetensors file"]);
    fails_cleanly(tmp.path(), &["inspect", "empty"], &["no .safetensors file"]);
}

#[test]
fn index_naming_a_missing_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    let index = input.join(INDEX);
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replacen("model-00003-of-00003", "model-00004-of-00003", 1),
    )
    .unwrap();
    for args in [
        &["compress", "minilm", "-o", "out"][..],
        &["verify", "minilm"][..],
    ] {
        fails_cleanly(
            tmp.path(),
            args,
            &[
                INDEX,
                "to shard `model-00004-of-00003.safetensors`, which is not in the directory",
            ],
        );
    }
}

#[test]
fn shard_that_is_not_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    std::fs::write(
        input.join(MINILM_SHARDS[1]),
        b"not a safetensors file at all",
    )
    .unwrap();
    for args in [
        &["compress", "minilm", "-o", "out"][..],
        &["decompress", "minilm", "-o", "out"][..],
        &["verify", "minilm"][..],
        &["inspect", "minilm"][..],
    ] {
        fails_cleanly(
            tmp.path(),
            args,
            &[MINILM_SHARDS[1], "not a valid safetensors file"],
        );
    }
}

#[test]
fn failure_in_a_later_shard_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    // The last shard's selected tensor is F32: compress fails after two shards are written.
    let last = input.join(MINILM_SHARDS[2]);
    let (tensors, meta) = read_all(&last);
    let mut refs: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    refs.push((
        "encoder.layer.9.intermediate.dense.weight",
        safetensors::Dtype::F32,
        vec![2, 2],
        vec![0; 16],
    ));
    write_safetensors(&last, &refs, meta);
    fails_cleanly(
        tmp.path(),
        &["compress", "minilm", "-o", "out"],
        &[
            MINILM_SHARDS[2],
            "encoder.layer.9.intermediate.dense.weight",
            "F32",
        ],
    );

    // A compressed directory whose last shard no longer decodes (a component byte flipped).
    let tmp = tempfile::tempdir().unwrap();
    minilm_dir(tmp.path());
    ok(&unweight(
        tmp.path(),
        &["compress", "minilm", "-o", "packed"],
    ));
    let shard = tmp.path().join("packed").join(MINILM_SHARDS[2]);
    let mut bytes = std::fs::read(&shard).unwrap();
    let (n, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let (name, info) = meta
        .tensors()
        .into_iter()
        .find(|(name, _)| name.ends_with(".uw.sm"))
        .unwrap();
    bytes[8 + n + info.data_offsets.0] ^= 0x01;
    std::fs::write(&shard, bytes).unwrap();
    fails_cleanly(
        tmp.path(),
        &["decompress", "packed", "-o", "out"],
        &[
            MINILM_SHARDS[2],
            name.trim_end_matches(".uw.sm"),
            "stored-components checksum mismatch",
        ],
    );
}

#[test]
fn output_must_be_new_and_outside_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    minilm_dir(tmp.path());
    std::fs::create_dir_all(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/x"), "keep me").unwrap();
    fails_cleanly(
        tmp.path(),
        &["compress", "minilm", "-o", "taken"],
        &["taken: already exists"],
    );
    fails_cleanly(
        tmp.path(),
        &["compress", "minilm", "-o", "minilm/out"],
        &["minilm/out: lies inside the input directory"],
    );
    fails_cleanly(
        tmp.path(),
        &["decompress", "minilm", "-o", "out"],
        &["minilm: no shard is an unweight bundle"],
    );
    fails_cleanly(
        tmp.path(),
        &["verify", "minilm", "--against", "minilm/config.json"],
        &["--against needs a directory"],
    );
}

#[test]
fn library_api_files_and_directories() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use unweight::bundle::{CompressOptions, Selection};
    use unweight::model;
    let tmp = tempfile::tempdir().unwrap();
    let input = minilm_dir(tmp.path());
    let opts = CompressOptions {
        encoding: unweight::codec::Encoding::Huffman,
        selection: Selection::new(None, None).unwrap(),
    };
    // Progress sums to progress_total for each operation.
    let packed = tmp.path().join("packed");
    let done = AtomicU64::new(0);
    let r = model::compress_path(&input, &packed, &opts, &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(
        done.load(Ordering::Relaxed),
        model::progress_total(&input).unwrap()
    );
    assert!(r.is_dir);
    assert_eq!(r.shards.len(), 3);
    assert_eq!(
        r.shards
            .iter()
            .map(|s| s.report.as_ref().unwrap().tensors.len())
            .sum::<usize>(),
        12
    );
    let done = AtomicU64::new(0);
    let v = model::verify_path(&packed, Some(&input), &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert!(v.ok(), "{:?}", v.failures());
    assert_eq!(
        done.load(Ordering::Relaxed),
        model::progress_total(&packed).unwrap()
    );
    let done = AtomicU64::new(0);
    let restored = tmp.path().join("restored");
    model::decompress_path(&packed, &restored, &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(
        done.load(Ordering::Relaxed),
        model::progress_total(&packed).unwrap()
    );
    assert!(tree(&restored) == tree(&input));

    // load_file: every original tensor and the metadata of a compressed shard.
    for s in MINILM_SHARDS {
        let d = model::load_file(&packed.join(s)).unwrap();
        let (want, meta) = read_all(&input.join(s));
        let got: Vec<_> = d
            .tensors
            .into_iter()
            .map(|(n, (dt, sh, b))| (n, dt, sh, b))
            .collect();
        assert!(got == want, "{s}: load_file differs");
        assert_eq!(d.metadata, meta.map(|m| m.into_iter().collect()));
    }

    // Errors display as the CLI's one line.
    let e = model::compress_path(
        &tmp.path().join("nope"),
        &tmp.path().join("o"),
        &opts,
        &|_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("nope: cannot open"), "{e}");
    let e = model::decompress_path(&input, &tmp.path().join("o"), &|_| {}).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no shard is an unweight bundle (decompress takes a compressed directory)",
            input.display()
        )
    );
}

#[test]
fn verify_checks_the_index_against_the_shards() {
    let tmp = tempfile::tempdir().unwrap();
    minilm_dir(tmp.path());
    ok(&unweight(
        tmp.path(),
        &["compress", "minilm", "-o", "packed"],
    ));
    let o = unweight(tmp.path(), &["verify", "packed"]);
    ok(&o);
    assert!(
        stdout(&o).contains("packed: OK (3 shards, 12 compressed tensors decoded, hashes match)")
    );
    // Point one component at a shard that exists but does not hold it.
    let index = tmp.path().join("packed").join(INDEX);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let map = v["weight_map"].as_object_mut().unwrap();
    let (name, shard) = map
        .iter()
        .find(|(n, _)| n.ends_with(".uw.idx"))
        .map(|(n, s)| (n.clone(), s.as_str().unwrap().to_string()))
        .unwrap();
    let other = MINILM_SHARDS.iter().find(|s| **s != shard).unwrap();
    map.insert(name.clone(), serde_json::Value::String(other.to_string()));
    std::fs::write(&index, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let o = unweight(tmp.path(), &["verify", "packed"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!(
            "maps tensor `{name}` to `{other}`, which does not hold it"
        )),
        "{}",
        stderr(&o)
    );
}
