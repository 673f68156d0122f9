//! A small case for `compute-sanitizer --tool memcheck` (scripts/gpu-run.sh runs it alone):
//! every kernel family once, both orientations, a partial batch tile, and hostile Huffman streams
//! (memcheck must report nothing for them either).

use unweight::codec::{compress, Encoding, Orientation};
use unweight::gpu::harness::check::{check_decode, check_hostile, check_linear, print_outcomes};
use unweight::gpu::harness::synth::{self, WeightSpec};
use unweight_tests::{assert_no_failures, gpu_session};

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_sanitizer_small() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for o in [Orientation::Standard, Orientation::Transposed] {
        // 256x128: two row tiles, no split; 128x512: one row tile, k split in two.
        for (n_out, k) in [(256, 128), (128, 512)] {
            let (outcomes, f) =
                check_linear(&h, &mut rng, n_out, k, o, &[7], 0.05).expect("running pipelines");
            print_outcomes(&outcomes);
            failures.extend(f);
        }
        let w = synth::weights(
            &mut rng,
            130,
            70,
            WeightSpec {
                escape_groups: 0.05,
                specials: true,
                bulk: synth::Bulk::Trained,
            },
        );
        let t = compress(&w, &[130, 70], o, Encoding::Huffman).unwrap();
        failures.extend(check_decode(&h, "sanitizer 130x70", &t).expect("decoding"));
        failures.extend(
            check_hostile(&h, "sanitizer hostile 130x70", &t).expect("refusing hostile streams"),
        );
    }
    assert_no_failures(&failures);
}
