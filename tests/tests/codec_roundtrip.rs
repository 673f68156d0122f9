//! Round trips of every encoding × orientation on generated tensors, and the Huffman details.

#[path = "codec_util.rs"]
mod util;

use proptest::prelude::*;
use unweight::codec::*;
use util::*;

/// Special values: ±0, ±Inf, NaNs with payloads, subnormals, extremes.
const SPECIAL: [u16; 12] = [
    0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0xFFFF, 0x0001, 0x807F, 0x7F7F, 0x0080,
];

fn value() -> impl Strategy<Value = u16> {
    prop_oneof![
        // Exponents of real weights: adjacent binades (the SIMD split's fast case) and rare others.
        6 => (100u16..124, any::<u8>()).prop_map(|(e, sm)| ((sm as u16 & 0x80) << 8) | (e << 7) | (sm as u16 & 0x7F)),
        // Realistic weights: exponents near 2^-7 .. 2^0, any sign and mantissa.
        6 => (116u16..128, any::<u8>()).prop_map(|(e, sm)| ((sm as u16 & 0x80) << 8) | (e << 7) | (sm as u16 & 0x7F)),
        2 => any::<u16>(),
        1 => proptest::sample::select(&SPECIAL[..]),
    ]
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        4 => (0usize..6, 0usize..200).prop_map(|(r, c)| vec![r, c]),
        // Several chunks and several parallel decode units (4 chunks of 1024 symbols each).
        1 => (20usize..90, 60usize..300).prop_map(|(r, c)| vec![r, c]),
        1 => proptest::collection::vec(0usize..5, 0..=1).prop_map(|mut v| { v.push(70); v }),
        1 => (1usize..3, 1usize..4, 1usize..130).prop_map(|(a, b, c)| vec![a, b, c]),
        1 => Just(vec![]),
        1 => (0usize..300).prop_map(|n| vec![n]),
    ]
}

fn tensor() -> impl Strategy<Value = (Vec<usize>, Vec<u16>)> {
    shape().prop_flat_map(|s| {
        let n = s.iter().product::<usize>();
        (Just(s), proptest::collection::vec(value(), n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_encoding_and_orientation_round_trips((shape, bits) in tensor()) {
        check_round_trip(&bits, &shape);
    }

    #[test]
    fn lut_agrees_with_bit_by_bit_decoder((shape, bits) in tensor()) {
        for o in ORIENTATIONS {
            let t = compress(&bits, &shape, o, Encoding::Huffman).unwrap();
            let Indices::Huffman(h) = &t.indices else { unreachable!() };
            let n = t.rows * t.padded_cols();
            let (slow, fast) = (decode_bit_by_bit(h, n), unpack(&decode_palette_indices(&t).unwrap()));
            let first = slow.iter().zip(&fast).position(|(a, b)| a != b);
            prop_assert!(first.is_none() && slow.len() == fast.len(), "{o} {shape:?}: first difference at {first:?}, lengths {:?}", h.code_lengths);
        }
    }
}

#[test]
fn fixed_edge_shapes_round_trip() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    check_round_trip(&all, &[256, 256]); // every exponent, sign and mantissa
    check_round_trip(&all[..64 * 300], &[300, 64]);
    check_round_trip(&[0x3F80], &[1, 1]);
    check_round_trip(&[0x7FC1], &[1]);
    check_round_trip(&[0xFF80], &[]);
    check_round_trip(&[], &[0, 7]);
    check_round_trip(&[], &[7, 0]);
    check_round_trip(&[], &[0]);
    check_round_trip(&[], &[3, 0, 5]);
    let v: Vec<u16> = (0..3 * 65)
        .map(|i| (i as u16 % 40 + 100) << 7 | (i as u16 & 0x807F))
        .collect();
    check_round_trip(&v, &[3, 65]); // 40 distinct exponents
    let v: Vec<u16> = (0..2 * 3 * 130)
        .map(|i| ((i * 7919) % 65536) as u16)
        .collect();
    check_round_trip(&v, &[2, 3, 130]);
}

#[test]
fn palette_is_exact_when_the_sample_misleads() {
    // Over 2^20 values the encoder guesses the palette from evenly spaced runs of 4096 values
    // (here: the first half of every 8192), then checks the guess against exact counts.
    // Exponent 90 fills the unsampled halves only, so the guess lacks the most frequent exponent.
    let n = 1 << 21;
    let bits: Vec<u16> = (0..n)
        .map(|i| {
            let e = if i % 8192 >= 4096 {
                90
            } else {
                100 + (i * 7 % 20) as u16
            };
            (e << 7) | (i as u16 & 0x807F)
        })
        .collect();
    let mut hist = [0u64; 256];
    bits.iter().for_each(|&b| hist[exponent(b) as usize] += 1);
    for e in [Encoding::Huffman, Encoding::Palette] {
        let t = compress(&bits, &[2048, 1024], Orientation::Standard, e).unwrap();
        assert_eq!(t.palette, choose_palette(&hist), "{e}");
        assert_eq!(t.palette[0], 90);
        assert_eq!(decompress(&t).unwrap(), bits, "{e}");
        assert_eq!(
            transcode(&t, Encoding::Exponent).unwrap(),
            compress(
                &bits,
                &[2048, 1024],
                Orientation::Standard,
                Encoding::Exponent
            )
            .unwrap()
        );
    }
}

#[test]
fn palette_rule_frequency_then_smaller_exponent_then_fill() {
    let mut hist = [0u64; 256];
    hist[120] = 5;
    hist[121] = 9;
    hist[119] = 5;
    hist[3] = 1;
    let mut expect = vec![121, 119, 120, 3];
    expect.extend([0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(choose_palette(&hist).to_vec(), expect);
    let mut hist = [0u64; 256];
    for (e, h) in hist.iter_mut().enumerate().take(40) {
        *h = 100 - (e as u64 % 20); // pairs of ties: e and e + 20
    }
    let p = choose_palette(&hist);
    assert_eq!(&p[..4], &[0, 20, 1, 21]);
}

#[test]
fn code_lengths_are_limited_and_optimal() {
    // Fibonacci frequencies make an unlimited Huffman code 15 deep.
    let mut f = [0u64; 16];
    let (mut a, mut b) = (1u64, 1u64);
    for x in f.iter_mut() {
        *x = a;
        (a, b) = (b, a + b);
    }
    let l = code_lengths(&f);
    assert!(l.iter().all(|&x| (1..=12).contains(&x)), "{l:?}");
    assert_eq!(
        l.iter().map(|&x| 1u32 << (12 - x)).sum::<u32>(),
        4096,
        "complete code"
    );
    // Where the limit does not bind, the cost equals plain Huffman's.
    let f = [50, 30, 10, 5, 3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l = code_lengths(&f);
    let cost: u64 = f.iter().zip(l).map(|(&f, l)| f * l as u64).sum();
    assert_eq!(cost, 50 + 30 * 2 + 10 * 3 + 5 * 4 + 3 * 5 + 2 * 6);
    assert_eq!(code_lengths(&[0; 16]), [0; 16]);
    let mut one = [0u64; 16];
    one[5] = 9;
    let mut want = [0u8; 16];
    want[5] = 1;
    assert_eq!(code_lengths(&one), want);
}

#[test]
fn canonical_codes_and_lut_follow_the_deflate_rule() {
    let mut lengths = [0u8; 16];
    lengths[..4].copy_from_slice(&[2, 1, 3, 3]);
    let codes = canonical_codes(&lengths).unwrap();
    assert_eq!(&codes[..4], &[0b10, 0b0, 0b110, 0b111]);
    let lut = build_lut(&lengths).unwrap();
    assert_eq!(lut.len(), 4096);
    assert_eq!(lut[0], 1 << 8 | 1);
    assert_eq!(lut[0b100 << 9], 2 << 8);
    assert_eq!(lut[0b110 << 9], 3 << 8 | 2);
    assert_eq!(lut[4095], 3 << 8 | 3);
}

#[test]
fn huffman_bits_are_msb_first_and_chunked() {
    // Exponents 127 (x3) and 126 (x1) per 4 elements: palette [127, 126, ...], codes 0 and 1.
    let v: Vec<u16> = (0..2048)
        .map(|i| if i % 4 == 3 { 126 << 7 } else { 127 << 7 })
        .collect();
    let t = compress(&v, &[2, 1024], Orientation::Standard, Encoding::Huffman).unwrap();
    let Indices::Huffman(h) = &t.indices else {
        unreachable!()
    };
    assert_eq!(&t.palette[..2], &[127, 126]);
    assert_eq!(&h.code_lengths[..2], &[1, 1]);
    assert_eq!(h.chunk_offsets, vec![0, 1024]);
    assert_eq!(h.total_bits, 2048);
    assert!(
        h.bits.iter().all(|&b| b == 0b0001_0001),
        "{:08b}",
        h.bits[0]
    );
}
