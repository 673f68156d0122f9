//! Real weights: all-MiniLM-L6-v2 (fp32, rounded to BF16) round-trips bit-exactly in every encoding
//! and orientation, and its MLP weights compress as well as the format promises.

use unweight::codec::*;

const ENCODINGS: [Encoding; 3] = [Encoding::Huffman, Encoding::Palette, Encoding::Exponent];
const ORIENTATIONS: [Orientation; 2] = [Orientation::Standard, Orientation::Transposed];

/// Every fp32 tensor of the checkpoint as (name, shape, BF16 bits).
fn minilm() -> Vec<unweight::minilm::NamedBf16> {
    let path = unweight::minilm::path_from_env().unwrap();
    let out = unweight::minilm::load_bf16(&path).unwrap();
    assert!(
        out.len() > 90,
        "{}: only {} tensors",
        path.display(),
        out.len()
    );
    out
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
    let mlp = unweight::minilm::load_mlp_bf16(&unweight::minilm::path_from_env().unwrap()).unwrap();
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
