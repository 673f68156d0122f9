//! Bad input to the CLI: each case fails with one line naming the file, the tensor and the
//! problem, exit status 1, no panic, nothing left in the directory, and the input untouched.

mod cli_common;

use std::path::{Path, PathBuf};

use cli_common::*;

struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture(dir.path());
        Self { dir, input }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a command that must fail; checks the input is untouched and nothing was left beside it.
    fn fails(&self, args: &[&str], needles: &[&str], keep: &[&Path]) {
        let files: Vec<&Path> = keep.iter().copied().filter(|p| p.is_file()).collect();
        let before: Vec<_> = files.iter().map(|p| snapshot(p)).collect();
        let out = unweight(self.dir.path(), args);
        assert_fails(&out, needles);
        let after: Vec<_> = files.iter().map(|p| snapshot(p)).collect();
        assert!(before == after, "a kept file changed");
        assert_eq!(
            extra_files(self.dir.path(), keep),
            Vec::<PathBuf>::new(),
            "left behind"
        );
    }

    fn bundle(&self, name: &str, extra: &[&str]) -> PathBuf {
        let out = self.path(name);
        let mut args = vec!["compress", "model.safetensors", "-o", name];
        args.extend_from_slice(extra);
        let o = unweight(self.dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    }
}

#[test]
fn missing_input() {
    let c = Case::new();
    c.fails(
        &["compress", "nope.safetensors", "-o", "out.safetensors"],
        &["nope.safetensors", "cannot open"],
        &[&c.input],
    );
    c.fails(
        &["decompress", "nope.safetensors", "-o", "out.safetensors"],
        &["nope.safetensors"],
        &[&c.input],
    );
    c.fails(
        &["verify", "nope.safetensors"],
        &["nope.safetensors"],
        &[&c.input],
    );
    c.fails(
        &["inspect", "nope.safetensors"],
        &["nope.safetensors"],
        &[&c.input],
    );
}

#[test]
fn not_a_safetensors_file() {
    let c = Case::new();
    let junk = c.path("junk.safetensors");
    std::fs::write(&junk, b"this is not a safetensors file at all").unwrap();
    c.fails(
        &["compress", "junk.safetensors", "-o", "out.safetensors"],
        &["junk.safetensors", "not a valid safetensors file"],
        &[&c.input, &junk],
    );
}

#[test]
fn selected_tensor_not_bf16() {
    let c = Case::new();
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "out.safetensors",
            "--tensors",
            "fp32",
        ],
        &[
            "model.safetensors",
            "model.head.fp32.weight",
            "F32",
            "only BF16",
        ],
        &[&c.input],
    );
}

#[test]
fn selected_tensor_not_a_matrix() {
    let c = Case::new();
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "out.safetensors",
            "--tensors",
            "norm",
        ],
        &["model.safetensors", "model.norm.weight", "[130]", "rank 2"],
        &[&c.input],
    );
}

#[test]
fn selection_matches_nothing() {
    let c = Case::new();
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "out.safetensors",
            "--tensors",
            "no_such_tensor",
        ],
        &["model.safetensors", "no_such_tensor", "no tensor matches"],
        &[&c.input],
    );
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "out.safetensors",
            "--transpose",
            "no_such_tensor",
        ],
        &["model.safetensors", "--transpose", "no_such_tensor"],
        &[&c.input],
    );
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "out.safetensors",
            "--tensors",
            "(unclosed",
        ],
        &["invalid --tensors regex `(unclosed`", "unclosed group"],
        &[&c.input],
    );
}

#[test]
fn unwritable_output() {
    let c = Case::new();
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "no/such/dir/out.safetensors",
        ],
        &["no/such/dir/out.safetensors", "cannot create"],
        &[&c.input],
    );
    // A parent that is a regular file (stays unwritable even for root).
    c.fails(
        &[
            "compress",
            "model.safetensors",
            "-o",
            "model.safetensors/out.safetensors",
        ],
        &["model.safetensors/out.safetensors"],
        &[&c.input],
    );
    std::fs::create_dir(c.path("adir")).unwrap();
    let adir = c.path("adir");
    c.fails(
        &["compress", "model.safetensors", "-o", "adir"],
        &["adir", "directory"],
        &[&c.input, &adir],
    );
}

#[test]
fn output_is_input() {
    let c = Case::new();
    c.fails(
        &["compress", "model.safetensors", "-o", "model.safetensors"],
        &["model.safetensors", "also the input"],
        &[&c.input],
    );
    c.fails(
        &["compress", "model.safetensors", "-o", "./model.safetensors"],
        &["also the input"],
        &[&c.input],
    );
    let b = c.bundle("b.safetensors", &[]);
    c.fails(
        &["decompress", "b.safetensors", "-o", "b.safetensors"],
        &["b.safetensors", "also the input"],
        &[&c.input, &b],
    );
}

#[test]
fn wrong_kind_of_file() {
    let c = Case::new();
    let b = c.bundle("b.safetensors", &[]);
    c.fails(
        &[
            "compress",
            "b.safetensors",
            "-o",
            "c.safetensors",
            "--tensors",
            ".",
        ],
        &["b.safetensors", "already an unweight bundle"],
        &[&c.input, &b],
    );
    c.fails(
        &["decompress", "model.safetensors", "-o", "c.safetensors"],
        &["model.safetensors", "not an unweight bundle"],
        &[&c.input, &b],
    );
    c.fails(
        &["verify", "b.safetensors", "--against", "b.safetensors"],
        &["b.safetensors", "already an unweight bundle"],
        &[&c.input, &b],
    );
}

#[test]
fn truncated_bundle() {
    let c = Case::new();
    let b = c.bundle("b.safetensors", &[]);
    let full = std::fs::read(&b).unwrap();
    for cut in [full.len() - 1, full.len() / 2, 100, 7, 0] {
        std::fs::write(&b, &full[..cut]).unwrap();
        c.fails(
            &["decompress", "b.safetensors", "-o", "out.safetensors"],
            &["b.safetensors", "not a valid safetensors file"],
            &[&c.input, &b],
        );
        c.fails(
            &["verify", "b.safetensors"],
            &["b.safetensors"],
            &[&c.input, &b],
        );
    }
}

/// A component byte changed after compression, in a way that still decodes structurally (sm,
/// palette, index stream, escape exponents), is refused by `decompress` and by `verify` on the
/// stored-components checksum, naming the tensor, before anything is decoded or uploaded.
#[test]
fn tampered_component_fails_the_checksum() {
    let c = Case::new();
    let name = "model.layers.0.mlp.up_proj.weight";
    for (component, at) in [("sm", 3), ("palette", 0), ("idx", 5), ("esc_exp", 1)] {
        let b = c.bundle("b.safetensors", &[]);
        let mut bytes = std::fs::read(&b).unwrap();
        let r = tensor_range(&bytes, &format!("{name}.uw.{component}"));
        assert!(r.len() > at, "{component} has {} bytes", r.len());
        bytes[r.start + at] ^= 0x01;
        std::fs::write(&b, &bytes).unwrap();
        let needles = ["b.safetensors", name, "stored-components checksum mismatch"];
        c.fails(
            &["decompress", "b.safetensors", "-o", "out.safetensors"],
            &needles,
            &[&c.input, &b],
        );
        // verify reports every problem on stderr and exits 1.
        let o = unweight(c.dir.path(), &["verify", "b.safetensors"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            needles.iter().all(|n| stderr(&o).contains(n)),
            "{component}: {}",
            stderr(&o)
        );
        assert!(stdout(&o).contains("FAILED"));
        std::fs::remove_file(&b).unwrap();
    }
}

#[test]
fn corrupt_metadata() {
    let c = Case::new();
    let name = "model.layers.0.mlp.gate_proj.weight";
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            Box::new(|u| u["format_version"] = 4.into()),
            vec!["unsupported unweight format version 4"],
        ),
        (
            Box::new(|u| u["format_version"] = 2.into()),
            vec!["b.safetensors", "format version 2", "compress it again"],
        ),
        (
            Box::new(|u| u["format_version"] = 1.into()),
            vec!["b.safetensors", "format version 1", "compress it again"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["checksum"] = "xyz".into()),
            vec![name, "checksum `xyz` is not 16 hex digits"],
        ),
        (
            Box::new(move |u| {
                u["tensors"][name]
                    .as_object_mut()
                    .unwrap()
                    .remove("checksum");
            }),
            vec!["missing field `checksum`"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["escapes"] = 100000.into()),
            vec![name, "escape"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["rows"] = 95.into()),
            vec![name, "does not match shape"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["hash"] = "xyz".into()),
            vec![name, "hash"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["huffman"]["code_lengths"][0] = 13.into()),
            vec![name, "code length 13"],
        ),
        (
            // Still a valid prefix code, so only the checksum (format 3: it covers the
            // description) can tell: a GPU upload would decode other indices silently.
            Box::new(move |u| {
                let l = &mut u["tensors"][name]["huffman"]["code_lengths"];
                let (a, b) = (0..16)
                    .flat_map(|i| (0..16).map(move |j| (i, j)))
                    .find(|&(i, j)| l[i] != l[j] && l[i] != 0 && l[j] != 0)
                    .unwrap();
                let t = l[a].clone();
                l[a] = l[b].clone();
                l[b] = t;
            }),
            vec![name, "checksum mismatch"],
        ),
        (
            Box::new(move |u| u["tensors"][name]["encoding"] = "zstd".into()),
            vec![name, "zstd"],
        ),
        (Box::new(|u| u["extra"] = 1.into()), vec!["unknown field"]),
        (
            Box::new(move |u| {
                u["tensors"].as_object_mut().unwrap().remove(name);
            }),
            vec![name, "component"],
        ),
    ];
    for (edit, needles) in cases {
        let b = c.bundle("b.safetensors", &[]);
        edit_unweight(&b, edit);
        c.fails(
            &["decompress", "b.safetensors", "-o", "out.safetensors"],
            &needles,
            &[&c.input, &b],
        );
        c.fails(&["verify", "b.safetensors"], &needles, &[&c.input, &b]);
        std::fs::remove_file(&b).unwrap();
    }
}

#[test]
fn missing_or_mistyped_component() {
    let c = Case::new();
    let name = "model.layers.0.mlp.down_proj.weight";
    let b = c.bundle("b.safetensors", &[]);
    edit_header(&b, |h| {
        h[format!("{name}.uw.palette")]["dtype"] = "I8".into()
    });
    c.fails(
        &["verify", "b.safetensors"],
        &[name, "palette", "U8"],
        &[&c.input, &b],
    );
    std::fs::remove_file(&b).unwrap();

    // Renaming a component leaves the tensor without it.
    let b = c.bundle("b.safetensors", &[]);
    edit_header(&b, |h| {
        let o = h.as_object_mut().unwrap();
        let v = o.remove(&format!("{name}.uw.esc_exp")).unwrap();
        o.insert("stray".into(), v);
    });
    c.fails(
        &["decompress", "b.safetensors", "-o", "out.safetensors"],
        &[name, "missing component", "esc_exp"],
        &[&c.input, &b],
    );
}
