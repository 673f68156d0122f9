//! Malformed compressed tensors give a `CodecError`, never a panic and never wrong data.

use proptest::prelude::*;
use unweight::codec::*;

/// A named way to damage a `T`.
type Damage<T> = (&'static str, Box<dyn Fn(&mut T)>);

fn sample(o: Orientation, e: Encoding) -> (Vec<u16>, CompressedTensor) {
    // 5 rows of 1100 columns (not a multiple of 64), a few out-of-palette exponents.
    let bits: Vec<u16> = (0..5 * 1100u32)
        .map(|i| {
            let e = if i % 97 == 0 {
                150 + i % 10
            } else {
                118 + (i.wrapping_mul(2654435761) >> 24) % 12
            } as u16;
            (e << 7) | (i as u16 & 0x807F)
        })
        .collect();
    let t = compress(&bits, &[5, 1100], o, e).unwrap();
    (bits, t)
}

fn huff(t: &mut CompressedTensor) -> &mut HuffmanStream {
    match &mut t.indices {
        Indices::Huffman(h) => h,
        _ => unreachable!(),
    }
}

/// Every decoding entry point must refuse `t`.
fn assert_refused(t: &CompressedTensor, what: &str) {
    assert!(decompress(t).is_err(), "{what}: decompress accepted it");
    assert!(
        decode_bf16_encoded(t).is_err() || decompress(t).is_err(),
        "{what}"
    );
    let _ = decode_exponents(t);
    let _ = decode_palette_indices(t);
    let _ = transcode(t, Encoding::Palette);
    let _ = transcode(t, Encoding::Huffman);
}

#[test]
fn structural_damage_is_an_error() {
    for o in [Orientation::Standard, Orientation::Transposed] {
        for e in [Encoding::Huffman, Encoding::Palette, Encoding::Exponent] {
            let (_, good) = sample(o, e);
            let cases: Vec<Damage<CompressedTensor>> = vec![
                (
                    "short sm",
                    Box::new(|t| {
                        t.sm.pop();
                    }),
                ),
                (
                    "shape disagrees with rows",
                    Box::new(|t| t.shape = vec![6, 1100]),
                ),
                ("rows disagree with shape", Box::new(|t| t.rows += 1)),
                ("absurd shape", Box::new(|t| t.shape = vec![usize::MAX, 3])),
                ("wrong hash", Box::new(|t| t.hash ^= 1)),
                ("flipped sm bit", Box::new(|t| t.sm[1] ^= 0x10)),
                ("changed palette", Box::new(|t| t.palette[0] ^= 1)),
                (
                    "indices short",
                    Box::new(|t| match &mut t.indices {
                        Indices::Huffman(h) => h.bits.truncate(h.bits.len() / 2),
                        Indices::Palette(v) | Indices::Exponent(v) => {
                            v.pop();
                        }
                    }),
                ),
            ];
            for (what, f) in cases {
                if e == Encoding::Exponent && what == "changed palette" {
                    continue; // the exponent encoding does not read the palette when decoding
                }
                let mut t = good.clone();
                f(&mut t);
                assert_refused(&t, &format!("{e} {o}: {what}"));
                t.checksum = components_checksum(&t);
                assert_refused(&t, &format!("{e} {o}: {what} (checksum recomputed)"));
            }
            if e != Encoding::Exponent {
                let esc: Vec<Damage<Escapes>> = vec![
                    (
                        "bitmap word missing",
                        Box::new(|x| {
                            x.bitmap.pop();
                        }),
                    ),
                    ("prefix wrong", Box::new(|x| x.prefix[1] += 1)),
                    (
                        "escape exponents short",
                        Box::new(|x| {
                            x.exponents.truncate(x.exponents.len() - 1);
                        }),
                    ),
                    ("extra escape bit", Box::new(|x| x.bitmap[0] ^= 1 << 1)),
                    (
                        "bit past last group",
                        Box::new(|x| *x.bitmap.last_mut().unwrap() |= 1 << 63),
                    ),
                ];
                for (what, f) in esc {
                    let mut t = good.clone();
                    f(&mut t.escapes);
                    assert_refused(&t, &format!("{e} {o}: {what}"));
                    t.checksum = components_checksum(&t);
                    assert_refused(&t, &format!("{e} {o}: {what} (checksum recomputed)"));
                }
            } else {
                let mut t = good.clone();
                t.escapes.bitmap.push(0);
                assert_refused(&t, "exponent encoding with an escape table");
            }
        }
    }
}

#[test]
fn huffman_stream_damage_is_an_error() {
    let (_, good) = sample(Orientation::Standard, Encoding::Huffman);
    let cases: Vec<Damage<HuffmanStream>> = vec![
        ("code length 13", Box::new(|h| h.code_lengths[0] = 13)),
        (
            "over-subscribed code",
            Box::new(|h| h.code_lengths = [1; 16]),
        ),
        ("no codes", Box::new(|h| h.code_lengths = [0; 16])),
        ("chunk_symbols 0", Box::new(|h| h.chunk_symbols = 0)),
        ("chunk_symbols changed", Box::new(|h| h.chunk_symbols = 512)),
        (
            "offset past the end",
            Box::new(|h| h.chunk_offsets[1] = u32::MAX),
        ),
        (
            "offsets out of order",
            Box::new(|h| h.chunk_offsets.swap(1, 2)),
        ),
        ("offset shifted", Box::new(|h| h.chunk_offsets[2] += 1)),
        (
            "offset missing",
            Box::new(|h| {
                h.chunk_offsets.pop();
            }),
        ),
        (
            "total_bits past the bytes",
            Box::new(|h| h.total_bits = h.bits.len() as u64 * 8 + 1),
        ),
        ("total_bits short", Box::new(|h| h.total_bits -= 3)),
        (
            "truncated bits",
            Box::new(|h| {
                h.bits.truncate(h.bits.len() - 5);
                h.total_bits = h.bits.len() as u64 * 8;
            }),
        ),
        ("flipped stream bit", Box::new(|h| h.bits[100] ^= 0x04)),
    ];
    for (what, f) in cases {
        let mut t = good.clone();
        f(huff(&mut t));
        assert_refused(&t, what);
        // Also with the checksum recomputed: the decoders' own checks must refuse it.
        t.checksum = components_checksum(&t);
        assert_refused(&t, what);
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let (_, mut t) = sample(Orientation::Standard, Encoding::Huffman);
    huff(&mut t).code_lengths[3] = 13;
    let msg = decompress(&t).unwrap_err().to_string();
    assert!(msg.contains("length 13 exceeds the limit 12"), "{msg}");
    let (_, mut t) = sample(Orientation::Standard, Encoding::Palette);
    t.hash ^= 1;
    assert!(decompress(&t)
        .unwrap_err()
        .to_string()
        .starts_with("hash mismatch"));
    let err = compress(&[0; 5], &[2, 3], Orientation::Standard, Encoding::Palette).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape [2, 3] has 6 elements but 5 values were given"
    );
    assert!("zip"
        .parse::<Encoding>()
        .unwrap_err()
        .to_string()
        .contains("huffman, palette, exponent"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random damage anywhere: decoding either fails or (if the damage was harmless) returns the
    /// exact original values; it never panics.
    #[test]
    fn random_damage_never_panics_or_lies(
        enc in 0usize..3, trans in any::<bool>(), field in 0usize..8, at in any::<usize>(), val in any::<u64>()
    ) {
        let e = [Encoding::Huffman, Encoding::Palette, Encoding::Exponent][enc];
        let o = if trans { Orientation::Transposed } else { Orientation::Standard };
        let (bits, mut t) = sample(o, e);
        let poke = |v: &mut [u8]| if !v.is_empty() { let n = v.len(); v[at % n] ^= (val as u8) | 1; };
        match field {
            0 => poke(&mut t.sm),
            1 => poke(&mut t.escapes.exponents),
            2 => {
                let n = t.escapes.bitmap.len();
                if n > 0 {
                    t.escapes.bitmap[at % n] ^= val;
                }
            }
            3 => {
                let n = t.escapes.prefix.len();
                if n > 0 {
                    t.escapes.prefix[at % n] ^= val as u32;
                }
            }
            4 => t.palette[at % 16] ^= val as u8,
            _ => match &mut t.indices {
                Indices::Huffman(h) => match field {
                    5 => poke(&mut h.bits),
                    6 => { let n = h.chunk_offsets.len(); h.chunk_offsets[at % n] ^= val as u32; }
                    _ => h.code_lengths[at % 16] = (val % 16) as u8,
                },
                Indices::Palette(v) | Indices::Exponent(v) => poke(v),
            },
        }
        // Damage with the checksum recomputed, so the decoders' own checks are what is tested.
        if decompress(&t).is_ok() { prop_assert_eq!(&t.checksum, &components_checksum(&t)); }
        t.checksum = components_checksum(&t);
        if let Ok(back) = decompress(&t) { prop_assert_eq!(back, bits); }
        let _ = decode_exponents(&t);
        let _ = decode_palette_indices(&t);
        let _ = decode_bf16_encoded(&t);
        let _ = transcode(&t, Encoding::Huffman);
        if let Indices::Huffman(h) = &t.indices { prop_assert_eq!(h.decode_lut().len(), 4096); }
    }
}

#[test]
fn bits_that_match_no_code_are_an_error() {
    // One exponent only: the code is the single bit `0`, so any 1 bit matches no code. 80 rows
    // of 64 give five chunks: four decoded side by side and one alone.
    let bits: Vec<u16> = (0..80 * 64).map(|i| 0x3F80 | (i as u16 & 0x807F)).collect();
    let good = compress(&bits, &[80, 64], Orientation::Standard, Encoding::Huffman).unwrap();
    for at in [0, 100, 300, 520, 639] {
        let mut t = good.clone();
        huff(&mut t).bits[at] |= 0x10;
        // As stored, the checksum refuses it; recomputed, the decoder itself must.
        assert!(matches!(
            decompress(&t),
            Err(CodecError::ChecksumMismatch { .. })
        ));
        t.checksum = components_checksum(&t);
        let err = decompress(&t).unwrap_err().to_string();
        assert!(err.contains("no code matches"), "byte {at}: {err}");
        assert!(decode_exponents(&t).is_err() && decode_palette_indices(&t).is_err());
    }
}
