//! Every pipeline's y equals its bit-exact reference and cuBLAS to BF16 tolerance, both
//! orientations, M ∈ {1, 7, 16, 64, 128, 200, 256, 1024} (128: the n128 tile; from 128 on the SS
//! consumers rebuild one k block per step); direct palette both tiled (SS rmm) and in
//! fragment layout (RS rmm, equal to the raw RS twin, which must equal the SS raw twin).

use unweight::codec::Orientation;
use unweight::gpu::harness::check::{check_linear, check_rs_variants, print_outcomes};
use unweight_tests::{assert_no_failures, gpu_session};

const MS: [usize; 8] = [1, 7, 16, 64, 128, 200, 256, 1024];

fn run(shapes: &[(usize, usize)], ms: &[usize], escape_groups: f64) {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for &(n_out, k) in shapes {
        for o in [Orientation::Standard, Orientation::Transposed] {
            let (outcomes, f) = check_linear(&h, &mut rng, n_out, k, o, ms, escape_groups)
                .expect("running pipelines");
            println!("{n_out}x{k} {o}:");
            print_outcomes(&outcomes);
            failures.extend(f);
        }
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_linear_medium_shapes() {
    run(&[(384, 384), (1536, 384), (384, 1536)], &MS, 0.01);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_linear_fallback_shapes() {
    // Not multiples of 128 / 64: exponent and palette transcode fall back to full decode,
    // raw to cuBLAS; palette residency is refused (documented in gpu::plan).
    run(&[(200, 100), (130, 64), (128, 96)], &[1, 7, 64], 0.01);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_linear_llama_mlp_shapes() {
    run(&[(14336, 4096), (4096, 14336)], &MS, 0.01);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_linear_rs_small_and_escape_heavy_shapes() {
    // The RS rmm's edges: one k block (a segment of one step, no fragment pair), an odd count
    // (the unpaired tail step), one CTA tile; and tiles with more escaped groups than a stage
    // stages in shared memory (the rare path's global reads), in both orientations.
    run(&[(128, 64), (256, 192), (640, 320)], &[1, 7, 16, 64], 0.01);
    run(&[(256, 448)], &[1, 16], 0.3);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_linear_every_rs_variant() {
    // The planner runs one RS variant per tile; this runs all of them (every ring depth, so both
    // step schedules: one k block per step at 4 stages, two at 8 and 12), each against its twin.
    // k blocks per CTA: 448 / 64 = 7 (odd: a two-block step's tail of three single steps) with one
    // tile, and the 14336-wide down projection's long ranges; escapes at 1% and at 30%.
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for (n_out, k, ms, esc) in [
        (128, 448, &[1usize, 16][..], 0.01),
        (384, 1536, &[1, 7, 64][..], 0.01),
        (256, 448, &[1, 16][..], 0.3),
        (4096, 14336, &[1][..], 0.002),
    ] {
        for o in [Orientation::Standard, Orientation::Transposed] {
            let (outcomes, f) =
                check_rs_variants(&h, &mut rng, n_out, k, o, ms, esc).expect("running RS variants");
            println!("{n_out}x{k} {o} (escapes {esc}):");
            print_outcomes(&outcomes);
            failures.extend(f);
        }
    }
    assert_no_failures(&failures);
}
