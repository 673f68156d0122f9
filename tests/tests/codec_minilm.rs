//! Real weights: all-MiniLM-L6-v2 (fp32, rounded to BF16) round-trips bit-exactly in every encoding
//! and orientation, and its MLP weights compress as well as the format promises.

use safetensors::{Dtype, SafeTensors};
use unweight::codec::*;

const ENCODINGS: [Encoding; 3] = [Encoding::Huffman, Encoding::Palette, Encoding::Exponent];
const ORIENTATIONS: [Orientation; 2] = [Orientation::Standard, Orientation::Transposed];

/// fp32 → BF16 with round-to-nearest-even; NaN stays NaN (quiet bit set, sign and top payload kept).
fn bf16_rne(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// Every F32 tensor of the checkpoint as (name, shape, BF16 bits).
fn minilm() -> Vec<(String, Vec<usize>, Vec<u16>)> {
    let path = std::env::var("UNWEIGHT_MINILM").unwrap_or_else(|_| {
        panic!(
            "UNWEIGHT_MINILM is not set: run `source $(scripts/setup-tools.sh)` first \
             (it fetches all-MiniLM-L6-v2 and sets the variable)"
        )
    });
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/setup-tools.sh)"));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == Dtype::F32)
        .map(|(name, v)| {
            let bits = v
                .data()
                .chunks_exact(4)
                .map(|c| bf16_rne(f32::from_le_bytes(c.try_into().unwrap())))
                .collect();
            (name, v.shape().to_vec(), bits)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() > 90, "{path}: only {} F32 tensors", out.len());
    out
}

#[test]
fn bf16_rounding_is_nearest_even() {
    assert_eq!(bf16_rne(1.0), 0x3F80);
    assert_eq!(bf16_rne(f32::from_bits(0x3F80_8000)), 0x3F80); // tie → even
    assert_eq!(bf16_rne(f32::from_bits(0x3F81_8000)), 0x3F82); // tie → even
    assert_eq!(bf16_rne(f32::from_bits(0x3F80_8001)), 0x3F81);
    assert_eq!(bf16_rne(f32::from_bits(0x7F80_0001)) & 0x7FC0, 0x7FC0); // NaN stays NaN
    assert_eq!(bf16_rne(f32::MAX), 0x7F80); // rounds to +Inf
}

#[test]
fn minilm_every_2d_tensor_round_trips() {
    let mut checked = 0;
    for (name, shape, bits) in minilm().into_iter().filter(|(_, s, _)| s.len() == 2) {
        for o in ORIENTATIONS {
            for e in ENCODINGS {
                let t = compress(&bits, &shape, o, e)
                    .unwrap_or_else(|err| panic!("{name} {e} {o}: {err}"));
                let back = decompress(&t).unwrap_or_else(|err| panic!("{name} {e} {o}: {err}"));
                assert!(back == bits, "{name} {e} {o}: decompressed values differ");
            }
            let h = compress(&bits, &shape, o, Encoding::Huffman).unwrap();
            for e in [Encoding::Palette, Encoding::Exponent] {
                assert_eq!(
                    transcode(&h, e).unwrap(),
                    compress(&bits, &shape, o, e).unwrap(),
                    "{name} {o} → {e}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 38, "only {checked} 2-D tensors");
}

#[test]
fn minilm_mlp_savings_meet_the_targets() {
    let mlp: Vec<_> = minilm()
        .into_iter()
        .filter(|(n, _, _)| {
            n.ends_with("intermediate.dense.weight")
                || n.ends_with("output.dense.weight") && !n.contains("attention")
        })
        .collect();
    assert_eq!(mlp.len(), 12, "6 layers × 2 MLP weights");
    for (enc, target) in [(Encoding::Huffman, 32.5), (Encoding::Palette, 24.0)] {
        let (mut before, mut after, mut escapes, mut groups) = (0usize, 0usize, 0usize, 0usize);
        for (name, shape, bits) in &mlp {
            let t = compress(bits, shape, Orientation::Standard, enc).unwrap();
            before += 2 * bits.len();
            after += t.stored_bytes();
            escapes += t.escape_count();
            groups += t.groups();
            let saved = 100.0 * (1.0 - t.stored_bytes() as f64 / (2 * bits.len()) as f64);
            eprintln!(
                "{enc:8} {name:45} saved {saved:.2}%  escapes {}/{}",
                t.escape_count(),
                t.groups()
            );
        }
        let saved = 100.0 * (1.0 - after as f64 / before as f64);
        eprintln!(
            "{enc}: {before} → {after} bytes, saved {saved:.2}%, escape groups {escapes}/{groups}"
        );
        assert!(
            saved >= target,
            "{enc} saves {saved:.2}% of the MLP weights' BF16 bytes, target {target}%"
        );
    }
}
