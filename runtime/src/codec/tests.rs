//! Unit tests of the codec's fast paths against plain definitions: the batch functions, the
//! pipelined decoder, the in-place segment encoder and the palette-guess repair.

use std::mem::MaybeUninit;

use super::*;

/// Deterministic xorshift values.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// BF16 values whose exponents follow roughly halving frequencies from `top` down (like real
/// weights), with a few outliers.
fn weights(n: usize, top: u16, seed: u64) -> Vec<u16> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let z = r();
            let e = if z % 997 == 0 {
                (z >> 32) as u16 % 256
            } else {
                top - ((z >> 40) as u16).trailing_ones().min(20) as u16
            };
            ((z >> 8) as u16 & 0x807F) | (e << 7)
        })
        .collect()
}

fn exponent_histogram(bits: &[u16]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for &b in bits {
        h[exponent(b) as usize] += 1;
    }
    h
}

const SHAPES: [[usize; 2]; 9] = [
    [0, 0],
    [1, 1],
    [3, 0],
    [1, 5],
    [7, 63],
    [5, 65],
    [33, 129],
    [300, 70],
    [90, 1000],
];

fn all_kinds() -> Vec<(Orientation, Encoding)> {
    let mut v = Vec::new();
    for o in [Orientation::Standard, Orientation::Transposed] {
        for e in [Encoding::Huffman, Encoding::Palette, Encoding::Exponent] {
            v.push((o, e));
        }
    }
    v
}

#[test]
fn batch_functions_equal_one_by_one() {
    let data: Vec<(Vec<usize>, Vec<u16>)> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_vec(), weights(s[0] * s[1], 122, i as u64 + 1)))
        .collect();
    for (o, e) in all_kinds() {
        let inputs: Vec<CompressInput> = data.iter().map(|(s, b)| (&b[..], &s[..], o)).collect();
        let batch: Vec<CompressedTensor> = compress_batch(&inputs, e)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for ((s, b), t) in data.iter().zip(&batch) {
            assert_eq!(*t, compress(b, s, o, e).unwrap(), "{o} {e} {s:?}");
        }
        let refs: Vec<&CompressedTensor> = batch.iter().collect();
        let each: Vec<Vec<u16>> = decompress_batch(&refs)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let joined = decompress_contiguous(&refs).unwrap();
        let mut at = 0;
        for ((_, b), v) in data.iter().zip(&each) {
            assert_eq!(v, b, "{o} {e}");
            assert_eq!(&joined[at..at + b.len()], &b[..], "{o} {e}");
            at += b.len();
        }
        assert_eq!(at, joined.len());
    }
    assert!(decompress_contiguous(&[]).unwrap().is_empty());
}

/// Decoding with each tensor's sign-mantissa plane held outside it (its own `sm` emptied), as
/// the bundle reader does with planes in the mapped file, restores every kind exactly; a plane
/// of the wrong length or with a flipped bit is an error naming that tensor.
#[test]
fn planes_held_elsewhere_decode_exactly() {
    let data: Vec<(Vec<usize>, Vec<u16>)> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_vec(), weights(s[0] * s[1], 122, i as u64 + 11)))
        .collect();
    let decode = |ts: &[CompressedTensor], sms: &[Option<&[u8]>]| {
        let mut outs: Vec<Vec<MaybeUninit<u16>>> = data
            .iter()
            .map(|(_, b)| vec![MaybeUninit::uninit(); b.len()])
            .collect();
        let refs: Vec<&CompressedTensor> = ts.iter().collect();
        let parts = outs.iter_mut().map(|o| &mut o[..]).collect();
        decompress_into_parts_sm(&refs, sms, parts).map(|()| {
            outs.into_iter()
                // SAFETY: decompress_into_parts_sm returned Ok, so every element is written.
                .map(|o| o.into_iter().map(|x| unsafe { x.assume_init() }).collect())
                .collect::<Vec<Vec<u16>>>()
        })
    };
    for (o, e) in all_kinds() {
        let full: Vec<CompressedTensor> = data
            .iter()
            .map(|(s, b)| compress(b, s, o, e).unwrap())
            .collect();
        let planes: Vec<Vec<u8>> = full.iter().map(|t| t.sm.clone()).collect();
        let bare: Vec<CompressedTensor> = full
            .iter()
            .map(|t| CompressedTensor {
                sm: Vec::new(),
                ..t.clone()
            })
            .collect();
        let sms: Vec<Option<&[u8]>> = planes.iter().map(|p| Some(&p[..])).collect();
        let back = decode(&bare, &sms).unwrap();
        for ((_, b), v) in data.iter().zip(&back) {
            assert_eq!(v, b, "{o} {e}");
        }
        // Without the planes, the bare tensors are rejected (and the plain call still works).
        assert!(decode(&bare, &vec![None; bare.len()]).is_err(), "{o} {e}");
        assert_eq!(decode(&full, &vec![None; full.len()]).unwrap(), back);
        let short = &planes[5][..planes[5].len() - 1];
        let mut wrong = sms.clone();
        wrong[5] = Some(short);
        let err = decode(&bare, &wrong).unwrap_err();
        assert_eq!(err.0, 5, "{o} {e}");
        assert!(matches!(err.1, CodecError::Length { .. }), "{:?}", err.1);
        let mut flipped = planes[6].clone();
        flipped[3] ^= 1;
        let mut wrong = sms.clone();
        wrong[6] = Some(&flipped);
        let err = decode(&bare, &wrong).unwrap_err();
        assert_eq!(err.0, 6, "{o} {e}");
        // The stored-components checksum covers the plane wherever it is held.
        assert!(
            matches!(err.1, CodecError::ChecksumMismatch { .. }),
            "{:?}",
            err.1
        );
    }
}

#[test]
fn contiguous_reports_the_failing_tensor() {
    let bits = weights(64 * 70, 120, 7);
    let good = compress(&bits, &[64, 70], Orientation::Standard, Encoding::Huffman).unwrap();
    let mut bad = good.clone();
    bad.sm[5] ^= 1;
    let err = decompress_contiguous(&[&good, &bad, &good]).unwrap_err();
    assert_eq!(err.0, 1);
    assert!(
        matches!(err.1, CodecError::ChecksumMismatch { .. }),
        "{:?}",
        err.1
    );
    let mut broken = good.clone();
    if let Indices::Huffman(h) = &mut broken.indices {
        h.chunk_offsets.pop();
    }
    let err = decompress_contiguous(&[&good, &good, &broken]).unwrap_err();
    assert_eq!(err.0, 2);
    assert!(matches!(err.1, CodecError::Stream { .. }), "{:?}", err.1);
}

#[test]
fn parallel_fill_fills_every_element_and_hashes_in_order() {
    let piece = 1000;
    for total in [0, 1, 999, 1000, 1001, 2500, 64_123] {
        let want: Vec<u16> = (0..total).map(|i| (i * 7919 % 65_521) as u16).collect();
        let fill = |start: usize, dst: &mut [MaybeUninit<u16>], _: &mut parallel::Scratch| {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = MaybeUninit::new(want[start + i]);
            }
            Ok(())
        };
        let (got, hash) = parallel::fill_hashed(total, piece, fill).unwrap();
        assert_eq!(got, want, "{total}");
        assert_eq!(hash, hash_bits(&want), "{total}");
        assert_eq!(parallel::fill_parallel(total, piece, fill).unwrap(), want);
    }
}

#[test]
fn parallel_fill_returns_a_piece_error() {
    let fill = |start: usize, dst: &mut [MaybeUninit<u16>], _: &mut parallel::Scratch| {
        if start == 3000 {
            return Err(CodecError::Stream {
                problem: "piece 3".into(),
            });
        }
        dst.fill(MaybeUninit::new(1));
        Ok(())
    };
    for r in [
        parallel::fill_hashed(10_000, 1000, fill).map(|_| ()),
        parallel::fill_parallel(10_000, 1000, fill).map(|_| ()),
    ] {
        match r {
            Err(CodecError::Stream { problem }) => assert_eq!(problem, "piece 3"),
            other => panic!("{other:?}"),
        }
    }
}

/// The stream equals the plain definition: canonical codes concatenated MSB first, chunk
/// offsets at every `chunk_symbols` symbols. Long enough for many parallel segments, whose
/// boundaries fall at every bit alignment.
#[test]
fn segment_encoder_matches_plain_concatenation() {
    let mut r = rng(99);
    for n in [2usize, 2048, 65_536, 65_538, 300_000, 1_000_002] {
        let syms: Vec<u8> = (0..n)
            .map(|_| (r() >> 40).trailing_ones().min(15) as u8)
            .collect();
        let nib = nibbles::pack(&syms);
        let h = huffman::encode(&nib, CHUNK_SYMBOLS).unwrap();
        let codes = canonical_codes(&h.code_lengths).unwrap();
        let mut bits = Vec::new();
        let (mut acc, mut nacc) = (0u64, 0u32);
        let mut offsets = Vec::new();
        let mut total = 0u64;
        for (i, &s) in syms.iter().enumerate() {
            if i % CHUNK_SYMBOLS as usize == 0 {
                offsets.push(total as u32);
            }
            let len = h.code_lengths[s as usize] as u32;
            acc = acc << len | codes[s as usize] as u64;
            nacc += len;
            total += len as u64;
            while nacc >= 8 {
                bits.push((acc >> (nacc - 8)) as u8);
                nacc -= 8;
            }
        }
        if nacc > 0 {
            bits.push((acc << (8 - nacc)) as u8);
        }
        assert_eq!(h.total_bits, total, "{n}");
        assert_eq!(h.chunk_offsets, offsets, "{n}");
        assert!(h.bits == bits, "{n}: streams differ");
        assert_eq!(h.decode_symbols(n).unwrap(), syms, "{n}");
    }
}

/// A palette guessed from a sample that has the right exponents in the wrong order
/// (renumbered) or the wrong exponents (split again) still gives exactly the tensor that the
/// exact counts define: the palette of the full histogram, and the same indices and escapes as
/// transcoding from the exponent encoding (which counts everything first).
#[test]
fn wrong_palette_guesses_are_repaired() {
    // 16 sampled runs of 4096 at stride n / 16 = 8192: the first half of each 8192 block.
    let n = 16 * 8192;
    let sampled = |i: usize| i % 8192 < 4096;
    type Case = (&'static str, fn(usize, u64) -> u16);
    let cases: [Case; 3] = [
        // Same 16 exponents and most frequent one, the others' frequencies reversed outside
        // the sample: renumbered.
        ("reordered", |i, z| {
            let rank = (z >> 40).trailing_ones().min(15) as u16;
            match (i % 8192 < 4096, rank) {
                (true, _) | (false, 0) => 110 + rank,
                // Ranks 1..15 reversed: 111 and 125 swap frequencies, and so on.
                (false, _) => 126 - rank,
            }
        }),
        // Outside the sample a 17th exponent becomes common and pushes one out: split again.
        ("other set", |i, z| {
            let rank = (z >> 40).trailing_ones().min(15) as u16;
            if i % 8192 >= 4096 && z % 3 == 0 {
                100
            } else {
                110 + rank
            }
        }),
        // Most frequent exponent differs (fills escaped groups' padding): split again.
        ("other first", |i, z| {
            let rank = (z >> 40).trailing_ones().min(15) as u16;
            if i % 8192 >= 4096 && z % 10 != 0 {
                125
            } else {
                110 + rank
            }
        }),
    ];
    for (name, exp) in cases {
        let mut r = rng(5);
        let mut bits: Vec<u16> = (0..n)
            .map(|i| {
                let z = r();
                ((z >> 8) as u16 & 0x807F) | exp(i, z) << 7
            })
            .collect();
        // Escapes too, some of them in the unsampled part.
        for i in (0..n).step_by(5003) {
            bits[i] = (bits[i] & 0x807F) | 30 << 7;
        }
        let sample: Vec<u16> = (0..n).filter(|&i| sampled(i)).map(|i| bits[i]).collect();
        let (full, guess) = (
            choose_palette(&exponent_histogram(&bits)),
            choose_palette(&exponent_histogram(&sample)),
        );
        assert_ne!(full, guess, "{name}: the sample must guess wrong");
        // Padding rows (cols not a multiple of 64) and both orientations.
        for shape in [[n / 1024, 1024], [n / 4096 * 2, 2048], [8, n / 8]] {
            let cols_odd = [2usize, n / 2 - 3];
            for s in [shape.to_vec(), cols_odd.to_vec()] {
                let b = &bits[..s[0] * s[1]];
                for o in [Orientation::Standard, Orientation::Transposed] {
                    for e in [Encoding::Huffman, Encoding::Palette] {
                        let t = compress(b, &s, o, e).unwrap();
                        let via =
                            transcode(&compress(b, &s, o, Encoding::Exponent).unwrap(), e).unwrap();
                        assert_eq!(t, via, "{name} {s:?} {o} {e}");
                        assert_eq!(decompress(&t).unwrap(), b, "{name} {s:?} {o} {e}");
                    }
                }
            }
        }
    }
}

#[test]
fn scratch_is_reused_and_bounded() {
    let mut v = buffers::take_scratch(1000);
    assert_eq!(v.len(), 1000);
    v.fill(7);
    let ptr = v.as_ptr();
    buffers::return_scratch(v);
    let w = buffers::take_scratch(600);
    assert_eq!((w.len(), w.as_ptr()), (600, ptr));
    buffers::return_scratch(w);
    let big = buffers::take_scratch(9 << 20);
    assert_eq!(big.len(), 9 << 20);
    buffers::return_scratch(big);
    let again = buffers::take_scratch(600);
    assert_eq!(again.as_ptr(), ptr, "a too large buffer is not kept");
}

/// The format's constants are the kernels' too (unweight_codegen::abi): a chunk of the codec is
/// what a Huffman kernel thread decodes, a group what it writes or escapes.
#[test]
fn format_constants_equal_the_kernel_abi() {
    use unweight_codegen::abi;
    assert_eq!(GROUP, abi::GROUP as usize);
    assert_eq!(MAX_CODE_LEN, abi::MAX_CODE_LEN);
    assert_eq!(LUT_SIZE, 1 << abi::MAX_CODE_LEN);
    assert_eq!(CHUNK_SYMBOLS % abi::GROUP, 0, "a chunk holds whole groups");
}

type Edit = (&'static str, Box<dyn Fn(&mut CompressedTensor)>);

/// The checksum covers what a decoder reads besides the components (format 3): a changed
/// orientation, shape, dimension or Huffman parameter is refused before any decode or upload.
#[test]
fn a_changed_description_fails_the_checksum() {
    let bits = weights(64 * 64, 120, 11);
    let good = compress(&bits, &[64, 64], Orientation::Standard, Encoding::Huffman).unwrap();
    good.check_checksum().unwrap();
    let huff = |f: fn(&mut crate::codec::HuffmanStream)| -> Box<dyn Fn(&mut CompressedTensor)> {
        Box::new(move |t| {
            if let Indices::Huffman(h) = &mut t.indices {
                f(h)
            }
        })
    };
    let edits: Vec<Edit> = vec![
        (
            "orientation",
            Box::new(|t| t.orientation = Orientation::Transposed),
        ),
        ("shape", Box::new(|t| t.shape = vec![1, 64, 64])),
        ("rows", Box::new(|t| t.rows += 1)),
        ("cols", Box::new(|t| t.cols -= 1)),
        (
            "code_lengths",
            huff(|h| {
                let l = h.code_lengths;
                let j = (1..16).find(|&j| l[j] != l[0]).unwrap();
                h.code_lengths.swap(0, j);
            }),
        ),
        ("chunk_symbols", huff(|h| h.chunk_symbols *= 2)),
        ("total_bits", huff(|h| h.total_bits -= 1)),
    ];
    for (what, edit) in &edits {
        let mut bad = good.clone();
        edit(&mut bad);
        assert_ne!(bad, good, "{what}: the edit changes the tensor");
        assert!(
            matches!(
                bad.check_checksum(),
                Err(CodecError::ChecksumMismatch { .. })
            ),
            "{what}"
        );
    }
}

/// One altered byte of any component that still decodes is refused by every CPU decoder and by
/// transcode, as a checksum mismatch; with the checksum recomputed, the original's hash still
/// catches it (so the checksum is the check that fires first, not the only one).
#[test]
fn a_changed_component_byte_fails_the_checksum() {
    let bits = weights(64 * 70, 120, 7);
    for e in [Encoding::Huffman, Encoding::Palette, Encoding::Exponent] {
        let good = compress(&bits, &[64, 70], Orientation::Standard, e).unwrap();
        assert_eq!(good.checksum, components_checksum(&good));
        good.check_checksum().unwrap();
        let mut edits: Vec<Edit> = vec![
            ("sm", Box::new(|t| t.sm[5] ^= 1)),
            ("palette", Box::new(|t| t.palette[0] ^= 1)),
        ];
        match e {
            Encoding::Exponent => edits.push((
                "idx",
                Box::new(|t| {
                    if let Indices::Exponent(v) = &mut t.indices {
                        v[3] ^= 1;
                    }
                }),
            )),
            _ => edits.push(("esc_exp", Box::new(|t| t.escapes.exponents[0] ^= 1))),
        }
        for (what, edit) in &edits {
            let mut bad = good.clone();
            edit(&mut bad);
            bad.validate().unwrap();
            let is_checksum = |r: Result<(), CodecError>| matches!(r, Err(CodecError::ChecksumMismatch { stored, .. }) if stored == good.checksum);
            assert!(is_checksum(bad.check_checksum()), "{e} {what}");
            assert!(is_checksum(decompress(&bad).map(drop)), "{e} {what}");
            assert!(
                is_checksum(decode_bf16_encoded(&bad).map(drop)),
                "{e} {what}"
            );
            assert!(is_checksum(decode_exponents(&bad).map(drop)), "{e} {what}");
            assert!(
                is_checksum(decode_palette_indices(&bad).map(drop)),
                "{e} {what}"
            );
            assert!(
                is_checksum(transcode(&bad, Encoding::Palette).map(drop)),
                "{e} {what}"
            );
            let err = decompress_contiguous(&[&bad]).unwrap_err().1;
            assert!(
                err.to_string()
                    .contains("stored-components checksum mismatch"),
                "{err}"
            );
            bad.checksum = components_checksum(&bad);
            assert_ne!(bad.checksum, good.checksum, "{e} {what}");
            if *what != "palette" || e != Encoding::Exponent {
                assert!(
                    matches!(decompress(&bad), Err(CodecError::HashMismatch { .. })),
                    "{e} {what}"
                );
            }
        }
        // A transcoded tensor carries the checksum of its own components.
        for to in [Encoding::Huffman, Encoding::Palette, Encoding::Exponent] {
            let t = transcode(&good, to).unwrap();
            assert_eq!(t.checksum, components_checksum(&t), "{e} -> {to}");
        }
    }
}

/// The decoded-prefix notifications that let the bundle writer start writeback early: per
/// tensor, growing prefixes in whole pieces, several for a tensor of many pieces, the last
/// one its whole length; the output is still exact.
#[test]
fn decoded_prefixes_are_reported_in_order() {
    let shapes = [[64usize, 70], [512, 1024], [3, 100], [256, 256]];
    for (o, e) in all_kinds() {
        let data: Vec<Vec<u16>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| weights(s[0] * s[1], 121, 40 + i as u64))
            .collect();
        let cts: Vec<CompressedTensor> = data
            .iter()
            .zip(&shapes)
            .map(|(b, s)| compress(b, s, o, e).unwrap())
            .collect();
        let refs: Vec<&CompressedTensor> = cts.iter().collect();
        let mut outs: Vec<Vec<MaybeUninit<u16>>> = data
            .iter()
            .map(|b| vec![MaybeUninit::uninit(); b.len()])
            .collect();
        let seen: Vec<std::sync::Mutex<Vec<usize>>> =
            shapes.iter().map(|_| Default::default()).collect();
        let parts = outs.iter_mut().map(|o| &mut o[..]).collect();
        decompress_into_parts_notify(&refs, &vec![None; refs.len()], parts, &|i, n| {
            seen[i].lock().unwrap().push(n)
        })
        .unwrap();
        for (i, b) in data.iter().enumerate() {
            let s = seen[i].lock().unwrap();
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{o} {e} #{i}: {s:?}");
            assert_eq!(s.last(), Some(&b.len()), "{o} {e} #{i}");
            // SAFETY: decompress_into_parts_notify returned Ok, so every element is written.
            let got: Vec<u16> = outs[i].iter().map(|x| unsafe { x.assume_init() }).collect();
            assert_eq!(&got, b, "{o} {e} #{i}");
        }
        // 512×1024 on the common path (standard, unpadded) spans many pieces.
        if o == Orientation::Standard {
            assert!(seen[1].lock().unwrap().len() > 4, "{o} {e}");
        }
    }
}
