//! `unweight demo` (on a smaller layer, so the debug build stays quick): it reports realistic
//! statistics, both encodings, the transposed down projection, and bit-exact decoding.

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
}
