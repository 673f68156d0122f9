//! GPU Huffman decode equals the CPU decoders bit for bit for all three outputs, and refuses
//! hostile streams with an error naming the tensor, leaving the context usable.

use unweight::codec::{compress, Encoding, Orientation};
use unweight::gpu::harness::check::{check_decode, check_hostile, Harness};
use unweight::gpu::harness::synth::{self, WeightSpec};
use unweight_tests::{assert_no_failures, gpu_session};

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_huffman_small_and_odd_shapes() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    // 1x1, a row shorter than a group, padded rows, and a multi-chunk matrix with specials.
    for (rows, cols) in [(1, 1), (3, 5), (7, 100), (128, 64), (129, 130), (300, 1000)] {
        let w = synth::weights(
            &mut rng,
            rows,
            cols,
            WeightSpec {
                escape_groups: 0.05,
                specials: true,
                bulk: synth::Bulk::Trained,
            },
        );
        for o in [Orientation::Standard, Orientation::Transposed] {
            let t = compress(&w, &[rows, cols], o, Encoding::Huffman).unwrap();
            failures.extend(
                check_decode(&h, &format!("synthetic {rows}x{cols}"), &t).expect("decoding"),
            );
        }
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_huffman_synthetic_llama_shapes() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    // Both bulk histograms: trained weights' long codes (up to 12 bits), the flat one's longer streams.
    for bulk in [synth::Bulk::Trained, synth::Bulk::Flat] {
        for (rows, cols) in [(14336, 4096), (4096, 14336)] {
            let w = synth::weights(
                &mut rng,
                rows,
                cols,
                WeightSpec {
                    escape_groups: 0.01,
                    specials: true,
                    bulk,
                },
            );
            for o in [Orientation::Standard, Orientation::Transposed] {
                let t = compress(&w, &[rows, cols], o, Encoding::Huffman).unwrap();
                println!(
                    "{rows}x{cols} {o} {bulk:?}: {} escape groups of {}",
                    t.escape_count(),
                    t.groups()
                );
                failures.extend(
                    check_decode(&h, &format!("synthetic {rows}x{cols} {bulk:?}"), &t)
                        .expect("decoding"),
                );
            }
        }
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_huffman_minilm() {
    let path = unweight::minilm::path_from_env().unwrap();
    let h = Harness::open().expect("opening GPU 0");
    let tensors = unweight::minilm::load_bf16(&path).unwrap();
    assert!(
        tensors.len() > 50,
        "MiniLM has ~100 tensors, found {}",
        tensors.len()
    );
    let mut failures = Vec::new();
    for (name, shape, bits) in &tensors {
        let orientations: &[Orientation] = if shape.len() == 2 {
            &[Orientation::Standard, Orientation::Transposed]
        } else {
            &[Orientation::Standard]
        };
        for &o in orientations {
            let t = compress(bits, shape, o, Encoding::Huffman).unwrap();
            failures.extend(check_decode(&h, name, &t).expect("decoding"));
        }
    }
    println!("{} MiniLM tensors decoded", tensors.len());
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_huffman_refuses_hostile_streams_and_keeps_working() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    // Issue 9's 256x1024, and an odd shape of a few chunks (padded rows, partial warp).
    for (rows, cols) in [(256, 1024), (37, 200)] {
        let w = synth::weights(
            &mut rng,
            rows,
            cols,
            WeightSpec {
                escape_groups: 0.01,
                specials: true,
                bulk: synth::Bulk::Trained,
            },
        );
        let t = compress(&w, &[rows, cols], Orientation::Standard, Encoding::Huffman).unwrap();
        failures.extend(
            check_hostile(&h, &format!("synthetic {rows}x{cols}"), &t)
                .expect("the context survives"),
        );
    }
    assert_no_failures(&failures);
}
