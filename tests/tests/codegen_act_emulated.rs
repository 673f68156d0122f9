//! The generated activation kernels, run on the CPU, equal the runtime's CPU reference
//! (`unweight::gpu::mlp::activation`) bit for bit: every bf16 input (gelu; silu_mul against a set
//! of `up` values), a tail that is not a multiple of the 8-value vector, in place and out of
//! place, on several grid sizes (the grid-stride loop). The kernels use only plain C++ and CUDA's
//! round-to-nearest float intrinsics, which the harness maps to IEEE host arithmetic built with
//! `-ffp-contract=off`, so this proves the kernel source computes what the reference computes;
//! the GPU test (`gpu_mlp`) checks the same on an sm_90 GPU. Built with AddressSanitizer and UBSan,
//! each buffer exactly `n` values long.
//!
//! Needs a C++17 compiler (`$CXX`, default `g++`); without one the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use unweight::gpu::mlp::activation;
use unweight_codegen::generate::render_set;
use unweight_codegen::space::VariantSet;
use unweight_codegen::variant::{ActOp, Variant};
use unweight_tests::{build_host_kernel, HostKernel};

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("codegen_act_emulated")
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen_act_emulated");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The host binary of each activation kernel, built once per test process.
fn binary(op: ActOp) -> PathBuf {
    static BUILT: OnceLock<Vec<(ActOp, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let kernels = render_set(&VariantSet::Globs(vec!["act_*".into()])).unwrap();
        assert_eq!(kernels.len(), ActOp::ALL.len());
        kernels
            .iter()
            .map(|k| {
                let Variant::Act(a) = k.variant else {
                    unreachable!("act_* matched {}", k.variant)
                };
                let name = k.variant.to_string();
                let host = HostKernel {
                    std: "c++17",
                    flags: &["-ffp-contract=off"],
                    defines: &[],
                    includes: &[],
                    harness: harness_dir().join("harness.cpp"),
                };
                let bin = build_host_kernel(&scratch(), &name, &name, &k.source, &host);
                (a.op, bin)
            })
            .collect()
    });
    built.iter().find(|(o, _)| *o == op).unwrap().1.clone()
}

fn write(path: &Path, v: &[u16]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Runs `act_<op>` on the emulated grid of `blocks` blocks.
fn run(op: ActOp, a: &[u16], b: &[u16], blocks: u32, inplace: bool) -> Vec<u16> {
    let tag = format!("{}-{}-{blocks}-{inplace}", op.as_str(), a.len());
    let dir = scratch();
    let (pa, pb, po) = (
        dir.join(format!("{tag}.a")),
        dir.join(format!("{tag}.b")),
        dir.join(format!("{tag}.out")),
    );
    write(&pa, a);
    let b_arg = if op.gated() {
        write(&pb, b);
        pb.display().to_string()
    } else {
        "-".to_string()
    };
    let status = Command::new(binary(op))
        .arg(&pa)
        .arg(&b_arg)
        .arg(&po)
        .arg(a.len().to_string())
        .arg(blocks.to_string())
        .arg(if inplace { "1" } else { "0" })
        .status()
        .unwrap();
    assert!(status.success(), "act_{} {tag}: {status}", op.as_str());
    std::fs::read(&po)
        .unwrap()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn first_difference(got: &[u16], want: &[u16], a: &[u16], b: &[u16]) -> Option<String> {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).position(|(g, w)| g != w).map(|i| {
        format!(
            "at {i}: a={:#06x} b={:#06x} got {:#06x} want {:#06x}",
            a[i],
            b.get(i).copied().unwrap_or(0),
            got[i],
            want[i]
        )
    })
}

/// Every bf16 value (NaNs, infinities, subnormals, both zeros), then `extra` more: a length
/// that leaves a tail of `extra % 8` values for the scalar path.
fn all_bf16(extra: usize) -> Vec<u16> {
    (0..=u16::MAX)
        .chain(0x3f00..0x3f00 + extra as u16)
        .collect()
}

#[test]
fn gelu_kernel_equals_the_reference_on_every_bf16() {
    let a = all_bf16(5);
    let want = activation::reference(ActOp::Gelu, &a, &[]);
    for (blocks, inplace) in [(1, false), (3, true), (33, false)] {
        let got = run(ActOp::Gelu, &a, &[], blocks, inplace);
        if let Some(d) = first_difference(&got, &want, &a, &[]) {
            panic!("act_gelu, {blocks} blocks, inplace {inplace}: {d}");
        }
    }
}

#[test]
fn silu_mul_kernel_equals_the_reference_on_every_gate() {
    let a = all_bf16(3);
    for up in [0x3f80u16, 0xc040, 0x3c23, 0x7f7f, 0x0001, 0x7fc0, 0xff80] {
        // Vary up along the vector too: lane-dependent bugs show.
        let b: Vec<u16> = (0..a.len())
            .map(|i| if i % 3 == 0 { up } else { up ^ 0x8000 })
            .collect();
        let want = activation::reference(ActOp::SiluMul, &a, &b);
        for (blocks, inplace) in [(1, true), (7, false)] {
            let got = run(ActOp::SiluMul, &a, &b, blocks, inplace);
            if let Some(d) = first_difference(&got, &want, &a, &b) {
                panic!("act_silu_mul, up {up:#06x}, {blocks} blocks, inplace {inplace}: {d}");
            }
        }
    }
}

#[test]
fn short_inputs_take_the_scalar_tail_only() {
    for n in [1usize, 7, 9, 15] {
        let a: Vec<u16> = (0..n as u16).map(|i| 0x3f80 + 37 * i).collect();
        let b: Vec<u16> = (0..n as u16).map(|i| 0xbf00 + 11 * i).collect();
        for op in ActOp::ALL {
            let want = activation::reference(op, &a, &b);
            let got = run(op, &a, &b, 1, false);
            assert_eq!(got, want, "act_{} n={n}", op.as_str());
        }
    }
}
