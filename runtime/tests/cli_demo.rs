//! `unweight demo` (on a smaller layer, so the debug build stays quick): it reports realistic
//! statistics, both encodings, the transposed down projection, and bit-exact decoding; then the
//! GPU part runs (sm_90 GPU) or is skipped with one line saying why (any other machine).

mod cli_common;

use cli_common::*;

#[test]
fn demo_reports_both_encodings_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let o = unweight(dir.path(), &["demo", "--dims", "256x896", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("gate_proj, up_proj 896×256, down_proj 256×896"),
        "{text}"
    );
    let entropy: f64 = text
        .split("exponent entropy ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2.4..2.8).contains(&entropy), "{text}");
    for enc in ["huffman", "palette"] {
        assert!(
            text.contains(&format!("{enc}: every tensor decoded bit-exact")),
            "{text}"
        );
    }
    assert_eq!(text.matches("mlp.down_proj.weight").count(), 4, "{text}");
    assert_eq!(text.matches("transposed").count(), 2, "{text}");
    assert_eq!(text.matches("total (4 tensors)").count(), 2, "{text}");
    gpu_part_ran_or_said_why(&text);
}

/// Without an sm_90 GPU (the development machine) exactly one skip line with a reason; with one,
/// the timing table and the bit-exact verdict.
fn gpu_part_ran_or_said_why(text: &str) {
    let skips: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("GPU part skipped: "))
        .collect();
    if text.contains("Fused direct-palette matmul") {
        assert!(skips.is_empty(), "{text}");
        assert!(text.contains("Every fused result bit-identical"), "{text}");
        assert_eq!(text.matches("down_proj  ").count(), 4, "{text}");
    } else {
        assert_eq!(skips.len(), 1, "{text}");
        assert!(skips[0].len() > "GPU part skipped: ".len() + 5, "{text}");
    }
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Done in "),
        "{text}"
    );
}
