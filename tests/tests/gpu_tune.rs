//! A tiny tune on the GPU: the table it writes loads under the same stamp, and `plan_auto`
//! plans from it (the tuned variant and CTA count at a tuned bucket), falling back to the
//! default for a shape the table lacks.

use std::sync::Arc;

use unweight::codec::{self, Encoding, Orientation};
use unweight::gpu::harness::synth::{self, Rng, WeightSpec};
use unweight::gpu::layout::Residency;
use unweight::gpu::tuner::run::{run, TuneOptions};
use unweight::gpu::tuner::{best_stack_split, current_stamp, Source, Table};
use unweight::gpu::{DeviceWeights, GpuDevice, Linear};

fn palette_linear(dev: &Arc<GpuDevice>, rng: &mut Rng, n_out: usize, k: usize) -> Linear {
    let spec = WeightSpec {
        escape_groups: 0.01,
        specials: false,
        bulk: synth::Bulk::Trained,
    };
    let w = synth::weights(rng, n_out, k, spec);
    let t = codec::compress(&w, &[n_out, k], Orientation::Standard, Encoding::Huffman).unwrap();
    Linear::new(DeviceWeights::palette(dev, "tune test", &t).unwrap()).unwrap()
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_tiny_tune_feeds_plan_auto() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table.json");
    let table = run(TuneOptions {
        shapes: vec![(1536, 384, Orientation::Standard)],
        batch: vec![1, 16],
        residencies: vec![Residency::Palette],
        out: Some(out.clone()),
        budget_s: 600.0,
        iters: 5,
        ..TuneOptions::default()
    })
    .expect("tune");
    assert_eq!(table.entries.len(), 2);
    let dev = GpuDevice::new(0).unwrap();
    let loaded = Table::load(&out, &current_stamp(&dev).unwrap()).expect("reload");
    assert_eq!(loaded, table);

    let mut rng = Rng::new(7);
    let lin = palette_linear(&dev, &mut rng, 1536, 384);
    for (m, bucket) in [(1, 1), (16, 16), (12, 16)] {
        let (plan, source) = lin.plan_auto(&loaded, m).unwrap();
        assert_eq!(source, Source::Tuned { bucket }, "m={m}");
        let entry = loaded
            .nearest(1536, 384, Orientation::Standard, Residency::Palette, m)
            .unwrap();
        assert_eq!(plan.pipeline, entry.choice.pipeline);
        assert_eq!(
            plan.rmm.map(|e| e.name.to_string()),
            entry.choice.variant,
            "m={m}"
        );
        if m == bucket {
            assert_eq!(plan.ctas, entry.choice.ctas);
        }
    }
    let other = palette_linear(&dev, &mut rng, 384, 384);
    let (plan, source) = other.plan_auto(&loaded, 1).unwrap();
    assert_eq!(source, Source::Default);
    assert_eq!(plan.ctas, other.plan(plan.requested, 1).unwrap().ctas);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_tune_records_the_split_of_hard_weights_or_serial() {
    use unweight::gpu::tuner::split::{share_sms, SHARES};
    let dir = tempfile::tempdir().unwrap();
    let table = run(TuneOptions {
        shapes: vec![(1536, 384, Orientation::Standard)],
        batch: vec![1],
        residencies: vec![Residency::Huffman],
        out: Some(dir.path().join("table.json")),
        budget_s: 600.0,
        iters: 5,
        ..TuneOptions::default()
    })
    .expect("tune");
    let dev = GpuDevice::new(0).unwrap();
    let sms = dev.info.sm_count;
    let shares = share_sms(sms);
    let e = table
        .nearest(1536, 384, Orientation::Standard, Residency::Huffman, 1)
        .expect("a Huffman entry");
    let split = e.choice.decode_sms.expect("hard weights record a split");
    assert!(
        split == 0 || shares.contains(&split),
        "{split} is neither serial nor a share of {shares:?}"
    );
    // The pair times behind it, serial first: a one-matrix stack picks the same split.
    let points = &e.choice.split_us;
    assert_eq!(points.len(), SHARES.len() + 1, "{points:?}");
    assert_eq!(points[0].0, 0);
    assert!(
        points.iter().all(|p| p.1 > 0.0 && p.1.is_finite()),
        "{points:?}"
    );
    assert_eq!(best_stack_split(&[&points[..]]), Some(split));
}
