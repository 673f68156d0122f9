//! The generated re-layout kernels (templates/relayout.cu.tera), run on the CPU, turn the rmm's
//! tiled blocks into exactly the fragment blocks the host builds (`layout::fragments::shuffle`,
//! and `PaletteImage::with_layout(.., Fragments)`, what `DeviceWeights::palette` uploads): nibbles
//! and sign-mantissa bytes, both orientations, several blocks, weights with escaped groups, on
//! several grid sizes (the block-stride loop). The kernels are plain CUDA C++, built for the host
//! with the Huffman tests' shim (codegen_huff_emulated/shim.h) under AddressSanitizer and UBSan,
//! each buffer exactly its size. The GPU test (`gpu_mlp_transcode_equals_the_palette_upload`)
//! checks the same bytes on an sm_90 GPU.
//!
//! Needs a C++20 compiler (`$CXX`, default `g++`); without one the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use unweight::codec::{compress, decode_palette_indices, CompressedTensor, Encoding, Orientation};
use unweight::gpu::layout::fragments::{self, FragElem};
use unweight::gpu::layout::tiles::{self, Packing};
use unweight::gpu::layout::{BlockLayout, PaletteImage};
use unweight_codegen::generate::render_set;
use unweight_codegen::space::VariantSet;
use unweight_codegen::variant::{RelayoutElem, Variant};
use unweight_tests::{build_host_kernel, HostKernel};

/// Exit status of a trapped launch (shim.h's `TRAP_EXIT`).
const TRAP_EXIT: i32 = 5;

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen_relayout_emulated");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The host binary of each re-layout kernel, built once per test process.
fn binary(elem: RelayoutElem) -> PathBuf {
    static BUILT: OnceLock<Vec<(RelayoutElem, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let kernels = render_set(&VariantSet::Globs(vec!["relayout_*".into()])).unwrap();
        assert_eq!(kernels.len(), RelayoutElem::ALL.len());
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        kernels
            .iter()
            .map(|k| {
                let Variant::Relayout(r) = k.variant else {
                    unreachable!("relayout_* matched {}", k.variant)
                };
                let name = k.variant.to_string();
                let host = HostKernel {
                    std: "c++20",
                    flags: &["-fno-strict-aliasing", "-pthread"],
                    defines: &[],
                    includes: &[tests.join("codegen_huff_emulated")],
                    harness: tests.join("codegen_relayout_emulated").join("harness.cpp"),
                };
                let bin = build_host_kernel(&scratch(), &name, &name, &k.source, &host);
                (r.elem, bin)
            })
            .collect()
    });
    built.iter().find(|(e, _)| *e == elem).unwrap().1.clone()
}

/// Runs `relayout_<elem>` over `tiled` on `grid` blocks; `Err(status)` when it did not exit 0.
fn run(elem: RelayoutElem, tiled: &[u8], transposed: u32, grid: u32) -> Result<Vec<u8>, i32> {
    let block = match elem {
        RelayoutElem::Nibble => FragElem::Nibble.block_bytes(),
        RelayoutElem::Byte => FragElem::Byte.block_bytes(),
    };
    let tag = format!("{}-{}-{transposed}-{grid}", elem.as_str(), tiled.len());
    let (pi, po) = (
        scratch().join(format!("{tag}.in")),
        scratch().join(format!("{tag}.out")),
    );
    std::fs::write(&pi, tiled).unwrap();
    let status = Command::new(binary(elem))
        .arg(&pi)
        .arg(&po)
        .arg((tiled.len() / block).to_string())
        .arg(transposed.to_string())
        .arg(grid.to_string())
        .status()
        .unwrap();
    if !status.success() {
        return Err(status.code().unwrap_or(-1));
    }
    Ok(std::fs::read(&po).unwrap())
}

/// Trained-weight-like bits: a few exponents around 120, an out-of-palette outlier every 613
/// elements (many groups escaped), sign and mantissa varying.
fn weights(n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let e = if i % 613 == 7 {
                200 + (i % 37) as u16
            } else {
                118 + (h % 7).min(h % 5) as u16
            };
            (e << 7) | (h as u16 & 0x807f)
        })
        .collect()
}

fn first_diff(got: &[u8], want: &[u8]) -> Option<String> {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .map(|i| format!("byte {i}: got {:#04x}, want {:#04x}", got[i], want[i]))
}

fn tensor(n_out: usize, k: usize, o: Orientation) -> CompressedTensor {
    let t = compress(&weights(n_out * k), &[n_out, k], o, Encoding::Huffman).unwrap();
    assert!(t.escape_count() > 0, "{n_out}x{k} {o}: no escapes");
    t
}

#[test]
fn relayout_equals_the_host_fragment_layout() {
    // One block; several k blocks; several row tiles; a non-square multi-block grid.
    for (n_out, k) in [(128, 64), (128, 256), (384, 64), (256, 192)] {
        for o in [Orientation::Standard, Orientation::Transposed] {
            let t = tensor(n_out, k, o);
            let transposed = u32::from(o == Orientation::Transposed);
            let nibbles = decode_palette_indices(&t).unwrap();
            let cases = [
                (
                    RelayoutElem::Nibble,
                    Packing::Nibble,
                    FragElem::Nibble,
                    &nibbles,
                ),
                (RelayoutElem::Byte, Packing::Byte, FragElem::Byte, &t.sm),
            ];
            for (elem, packing, frag, src) in cases {
                let tiled = tiles::tile(src, o, n_out, k, packing).unwrap();
                let want = fragments::shuffle(src, o, n_out, k, frag).unwrap();
                let blocks = (n_out / 128 * (k / 64)) as u32;
                for grid in [1, 2, blocks] {
                    let got = run(elem, &tiled, transposed, grid).unwrap_or_else(|s| {
                        panic!(
                            "relayout_{} {n_out}x{k} {o} grid {grid}: exit {s}",
                            elem.as_str()
                        )
                    });
                    if let Some(d) = first_diff(&got, &want) {
                        panic!(
                            "relayout_{} {n_out}x{k} {o} grid {grid}: {d}",
                            elem.as_str()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn relayout_of_a_transcode_equals_the_palette_upload() {
    // What the load path does on the GPU (tiled nibbles from huff_palette, the Huffman upload's
    // tiled sm) against what `DeviceWeights::palette` uploads for the palette-encoded tensor.
    let (n_out, k) = (256, 128);
    for o in [Orientation::Standard, Orientation::Transposed] {
        let t = tensor(n_out, k, o);
        let p = compress(&weights(n_out * k), &[n_out, k], o, Encoding::Palette).unwrap();
        let host = PaletteImage::with_layout(&p, BlockLayout::Fragments).unwrap();
        let tiled = PaletteImage::new(&t).unwrap();
        let transposed = u32::from(o == Orientation::Transposed);
        let nib = run(RelayoutElem::Nibble, &tiled.nibble_tiles, transposed, 3).unwrap();
        let sm = run(RelayoutElem::Byte, &tiled.tables.sm_tiles, transposed, 3).unwrap();
        assert_eq!(first_diff(&nib, &host.nibble_tiles), None, "{o} nibbles");
        assert_eq!(first_diff(&sm, &host.tables.sm_tiles), None, "{o} sm bytes");
        assert_eq!(tiled.tables.tile_esc, host.tables.tile_esc, "{o}: records");
        assert_eq!(tiled.tables.esc_exp, host.tables.esc_exp, "{o}: escapes");
    }
}

#[test]
fn an_unknown_orientation_traps() {
    let tiled = vec![0u8; FragElem::Nibble.block_bytes()];
    assert_eq!(run(RelayoutElem::Nibble, &tiled, 2, 1), Err(TRAP_EXIT));
}
