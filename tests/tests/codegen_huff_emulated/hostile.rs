//! Hostile streams on the emulated kernels (built with AddressSanitizer and UBSan, every buffer an
//! exact-size allocation): whatever the stream and its chunk offsets hold, no kernel reads or writes
//! out of bounds; every stream the codec's decoder refuses raises the error word, and every stream it
//! accepts decodes bit for bit with the error word 0. The sub256 decoders get the sub-chunk offsets
//! a validating chunk decode of the same stream recorded (what a device would hold), and random ones.

use super::*;
use unweight_codegen::abi::huff_err;

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// `t` with its stream changed by `f`.
fn mutate(t: &CompressedTensor, f: impl FnOnce(&mut HuffmanStream)) -> CompressedTensor {
    let mut t = t.clone();
    let Indices::Huffman(h) = &mut t.indices else {
        unreachable!()
    };
    f(h);
    // Recompute the stored-components checksum (a crafted file would): the codec's decoder and
    // the kernels must then judge the stream itself.
    t.checksum = codec::components_checksum(&t);
    t
}

/// A stream of `t`'s longest code, once per symbol, with the chunk offsets that make it valid: every
/// code at the maximum length, accepted.
fn all_longest(t: &CompressedTensor) -> CompressedTensor {
    mutate(t, |h| {
        let s = (0..16).max_by_key(|&s| h.code_lengths[s]).unwrap();
        let (len, code) = (
            h.code_lengths[s] as u64,
            codec::canonical_codes(&h.code_lengths).unwrap()[s] as u64,
        );
        let n = h.chunk_offsets.len() as u64 * h.chunk_symbols as u64;
        let n = n.min((t.rows * t.padded_cols()) as u64);
        h.total_bits = n * len;
        h.bits = vec![0; h.total_bits.div_ceil(8) as usize];
        for i in 0..n * len {
            if (code >> (len - 1 - i % len)) & 1 == 1 {
                h.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
            }
        }
        for (c, o) in h.chunk_offsets.iter_mut().enumerate() {
            *o = (c as u64 * h.chunk_symbols as u64 * len) as u32;
        }
    })
}

type Mutation = (&'static str, Box<dyn Fn(&mut HuffmanStream)>);

fn mutations() -> Vec<Mutation> {
    let mut m: Vec<Mutation> = vec![
        // The four of issue 9.
        ("every bit set", Box::new(|h| h.bits.fill(0xFF))),
        (
            "every chunk offset at the last bit",
            Box::new(|h| h.chunk_offsets.fill((h.total_bits - 1) as u32)),
        ),
        (
            "stream cut to a tenth",
            Box::new(|h| {
                h.total_bits /= 10;
                h.bits.truncate(h.total_bits.div_ceil(8) as usize);
                let end = h.total_bits as u32;
                h.chunk_offsets.iter_mut().for_each(|o| *o = (*o).min(end));
            }),
        ),
        (
            "random bits",
            Box::new(|h| {
                let mut r = xorshift(7);
                h.bits.iter_mut().for_each(|b| *b = r() as u8);
            }),
        ),
        // Codes running past the stream's end, and other ends.
        ("last chunk cut by 5 bits", Box::new(|h| h.total_bits -= 5)),
        (
            "stream shorter than its bits",
            Box::new(|h| h.bits.truncate(h.bits.len() / 2)),
        ),
        ("empty stream", Box::new(|h| h.bits.clear())),
        (
            "every chunk offset at the end",
            Box::new(|h| h.chunk_offsets.fill(h.total_bits as u32)),
        ),
        (
            "a chunk offset far past the stream",
            Box::new(|h| {
                let c = h.chunk_offsets.len() / 2;
                h.chunk_offsets[c] = u32::MAX;
            }),
        ),
        (
            "last chunk offset past the stream",
            Box::new(|h| *h.chunk_offsets.last_mut().unwrap() = h.total_bits as u32 + 1),
        ),
        (
            "chunk offsets out of order",
            Box::new(|h| {
                let n = h.chunk_offsets.len();
                h.chunk_offsets.swap(n / 2, n - 1);
            }),
        ),
        (
            "a chunk offset one bit late",
            Box::new(|h| {
                let c = h.chunk_offsets.len() / 2;
                h.chunk_offsets[c] += 1;
            }),
        ),
        ("first chunk offset 1", Box::new(|h| h.chunk_offsets[0] = 1)),
        (
            "a used code removed",
            Box::new(|h| {
                let s = (0..16).max_by_key(|&s| h.code_lengths[s]).unwrap();
                h.code_lengths[s] = 0;
            }),
        ),
        ("no code", Box::new(|h| h.code_lengths = [0; 16])),
        (
            "lengths over-subscribed",
            Box::new(|h| h.code_lengths = [1; 16]),
        ),
        ("chunk_symbols 0", Box::new(|h| h.chunk_symbols = 0)),
        (
            "chunk_symbols not a multiple of 64",
            Box::new(|h| h.chunk_symbols += 1),
        ),
        (
            "one chunk offset missing",
            Box::new(|h| {
                h.chunk_offsets.pop();
            }),
        ),
        // Accepted by the codec: bytes the decoder never reads.
        (
            "garbage after the stream",
            Box::new(|h| h.bits.extend_from_slice(&[0xFF; 7])),
        ),
        (
            "garbage in the last byte's unused bits",
            Box::new(|h| {
                let last = ((h.total_bits.max(1) - 1) / 8) as usize;
                let used = h.total_bits - 8 * last as u64; // 1..=8
                h.bits[last] |= 0xFFu8.checked_shr(used as u32).unwrap_or(0);
            }),
        ),
    ];
    // Single flipped bits: some still decode (the codec accepts them, so must the kernel, exactly).
    for seed in 1..=6u64 {
        m.push((
            "one bit flipped",
            Box::new(move |h| {
                let bit = xorshift(seed)() % h.total_bits.max(1);
                h.bits[(bit / 8) as usize] ^= 0x80 >> (bit % 8);
            }),
        ));
    }
    m
}

/// Output bytes of a kernel for `t`'s shape.
fn out_bytes(t: &CompressedTensor, out: HuffOutput) -> usize {
    match out {
        HuffOutput::Bf16 => t.rows * t.cols * 2,
        HuffOutput::Exponent => t.rows * t.padded_cols(),
        HuffOutput::Palette => t.rows * t.padded_cols() / 2,
    }
}

/// 70 x 130 of one value: a single-symbol code.
fn constant() -> CompressedTensor {
    let same = vec![0x3F80u16; 70 * 130];
    codec::compress(&same, &[70, 130], Orientation::Standard, Encoding::Huffman).unwrap()
}

/// Replaces `dir/subs` with what huff_palette_vec4's validating decode of `t` records (on a refused
/// stream, offsets up to where decoding went wrong, and garbage after).
fn record_subs(kernels: &[Generated], bins: &[PathBuf], t: &CompressedTensor, dir: &Path) {
    let (k, bin) = kernels
        .iter()
        .zip(bins)
        .find(|(k, _)| k.variant.to_string() == "huff_palette_vec4")
        .unwrap();
    let p = Params {
        out_bytes: out_bytes(t, HuffOutput::Palette),
        layout: ROW_MAJOR,
        grid: None,
        n_chunks: None,
        stream: None,
        record: true,
    };
    let recorded = run(bin, &k.budget, t, dir, p).subs.unwrap();
    std::fs::write(dir.join("subs"), le(&recorded, u32::to_le_bytes)).unwrap();
}

/// A named way to fill sub-chunk offsets, by index.
type Fill = (&'static str, Box<dyn Fn(usize) -> u32>);

/// Sub-chunk offsets that are no stream's: the sub256 decoders stay in bounds and refuse.
#[test]
fn random_sub_chunk_offsets_stay_in_bounds_and_are_refused() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    let t = codec::compress(
        &tensor(256, 1024, 21),
        &[256, 1024],
        Orientation::Standard,
        Encoding::Huffman,
    )
    .unwrap();
    let bits = stream(&t).total_bits as u32;
    let fills: [Fill; 4] = [
        ("random", Box::new(|i| xorshift(i as u64 + 1)() as u32)),
        (
            "random in the stream",
            Box::new(move |i| xorshift(i as u64 + 1)() as u32 % bits),
        ),
        ("all at the end", Box::new(move |_| bits)),
        (
            "decreasing",
            Box::new(move |i| bits.saturating_sub(i as u32 * 500)),
        ),
    ];
    for (label, fill) in fills {
        write_inputs(&t, tmp.path());
        let offsets: Vec<u32> = (0..n_subs(&t)).map(fill).collect();
        std::fs::write(tmp.path().join("subs"), le(&offsets, u32::to_le_bytes)).unwrap();
        for (k, bin) in kernels.iter().zip(bins).filter(|(k, _)| reads_subs(k)) {
            for grid in [None, Some(1)] {
                let p = Params {
                    out_bytes: out_bytes(&t, output(k)),
                    layout: ROW_MAJOR,
                    grid,
                    n_chunks: None,
                    stream: None,
                    record: false,
                };
                let got = run(bin, &k.budget, &t, tmp.path(), p);
                assert_ne!(got.err.0, 0, "{} with {label} sub-chunk offsets", k.variant);
                assert!(got.err.1 != 0, "{} names a chunk: {:?}", k.variant, got.err);
            }
        }
    }
}

#[test]
fn hostile_streams_stay_in_bounds_and_raise_the_error_word() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    let bases = [
        (
            "256x1024",
            codec::compress(
                &tensor(256, 1024, 11),
                &[256, 1024],
                Orientation::Standard,
                Encoding::Huffman,
            )
            .unwrap(),
        ),
        (
            "37x200",
            codec::compress(
                &tensor(37, 200, 12),
                &[37, 200],
                Orientation::Standard,
                Encoding::Huffman,
            )
            .unwrap(),
        ),
        (
            "200x96 transposed",
            codec::compress(
                &tensor(200, 96, 13),
                &[200, 96],
                Orientation::Transposed,
                Encoding::Huffman,
            )
            .unwrap(),
        ),
        ("64x1024 skewed", skewed()),
        // One symbol, one 1-bit code: every peek starting with a 1 bit matches no code.
        ("70x130 constant", constant()),
    ];
    let (mut refused, mut accepted, mut runs) = (0, 0, 0);
    for (base_label, base) in &bases {
        let mut cases: Vec<(String, CompressedTensor)> = mutations()
            .into_iter()
            .map(|(label, f)| (label.to_string(), mutate(base, f)))
            .collect();
        cases.push(("every code the longest".into(), all_longest(base)));
        for (i, (label, t)) in cases.iter().enumerate() {
            let dir = tmp
                .path()
                .join(format!("{base_label} {i}").replace([' ', 'x'], "_"));
            std::fs::create_dir_all(&dir).unwrap();
            write_inputs(t, &dir);
            record_subs(kernels, bins, t, &dir);
            for (k, bin) in kernels.iter().zip(bins) {
                let out = output(k);
                // Alternate the grid: the natural one, a single block, three blocks.
                let grid = [None, Some(1), Some(3)][(i + runs) % 3];
                let p = Params {
                    out_bytes: out_bytes(t, out),
                    layout: ROW_MAJOR,
                    grid,
                    n_chunks: None,
                    stream: None,
                    record: false,
                };
                let got = run(bin, &k.budget, t, &dir, p);
                let what = format!("{} on {base_label}, {label} (grid {grid:?})", k.variant);
                match reference(t, out) {
                    Ok(expected) => {
                        assert_eq!(
                            got.err,
                            (0, 0),
                            "{what}: the codec accepts it, the kernel flags {:?}",
                            huff_err::describe(got.err.0)
                        );
                        assert!(
                            got.out == expected,
                            "{what}: accepted, but the output differs"
                        );
                        accepted += 1;
                    }
                    Err(e) => {
                        assert_ne!(
                            got.err.0, 0,
                            "{what}: the codec refuses it ({e}), the kernel raised no error"
                        );
                        if got.err.0 & huff_err::ARGS == 0 {
                            let first = !got.err.1;
                            assert!(
                                got.err.1 != 0 && (first as usize) < stream(t).chunk_offsets.len(),
                                "{what}: a refused chunk is named, got {:?}",
                                got.err
                            );
                        }
                        refused += 1;
                    }
                }
                runs += 1;
            }
        }
    }
    // The last chunk one code short, and after the stream's end bits that match no code: the
    // codes end exactly at the chunk's end, so only the invalid lookup tells.
    let t = mutate(&constant(), |h| {
        h.total_bits -= 1;
        let b = h.total_bits;
        h.bits[(b / 8) as usize] |= 0x80 >> (b % 8);
    });
    let dir = tmp.path().join("invalid_after_the_end");
    std::fs::create_dir_all(&dir).unwrap();
    write_inputs(&t, &dir);
    record_subs(kernels, bins, &t, &dir);
    for (k, bin) in kernels.iter().zip(bins) {
        assert!(reference(&t, output(k)).is_err());
        let p = Params {
            out_bytes: out_bytes(&t, output(k)),
            layout: ROW_MAJOR,
            grid: None,
            n_chunks: None,
            stream: None,
            record: false,
        };
        let got = run(bin, &k.budget, &t, &dir, p);
        let last = stream(&t).chunk_offsets.len() as u32 - 1;
        assert_eq!(
            got.err,
            (huff_err::NO_CODE, !last),
            "{}: the last chunk's last code matches nothing",
            k.variant
        );
    }
    println!("{runs} launches: {refused} refused, {accepted} accepted");
    // The four on every base and kernel, and both verdicts seen among the flips.
    assert!(
        refused >= 4 * 4 * 3 && accepted >= 4 * 3 * 2,
        "{refused} refused, {accepted} accepted"
    );
}

#[test]
fn a_bad_layout_traps() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    // Not rmm-eligible (37 rows, 200 columns): a tiled layout is a runtime bug, as is layout 3.
    let t = codec::compress(
        &tensor(37, 200, 3),
        &[37, 200],
        Orientation::Standard,
        Encoding::Huffman,
    )
    .unwrap();
    write_inputs(&t, tmp.path());
    for (k, bin) in kernels.iter().zip(bins) {
        for layout in [TILED_STANDARD, TILED_TRANSPOSED, 3] {
            let p = Params {
                out_bytes: out_bytes(&t, output(k)),
                layout,
                grid: None,
                n_chunks: None,
                stream: None,
                record: false,
            };
            let status = harness(bin, &k.budget, &t, tmp.path(), p).status;
            assert_eq!(
                status.code(),
                Some(TRAP_EXIT),
                "{} with layout {layout}: {status}",
                k.variant
            );
        }
    }
}

#[test]
fn a_size_that_does_not_match_the_shape_or_stream_is_refused() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    let t = codec::compress(
        &tensor(256, 1024, 5),
        &[256, 1024],
        Orientation::Standard,
        Encoding::Huffman,
    )
    .unwrap();
    write_inputs(&t, tmp.path());
    let n = stream(&t).chunk_offsets.len() as u32;
    for (k, bin) in kernels.iter().zip(bins) {
        // Fewer chunks than the shape needs (the offsets file holds more: reading fewer is in bounds).
        for n_chunks in [0, 1, n - 1] {
            let p = Params {
                out_bytes: out_bytes(&t, output(k)),
                layout: ROW_MAJOR,
                grid: Some(2),
                n_chunks: Some(n_chunks),
                stream: None,
                record: false,
            };
            let got = run(bin, &k.budget, &t, tmp.path(), p);
            assert_eq!(
                got.err,
                (huff_err::ARGS, 0),
                "{} with {n_chunks} of {n} chunks",
                k.variant
            );
        }
    }
}

#[test]
fn an_escape_slot_past_the_exponents_is_refused() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    let base = codec::compress(
        &tensor(300, 1000, 9),
        &[300, 1000],
        Orientation::Standard,
        Encoding::Huffman,
    )
    .unwrap();
    assert!(base.escape_count() > 0);
    let mut prefix = base.clone();
    prefix.escapes.prefix.iter_mut().for_each(|p| *p += 1 << 20);
    let mut bitmap = base.clone();
    bitmap.escapes.bitmap.fill(u64::MAX);
    for (label, t) in [("prefix", &prefix), ("bitmap", &bitmap)] {
        assert!(
            reference(t, HuffOutput::Exponent).is_err(),
            "the codec refuses the {label}"
        );
        let dir = tmp.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        write_inputs(t, &dir);
        // huff_palette never reads the escape tables (escaped groups hold index 0).
        for (k, bin) in kernels
            .iter()
            .zip(bins)
            .filter(|(k, _)| output(k) != HuffOutput::Palette)
        {
            let p = Params {
                out_bytes: out_bytes(t, output(k)),
                layout: ROW_MAJOR,
                grid: None,
                n_chunks: None,
                stream: None,
                record: false,
            };
            let got = run(bin, &k.budget, t, &dir, p);
            assert!(
                got.err.0 & huff_err::ESCAPE != 0 && got.err.1 != 0,
                "{} on a bad escape {label}: {:?}",
                k.variant,
                got.err
            );
        }
    }
}
