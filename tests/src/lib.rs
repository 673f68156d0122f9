//! Shared helpers for the integration tests.

use unweight::gpu::harness::check::Harness;
use unweight::gpu::harness::synth::Rng;

/// GPU 0 and a generator with a fresh seed, printed so a failing run can be replayed.
pub fn gpu_session() -> (Harness, Rng) {
    let h = Harness::open().expect("opening GPU 0");
    let seed = Rng::fresh_seed();
    println!("seed {seed}");
    (h, Rng::new(seed))
}

/// Fails the test listing every failure a GPU check collected.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// How a CPU-emulation test builds a generated plain-C++ kernel for the host: its harness and
/// what that harness needs beyond the common flags (`-O1 -g -w`, AddressSanitizer and UBSan
/// with no recovery, every source as C++).
pub struct HostKernel<'a> {
    /// The C++ standard (`-std=`).
    pub std: &'a str,
    /// Flags beyond the common ones.
    pub flags: &'a [&'a str],
    /// `-D` definitions beyond `KERNEL` and `KERNEL_SOURCE` (`NAME=VALUE`).
    pub defines: &'a [String],
    /// Include directories.
    pub includes: &'a [std::path::PathBuf],
    /// The harness translation unit, which includes `KERNEL_SOURCE` and calls `KERNEL`.
    pub harness: std::path::PathBuf,
}

/// Writes `source` (kernel `kernel`) to `dir/<stem>.cu` and builds it with `h` into
/// `dir/<stem>.bin` with `$CXX` (default `g++`); panics with the compiler's output when it fails
/// or is missing.
pub fn build_host_kernel(
    dir: &std::path::Path,
    stem: &str,
    kernel: &str,
    source: &str,
    h: &HostKernel,
) -> std::path::PathBuf {
    let src = dir.join(format!("{stem}.cu"));
    std::fs::write(&src, source).unwrap();
    let bin = dir.join(format!("{stem}.bin"));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let mut cmd = std::process::Command::new(&cxx);
    cmd.arg(format!("-std={}", h.std))
        .args([
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-w",
        ])
        .args(h.flags)
        .args(["-x", "c++"])
        .arg(format!("-DKERNEL={kernel}"))
        .arg(format!("-DKERNEL_SOURCE=\"{}\"", src.display()));
    for d in h.defines {
        cmd.arg(format!("-D{d}"));
    }
    for i in h.includes {
        cmd.arg("-I").arg(i);
    }
    let out = cmd
        .arg(&h.harness)
        .arg("-o")
        .arg(&bin)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`{cxx}`: {e}; this test needs a {} compiler (set CXX or install g++)",
                h.std
            )
        });
    assert!(
        out.status.success(),
        "{cxx} failed for {kernel}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}
