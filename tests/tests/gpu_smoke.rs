//! Runs first on the H100 (scripts/gpu-run.sh): the smallest shapes, one CTA, so a kernel bug
//! shows up small. `cargo test -p unweight-tests --test gpu_smoke -- --ignored`.

use unweight::codec::Orientation;
use unweight::gpu::harness::check::{check_linear, check_linear_on, print_outcomes};
use unweight_tests::{assert_no_failures, gpu_session};

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_00_one_cta_all_pipelines() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for o in [Orientation::Standard, Orientation::Transposed] {
        // n_out = 128, k = 64: one CTA, one k block; m = 1: one batch row.
        let (outcomes, f) =
            check_linear(&h, &mut rng, 128, 64, o, &[1], 0.05).expect("running one CTA");
        print_outcomes(&outcomes);
        failures.extend(f);
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_01_few_ctas_all_pipelines() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for o in [Orientation::Standard, Orientation::Transposed] {
        // Two row tiles × three k blocks, two batch tiles at the smallest tile width; one row tile
        // × eight k blocks, which the runtime spreads over two CTAs (stream-K); three row tiles ×
        // 13 k blocks over 9 CTAs: ranges that start mid-tile, span two tiles or sit inside one.
        for (n_out, k) in [(256, 192), (128, 512), (384, 832)] {
            let (outcomes, f) = check_linear(&h, &mut rng, n_out, k, o, &[1, 7, 9], 0.05)
                .expect("running a few CTAs");
            print_outcomes(&outcomes);
            failures.extend(f);
        }
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_02_ranges_over_several_tiles() {
    // Persistent CTAs: fewer than tiles. 8 row tiles × 5 k blocks (× 2 batch tiles at m = 9
    // with the 8-wide tile) on 1, 3 and 7 CTAs: data-parallel waves, then a stream-K tail whose
    // ranges run over whole tiles between a hand-off and a waiting owner, or are empty (7 CTAs
    // for 5 tail units at m = 1); every pipeline against its raw twin on the same count.
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for o in [Orientation::Standard, Orientation::Transposed] {
        for ctas in [1, 3, 7] {
            let (outcomes, f) =
                check_linear_on(&h, &mut rng, 1024, 320, o, &[1, 9], 0.05, Some(ctas))
                    .expect("running ranges over several tiles");
            println!("1024x320 {o} on {ctas} CTAs:");
            print_outcomes(&outcomes);
            failures.extend(f);
        }
    }
    assert_no_failures(&failures);
}
