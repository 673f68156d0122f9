//! The generated Huffman preprocess kernels, run on the CPU, equal the codec's reference decoders
//! bit for bit. The kernels are plain CUDA C++ (no inline PTX), so the host C++ compiler builds them
//! with a small shim (codegen_huff_emulated/shim.h: one std::thread per CUDA thread, barriers for
//! __syncthreads/__syncwarp). This checks the decode, escape patching, padding and write-out logic in
//! CI without a GPU; the GPU tests check the same outputs on an H100. The kernels are built with
//! AddressSanitizer and UBSan, every buffer in its own allocation of exactly the size the kernel may
//! read, so hostile streams (tests/tests/codegen_huff_emulated/hostile.rs) prove the bounds and the
//! error flag; every case also runs on several grid sizes (the persistent loop). The chunk decoders
//! (refill word / vec4) also record the sub-chunk offsets, checked against the CPU's; the sub256
//! decoders read them, and run a second time built with a 16-byte stage-in buffer, so their clamped
//! global fallback decodes every case too.
//!
//! Needs a C++20 compiler with the sanitizers (`$CXX`, default `g++`); without one the test fails and
//! says so.

#[path = "codegen_huff_emulated/hostile.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use unweight::codec::{self, CompressedTensor, Encoding, HuffmanStream, Indices, Orientation};
use unweight::gpu::layout::tiles::{self, Packing};
use unweight::gpu::layout::{multi, subs};
use unweight_codegen::abi::{GROUP, SUB_SYMBOLS};
use unweight_codegen::generate::{render_set, templates_dir, Generated};
use unweight_codegen::render::Templates;
use unweight_codegen::space::{Budget, VariantSet};
use unweight_codegen::variant::{HuffOutput, HuffRefill, Variant};
use unweight_tests::{build_host_kernel, HostKernel};

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("codegen_huff_emulated")
}

/// Builds the host binary for one kernel (`tag` tells apart builds of one variant).
fn build(k: &Generated, dir: &Path, tag: &str) -> PathBuf {
    let name = k.variant.to_string();
    let host = HostKernel {
        std: "c++20",
        flags: &[
            "-fno-strict-aliasing",
            "-fno-omit-frame-pointer",
            "-pthread",
        ],
        defines: &[format!("BITS_FILE=\"{}\"", bits_file(k))],
        includes: &[harness_dir()],
        harness: harness_dir().join("harness.cpp"),
    };
    build_host_kernel(dir, &format!("{name}{tag}"), &name, &k.source, &host)
}

/// Every Huffman kernel (each output x each refill), then each sub256 kernel again with a 16-byte
/// stage-in buffer (so nearly every unit takes the global fallback), and their sanitizer builds,
/// made once per test process (in the target's scratch dir).
struct Built {
    kernels: Vec<Generated>,
    bins: Vec<PathBuf>,
}

/// Stage-in bytes per warp of the fallback builds: one block, so only a unit whose bits lie in one
/// 16-byte block is staged.
const TINY_STAGE_IN: u32 = 16;

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut kernels = render_set(&VariantSet::Globs(vec!["huff_*".into()])).unwrap();
        assert_eq!(kernels.len(), HuffOutput::ALL.len() * HuffRefill::ALL.len());
        let templates = Templates::load(&templates_dir()).unwrap();
        let tiny: Vec<Generated> = kernels
            .iter()
            .filter_map(|k| match (&k.variant, &k.budget) {
                (Variant::Huff(h), Budget::Huff(b)) if h.refill.sub_symbols().is_some() => {
                    let mut b = b.clone();
                    let area = |stage_in: u32| (b.warps * stage_in).max(16);
                    b.smem_bytes = b.smem_bytes - area(b.stage_in_bytes) + area(TINY_STAGE_IN);
                    b.stage_in_bytes = TINY_STAGE_IN;
                    let budget = Budget::Huff(b);
                    let source = templates.render(&k.variant, &budget).unwrap();
                    assert!(source.contains(&format!("STAGE_IN_BYTES = {TINY_STAGE_IN};")));
                    Some(Generated {
                        variant: k.variant,
                        budget,
                        source,
                        hash: 0,
                    })
                }
                _ => None,
            })
            .collect();
        assert_eq!(tiny.len(), HuffOutput::ALL.len() * sub_refills());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen_huff_emulated");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bins: Vec<PathBuf> = kernels.iter().map(|k| build(k, &dir, "")).collect();
        bins.extend(tiny.iter().map(|k| build(k, &dir, "_tiny")));
        kernels.extend(tiny);
        Built { kernels, bins }
    })
}

/// Refill values that read sub-chunk offsets (each also gets a fallback build).
fn sub_refills() -> usize {
    HuffRefill::ALL
        .iter()
        .filter(|r| r.sub_symbols().is_some())
        .count()
}

/// Whether a built kernel reads sub-chunk offsets (refill sub256) rather than recording them.
fn reads_subs(k: &Generated) -> bool {
    matches!(k.variant, Variant::Huff(h) if h.refill.sub_symbols().is_some())
}

/// Sub-chunk offsets a tensor's device image keeps.
fn n_subs(t: &CompressedTensor) -> usize {
    (t.rows * t.padded_cols() / GROUP as usize).div_ceil((SUB_SYMBOLS / GROUP) as usize)
}

/// The stream file a kernel reads: padded to what its refill loads (see [`write_inputs`]).
fn bits_file(k: &Generated) -> &'static str {
    let Variant::Huff(h) = k.variant else {
        unreachable!()
    };
    match h.refill {
        HuffRefill::Word => "/bits",
        HuffRefill::Vec4 | HuffRefill::Sub256 | HuffRefill::Sub256M4 | HuffRefill::Sub256Win => {
            "/bits16"
        }
    }
}

/// The output kind of a generated Huffman kernel.
fn output(k: &Generated) -> HuffOutput {
    let Variant::Huff(h) = k.variant else {
        unreachable!()
    };
    h.output
}

/// What the codec's reference decoder gives for `out` (row-major), or its refusal.
fn reference(t: &CompressedTensor, out: HuffOutput) -> Result<Vec<u8>, codec::CodecError> {
    Ok(match out {
        HuffOutput::Bf16 => le(&codec::decode_bf16_encoded(t)?, u16::to_le_bytes),
        HuffOutput::Exponent => codec::decode_exponents(t)?,
        HuffOutput::Palette => codec::decode_palette_indices(t)?,
    })
}

fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// The stream of a Huffman-encoded tensor.
fn stream(t: &CompressedTensor) -> &HuffmanStream {
    let Indices::Huffman(h) = &t.indices else {
        panic!("not huffman")
    };
    h
}

/// Writes the kernel's inputs for `t` into `dir`, one file per buffer. The stream is padded with
/// zeros only to the least each refill reads, less than the upload's `gpu::layout::BITS_TAIL`
/// padding: whole 32-bit words (`bits`, refill word) or whole 16-byte blocks (`bits16`, refill
/// vec4), so the kernel is checked inside exactly `stream_bytes` so rounded.
fn write_inputs(t: &CompressedTensor, dir: &Path) {
    let h = stream(t);
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    for (name, unit) in [("bits", 4), ("bits16", 16)] {
        let mut bits = h.bits.clone();
        bits.resize(h.bits.len().div_ceil(unit) * unit, 0);
        w(name, &bits);
    }
    w("offsets", &le(&h.chunk_offsets, u32::to_le_bytes));
    // The decode tables as the upload builds them (gpu::layout::multi), in both entry formats.
    let lut = h.decode_lut();
    w(
        "tables",
        &le(&multi::tables(&lut, HuffRefill::Word), u32::to_le_bytes),
    );
    w(
        "tables_m4",
        &le(&multi::tables(&lut, HuffRefill::Sub256M4), u32::to_le_bytes),
    );
    w("palette", &t.palette);
    w("sm", &t.sm);
    w("bitmap", &le(&t.escapes.bitmap, u64::to_le_bytes));
    w("prefix", &le(&t.escapes.prefix, u32::to_le_bytes));
    w("esc_exp", &t.escapes.exponents);
    // The CPU's sub-chunk offsets where it decodes them, else zeros (hostile.rs then stores what a
    // validating decode recorded).
    let offsets = subs::reference(h, t.rows * t.padded_cols())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; n_subs(t)]);
    assert_eq!(offsets.len(), n_subs(t));
    w("subs", &le(&offsets, u32::to_le_bytes));
}

/// The appended `layout` parameter: output layout of `huff_exponent` / `huff_palette`, sm input
/// layout of `huff_bf16`.
const ROW_MAJOR: u32 = 0;
const TILED_STANDARD: u32 = 1;
const TILED_TRANSPOSED: u32 = 2;

/// Exit status of the harness when the kernel trapped (shim.h's `TRAP_EXIT`).
const TRAP_EXIT: i32 = 5;

/// One launch: the output bytes, the error word `(reasons, !first bad chunk)` and the sub-chunk
/// offsets recorded (a chunk decoder with `record`).
struct Launch {
    out: Vec<u8>,
    err: (u32, u32),
    subs: Option<Vec<u32>>,
}

/// Launch parameters besides the buffers.
#[derive(Clone, Copy)]
struct Params {
    out_bytes: usize,
    layout: u32,
    /// Blocks; `None`: one per 128 chunks (the runtime's natural grid).
    grid: Option<u32>,
    /// The `n_chunks` argument; `None`: the stream's offset count.
    n_chunks: Option<u32>,
    /// The `(stream_bits, stream_bytes)` arguments; `None`: the stream's.
    stream: Option<(u64, u64)>,
    /// Chunk decoders: record the sub-chunk offsets into `subs_out` (else a null pointer).
    record: bool,
}

fn harness(
    bin: &Path,
    budget: &Budget,
    t: &CompressedTensor,
    dir: &Path,
    p: Params,
) -> std::process::Output {
    let h = stream(t);
    let threads = budget.block()[0];
    let n_chunks = p.n_chunks.unwrap_or(h.chunk_offsets.len() as u32);
    let grid = p.grid.unwrap_or(n_chunks.div_ceil(threads).max(1));
    Command::new(bin)
        .arg(dir)
        .args([t.rows, t.cols, t.padded_cols()].map(|x| x.to_string()))
        .arg(h.chunk_symbols.to_string())
        .arg(n_chunks.to_string())
        .arg(threads.to_string())
        .arg(p.out_bytes.to_string())
        .arg(p.layout.to_string())
        .arg(grid.to_string())
        .args({
            let (bits, bytes) = p.stream.unwrap_or((h.total_bits, h.bits.len() as u64));
            [bits.to_string(), bytes.to_string()]
        })
        .arg((t.escapes.exponents.len() / 64).to_string())
        .arg(if p.record { n_subs(t) } else { 0 }.to_string())
        .output()
        .unwrap()
}

fn run(bin: &Path, budget: &Budget, t: &CompressedTensor, dir: &Path, p: Params) -> Launch {
    let out = harness(bin, budget, t, dir, p);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} exited with {} (sanitizer report below; 5 = trapped)\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<u32> = text
        .trim()
        .strip_prefix("err ")
        .unwrap_or_else(|| panic!("harness printed {text:?}"))
        .split(' ')
        .map(|w| w.parse().unwrap())
        .collect();
    let subs = p.record.then(|| {
        std::fs::read(dir.join("subs_out"))
            .unwrap()
            .chunks(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect()
    });
    Launch {
        out: std::fs::read(dir.join("out")).unwrap(),
        err: (words[0], words[1]),
        subs,
    }
}

/// The rmm's tiled layout (docs/CONTRACT.md), element by element from the row-major codec output
/// (exponent bytes, or nibbles when `nibbles`).
fn tiled(t: &CompressedTensor, row_major: &[u8], nibbles: bool) -> Vec<u8> {
    let (rows, cols) = (t.rows, t.cols);
    let block_bytes = if nibbles { 4096 } else { 8192 };
    let mut out = vec![0u8; row_major.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (tile, rr, cc, width) = match t.orientation {
                Orientation::Standard => ((r / 128) * (cols / 64) + c / 64, r % 128, c % 64, 64),
                Orientation::Transposed => ((c / 128) * (rows / 64) + r / 64, r % 64, c % 128, 128),
            };
            if nibbles {
                let v = (row_major[(r * cols + c) / 2] >> (4 * (c % 2))) & 15;
                out[tile * block_bytes + (rr * width + cc) / 2] |= v << (4 * (cc % 2));
            } else {
                out[tile * block_bytes + rr * width + cc] = row_major[r * cols + c];
            }
        }
    }
    out
}

/// Deterministic BF16 bits: mostly a narrow exponent range (as in trained weights), ~0.1% anything
/// (NaN payloads, ±Inf, subnormals, zeros: escape groups).
fn tensor(rows: usize, cols: usize, seed: u64) -> Vec<u16> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..rows * cols)
        .map(|_| {
            let r = rnd();
            if r % 997 == 0 {
                (r >> 16) as u16
            } else {
                let e =
                    118 + ((r >> 8) % 8) as u16 + ((r >> 20) % 3) as u16 * ((r >> 30) % 5) as u16;
                ((r >> 40) as u16 & 0x8000) | (e << 7) | ((r >> 50) as u16 & 0x7F)
            }
        })
        .collect()
}

/// 64 x 1024 with exponent frequencies halving from one to the next: the longest codes (the 12-bit
/// limit).
fn skewed() -> CompressedTensor {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let bits: Vec<u16> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = 100 + (x | (1 << 40)).trailing_zeros() as u16 % 40;
            ((x >> 48) as u16 & 0x807F) | (e << 7)
        })
        .collect();
    codec::compress(&bits, &[64, 1024], Orientation::Standard, Encoding::Huffman).unwrap()
}

#[test]
fn huffman_kernels_match_the_codec_on_the_cpu() {
    let Built { kernels, bins } = built();
    let tmp = tempfile::tempdir().unwrap();
    // Shapes: row length not a multiple of 64 (padding dropped in bf16), one short chunk, several
    // blocks with a partial last warp, 1x1, a transposed encoding, and a single-symbol code.
    let mut cases: Vec<(String, CompressedTensor)> = Vec::new();
    for (i, &(rows, cols, orientation)) in [
        (37, 200, Orientation::Standard),
        (64, 4096, Orientation::Standard),
        (3, 64, Orientation::Standard),
        (300, 1000, Orientation::Standard),
        (1, 1, Orientation::Standard),
        (129, 512, Orientation::Standard),
        (200, 96, Orientation::Transposed),
        (256, 192, Orientation::Standard), // rmm-eligible: tiled standard
        (128, 320, Orientation::Transposed), // rmm-eligible: encoded 320 x 128, tiled transposed
    ]
    .iter()
    .enumerate()
    {
        let bits = tensor(rows, cols, i as u64 + 1);
        let t = codec::compress(&bits, &[rows, cols], orientation, Encoding::Huffman).unwrap();
        cases.push((format!("{rows}x{cols} {orientation:?}"), t));
    }
    let t = skewed();
    let h = stream(&t);
    assert_eq!(
        h.code_lengths.iter().max(),
        Some(&12),
        "skewed case reaches the length limit"
    );
    cases.push(("64x1024 skewed".into(), t));
    let same = vec![0x3F80u16; 70 * 130];
    cases.push((
        "70x130 constant".into(),
        codec::compress(&same, &[70, 130], Orientation::Standard, Encoding::Huffman).unwrap(),
    ));
    assert!(
        cases.iter().any(|(_, t)| t.escape_count() > 0),
        "some case has escape groups"
    );

    let mut tested = 0;
    for (label, t) in &cases {
        let dir = tmp.path().join(label.replace([' ', 'x'], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        write_inputs(t, &dir);
        for (k, bin) in kernels.iter().zip(bins) {
            let out = output(k);
            let expected = reference(t, out).unwrap();
            let mut runs = vec![(ROW_MAJOR, expected.clone(), dir.clone())];
            // rmm-eligible shapes: the exponent/palette kernels also write the rmm's tiled layout, and
            // huff_bf16 also reads the tiled sm copy (what a Huffman-resident weight keeps).
            let eligible = match t.orientation {
                Orientation::Standard => t.rows % 128 == 0 && t.cols % 64 == 0,
                Orientation::Transposed => t.rows % 64 == 0 && t.cols % 128 == 0,
            };
            let layout = match t.orientation {
                Orientation::Standard => TILED_STANDARD,
                Orientation::Transposed => TILED_TRANSPOSED,
            };
            if eligible && out == HuffOutput::Bf16 {
                let tiled_dir = dir.join("tiled_sm");
                std::fs::create_dir_all(&tiled_dir).unwrap();
                write_inputs(t, &tiled_dir);
                std::fs::write(tiled_dir.join("sm"), tiled(t, &t.sm, false)).unwrap();
                runs.push((layout, expected.clone(), tiled_dir));
            }
            if eligible && out != HuffOutput::Bf16 {
                let nibbles = out == HuffOutput::Palette;
                let want = tiled(t, &expected, nibbles);
                // The runtime's CPU tiler (what uploads resident weights) agrees with this reading of the contract.
                let (n_out, k) = match t.orientation {
                    Orientation::Standard => (t.rows, t.cols),
                    Orientation::Transposed => (t.cols, t.rows),
                };
                let elem = if nibbles {
                    Packing::Nibble
                } else {
                    Packing::Byte
                };
                assert_eq!(
                    tiles::tile(&expected, t.orientation, n_out, k, elem).unwrap(),
                    want,
                    "{label}"
                );
                runs.push((layout, want, dir.clone()));
            }
            for (layout, expected, dir) in runs {
                // The natural grid, then fewer blocks than units of work (the persistent loop).
                for grid in [None, Some(1), Some(2), Some(3)] {
                    let p = Params {
                        out_bytes: expected.len(),
                        layout,
                        grid,
                        n_chunks: None,
                        stream: None,
                        record: !reads_subs(k),
                    };
                    let got = run(bin, &k.budget, t, &dir, p);
                    if let Some(recorded) = &got.subs {
                        let want = subs::reference(stream(t), t.rows * t.padded_cols());
                        assert_eq!(
                            Some(recorded),
                            want.unwrap().as_ref(),
                            "{} recorded sub-chunk offsets on {label} (grid {grid:?})",
                            k.variant
                        );
                    }
                    let first = got.out.iter().zip(&expected).position(|(a, b)| a != b);
                    assert!(
                        first.is_none() && got.err == (0, 0),
                        "{} (layout {layout}, grid {grid:?}) on {label} ({} escapes): first difference at byte {:?} of {}, error word {:?}",
                        k.variant,
                        t.escape_count(),
                        first,
                        expected.len(),
                        got.err
                    );
                }
                tested += 1;
            }
        }
    } // Two rmm-eligible cases x (bf16 from tiled sm, tiled exponent, tiled palette), per refill and
      // for the fallback builds.
    assert_eq!(
        tested,
        (cases.len() * 3 + 6) * (HuffRefill::ALL.len() + sub_refills())
    );
}
