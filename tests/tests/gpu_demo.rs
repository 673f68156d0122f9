//! The GPU part of `unweight demo` on a reduced layer (and on the full Llama-3.1-8B layer):
//! every projection's fused direct-palette result bit-identical to the raw-BF16 rmm of the same
//! tiling and within tolerance of cuBLAS, with both timed.

use unweight::codec::Orientation;
use unweight::demo::DemoLayer;
use unweight::gpu::harness::check::TOLERANCE;
use unweight::gpu::harness::demo::{self, DemoOptions, Report};

fn check(report: &Report, cases: usize) {
    println!(
        "{} (x seed {}), {:.1} s",
        report.device, report.seed, report.seconds
    );
    for r in &report.rows {
        println!(
            "  {:<9} {}x{} {:<10} m={:<3} {:<24} ×{} CTAs {:>8.1} us  cuBLAS {:>8.1} us  {} / {} bytes  rel {:.1e}  exact {}",
            r.projection, r.n_out, r.k, r.orientation, r.m, r.variant, r.ctas, r.palette_us, r.cublas_us,
            r.palette_bytes, r.bf16_bytes, r.rel_err, r.bit_exact
        );
    }
    assert!(
        report.failures.is_empty(),
        "{} failures:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.passed());
    assert_eq!(report.rows.len(), cases);
    let transposed = report
        .rows
        .iter()
        .filter(|r| r.orientation == Orientation::Transposed)
        .count();
    assert_eq!(
        transposed * 4,
        cases,
        "down_proj transposed is a quarter of the cases"
    );
    for r in &report.rows {
        assert!(r.bit_exact, "{r:?}");
        assert!(r.rel_err <= TOLERANCE, "{r:?}");
        assert!(r.palette_us > 0.0 && r.cublas_us > 0.0, "{r:?}");
        assert!(r.palette_bytes < r.bf16_bytes, "{r:?}");
    }
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_demo_reduced_layer() {
    // gate/up 1792×512, down 512×1792: multiples of 128 × 64, so every projection runs fused.
    let layer = DemoLayer::build(11, 512, 1792);
    let report = demo::run(&layer)
        .expect("GPU demo")
        .expect("an sm_90 GPU (the GPU part was skipped)");
    check(&report, 4 * DemoOptions::default().ms.len());
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_demo_llama_layer() {
    let layer = DemoLayer::build(1, unweight::demo::HIDDEN, unweight::demo::INTERMEDIATE);
    let dev = demo::open()
        .expect("opening GPU 0")
        .expect("an sm_90 GPU (the GPU part was skipped)");
    let opts = DemoOptions {
        ms: vec![1, 16],
        ..DemoOptions::default()
    };
    let report = demo::run_on(&dev, &layer, &opts).expect("GPU demo");
    check(&report, 8);
    assert!(
        report.seconds < 60.0,
        "GPU part took {:.1} s",
        report.seconds
    );
}
