//! MLP stacks on the GPU: the activation kernels equal their CPU reference bit for bit; stacks
//! of every residency mix (all easy, all hard, mixed) equal their raw twin (the same kernels on
//! the raw BF16 weights) bit for bit, overlapped and on one stream, agree with cuBLAS to BF16
//! tolerance layer by layer (each given the cuBLAS layer's input) and as a stack (all of a GELU
//! stack, the first two layers of a SwiGLU one, on synthetic weights calibrated to unit RMS;
//! `unweight::gpu::harness::stack_error` says why), equal their layers run one by one, and
//! replay from a CUDA graph exactly; on MiniLM's real MLP weights and on a
//! synthetic Llama-3.1-8B stack (4 of its 32 layers here; `unweight bench-mlp` runs all 32);
//! loading from Huffman and palette bundles, under a budget; an easy layer transcoded from Huffman
//! on the GPU holds exactly the device buffers of the same tensor uploaded from a palette bundle
//! (fragment layout, RS rmm) and computes the same y; a small stack for memcheck
//! (`gpu_mlp_sanitizer_small`, run alone by scripts/gpu-run.sh's sanitizer step).

use std::path::PathBuf;

use unweight::bundle::{compress_file, CompressOptions, Selection};
use unweight::codec::{Encoding, Orientation};
use unweight::gpu::harness::check::{first_diff, twin_plan};
use unweight::gpu::harness::mlp::{
    chain, check_activations, check_stack, compress, cublas_failures, cublas_plan, minilm,
    raw_stack, run, synth_swiglu,
};
use unweight::gpu::harness::synth::{self, WeightSpec};
use unweight::gpu::layout::BlockLayout;
use unweight::gpu::linear::Linear;
use unweight::gpu::mlp::budget::{self, LayerKind};
use unweight::gpu::mlp::load::{
    layer_bytes, load_stack, transcode_to_palette, transcode_to_palette_with, Naming, Residencies,
};
use unweight::gpu::mlp::PlanOptions;
use unweight::gpu::plan::ExecPipeline;
use unweight::gpu::weights::{DevBuf, DeviceWeights, Resident};
use unweight_codegen::variant::{ASource, ActOp, Variant};
use unweight_tests::{assert_no_failures, gpu_session};

use LayerKind::{Easy as E, Hard as H};

fn minilm_path() -> PathBuf {
    unweight::minilm::path_from_env().unwrap()
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_activation_kernels_equal_the_cpu_reference() {
    let (h, _) = gpu_session();
    assert_no_failures(&check_activations(&h).unwrap());
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_minilm_every_mix_equals_its_raw_twin() {
    let (h, mut rng) = gpu_session();
    let case = minilm(&minilm_path()).unwrap();
    let raw = raw_stack(&h.dev, &case, 256).unwrap();
    let mut failures = Vec::new();
    let mixes = [
        vec![E; 6],
        vec![H; 6],
        vec![E, H, E, H, E, H],
        vec![H, H, E, E, E, H],
    ];
    let tensors = compress(&case, Encoding::Huffman).unwrap();
    for kinds in mixes {
        let tensors = tensors.clone();
        let (_, f) = check_stack(
            &h,
            &mut rng,
            &case,
            tensors,
            &raw,
            &kinds,
            &[1, 16, 64, 256],
            true,
        )
        .unwrap();
        failures.extend(f);
    }
    assert_no_failures(&failures);
}

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_llama_8b_every_mix_equals_its_raw_twin() {
    let (h, mut rng) = gpu_session();
    let case = synth_swiglu(&mut rng, 4, 2, 4096, 14336);
    let raw = raw_stack(&h.dev, &case, 1024).unwrap();
    let mut failures = Vec::new();
    let tensors = compress(&case, Encoding::Huffman).unwrap();
    for kinds in [vec![E; 4], vec![H; 4], vec![E, H, E, H], vec![H, E, E, H]] {
        let tensors = tensors.clone();
        let (_, f) = check_stack(
            &h,
            &mut rng,
            &case,
            tensors,
            &raw,
            &kinds,
            &[1, 16, 256, 1024],
            true,
        )
        .unwrap();
        failures.extend(f);
    }
    assert_no_failures(&failures);
}

/// One format, two uses: a Huffman bundle of MiniLM loads with easy layers transcoded to palette
/// on the GPU and equals its raw twin; a palette bundle loaded with the same mix (hard layers
/// re-encoded on the CPU) gives the same output bit for bit.
#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_minilm_bundles_load_both_encodings() {
    let (h, mut rng) = gpu_session();
    let dir = tempfile::tempdir().unwrap();
    let mut bundles = Vec::new();
    for encoding in [Encoding::Huffman, Encoding::Palette] {
        let out = dir.path().join(format!("minilm-{encoding}.safetensors"));
        let opts = CompressOptions {
            encoding,
            selection: Selection::new(
                Some("layer\\.[0-9]+\\.(intermediate|output)\\.dense\\.weight"),
                None,
            )
            .unwrap(),
        };
        compress_file(&minilm_path(), &out, &opts, &|_| {}).unwrap();
        bundles.push(out);
    }
    let kinds = vec![E, H, E, H, H, E];
    let load = |path| {
        load_stack(
            &h.dev,
            path,
            &Naming::bert(),
            6,
            &Residencies::Explicit(kinds.clone()),
            64,
        )
        .unwrap()
    };
    let (stack, report) = load(&bundles[0]);
    println!(
        "huffman bundle: load {:.2}s (upload {:.2}s, GPU transcode {:.3}s of {} matrices)",
        report.total_s, report.upload_s, report.transcode_s, report.transcoded
    );
    assert_eq!(report.transcoded, 6, "3 easy layers x 2 matrices");
    let (pal, pal_report) = load(&bundles[1]);
    assert_eq!((pal_report.transcoded, pal_report.reencoded), (0, 6));
    let case = minilm(&minilm_path()).unwrap();
    let raw = raw_stack(&h.dev, &case, 64).unwrap();
    let mut failures = Vec::new();
    for m in [1, 33] {
        let x = synth::activations(&mut rng, m, 384);
        let xd = h.stream.clone_htod(&x).unwrap();
        let plan = stack.plan(m, &PlanOptions::default()).unwrap();
        let y = run(&h.stream, &stack, &plan, &xd).unwrap();
        let twin = run(&h.stream, &raw, &raw.plan_twin(&plan).unwrap(), &xd).unwrap();
        if let Some(d) = first_diff(&y, &twin) {
            failures.push(format!("huffman bundle m={m} vs raw twin: {d}"));
        }
        let pplan = pal.plan(m, &PlanOptions::default()).unwrap();
        let yp = run(&h.stream, &pal, &pplan, &xd).unwrap();
        if let Some(d) = first_diff(&yp, &y) {
            failures.push(format!("palette bundle m={m} vs huffman bundle: {d}"));
        }
        // Against cuBLAS as every stack test compares (per layer, and the stack to the depth a
        // bare chain keeps meaningful: harness::stack_error).
        let cplan = cublas_plan(&raw, m).unwrap();
        let reference = run(&h.stream, &raw, &cplan, &xd).unwrap();
        let cublas = chain(&h, &raw, &cplan, &x).unwrap();
        let own = chain(&h, &stack, &plan, &x).unwrap();
        failures.extend(
            cublas_failures(
                &h,
                &stack,
                &plan,
                &own,
                &cublas,
                &y,
                &reference,
                ActOp::Gelu,
                &format!("huffman bundle m={m}"),
            )
            .unwrap(),
        );
    }
    assert_no_failures(&failures);
}

/// The first `len` bytes of a device buffer (the allocation of an empty table is padded).
fn download(w: &DeviceWeights, b: &DevBuf<u8>) -> Vec<u8> {
    let mut v = w.device().stream.clone_dtoh(b.slice()).unwrap();
    v.truncate(b.len);
    v
}

/// Where two palette-resident uploads of one tensor differ: block layout, geometry, bytes of
/// every device buffer.
fn same_buffers(label: &str, a: &DeviceWeights, b: &DeviceWeights) -> Vec<String> {
    let (Resident::Palette(pa), Resident::Palette(pb)) = (&a.resident, &b.resident) else {
        return vec![format!("{label}: both must be palette-resident")];
    };
    let mut failures = Vec::new();
    if pa.layout != pb.layout || a.geometry != b.geometry {
        failures.push(format!(
            "{label}: layout {} vs {}, geometry {:?} vs {:?}",
            pa.layout, pb.layout, a.geometry, b.geometry
        ));
    }
    for (what, x, y) in [
        ("sm bytes", &pa.rmm.sm_tiles, &pb.rmm.sm_tiles),
        ("nibbles", &pa.nibble_tiles, &pb.nibble_tiles),
        ("tile_esc", &pa.rmm.tile_esc, &pb.rmm.tile_esc),
        ("esc_exp", &pa.rmm.esc_exp, &pb.rmm.esc_exp),
        ("palette", &pa.palette, &pb.palette),
    ] {
        if let Some(d) = first_diff(&download(a, x), &download(b, y)) {
            failures.push(format!("{label}: {what} differ: {d}"));
        }
    }
    failures
}

/// Issue 12's load path: the same tensor (a) uploaded from a palette bundle
/// (`DeviceWeights::palette`, fragment blocks built on the host) and (b) uploaded Huffman and
/// transcoded on the GPU (`huff_palette`, then `relayout_*`) holds the same device bytes in every
/// buffer, plans the RS rmm, and gives bit-identical y at M = 1 and 16, equal to the raw RS twin's.
/// Transcoded into the tiled layout (`transcode_to_palette_with`), it equals the host's tiled upload.
#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_transcode_equals_the_palette_upload() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    for (n_out, k, o) in [
        (256, 192, Orientation::Standard),
        (256, 192, Orientation::Transposed),
        (384, 1536, Orientation::Transposed),
        (14336, 4096, Orientation::Standard),
        (4096, 14336, Orientation::Transposed),
    ] {
        let label = format!("{n_out}x{k} {o}");
        let spec = WeightSpec {
            escape_groups: 0.02,
            specials: false,
            bulk: synth::Bulk::Trained,
        };
        let w = synth::weights(&mut rng, n_out, k, spec);
        let th = unweight::codec::compress(&w, &[n_out, k], o, Encoding::Huffman).unwrap();
        let tp = unweight::codec::compress(&w, &[n_out, k], o, Encoding::Palette).unwrap();
        assert!(th.escape_count() > 0, "{label}: escapes present");
        // The SS form too (no re-layout): the same bytes as the host's tiled upload.
        let tiled = DeviceWeights::palette_with(&h.dev, &label, &tp, BlockLayout::Tiled).unwrap();
        let huff = DeviceWeights::huffman(&h.dev, &label, &th).unwrap();
        let tiled_b = transcode_to_palette_with(huff, &th.palette, BlockLayout::Tiled).unwrap();
        failures.extend(same_buffers(&format!("{label} tiled"), &tiled, &tiled_b));
        drop((tiled, tiled_b));
        let a = DeviceWeights::palette(&h.dev, &label, &tp).unwrap();
        let huff = DeviceWeights::huffman(&h.dev, &label, &th).unwrap();
        let b = transcode_to_palette(huff, &th.palette).unwrap();
        failures.extend(same_buffers(&label, &a, &b));
        assert!(
            matches!(&b.resident, Resident::Palette(p) if p.layout == BlockLayout::Fragments),
            "{label}: the transcode ends in fragment layout"
        );
        let (la, lb) = (Linear::new(a).unwrap(), Linear::new(b).unwrap());
        let raw =
            Linear::new(DeviceWeights::raw_twin(&h.dev, &label, &w, n_out, k, o).unwrap()).unwrap();
        for m in [1, 16] {
            let x = synth::activations(&mut rng, m, k);
            let (plan_a, plan_b) = (
                la.plan(ExecPipeline::DirectPalette, m).unwrap(),
                lb.plan(ExecPipeline::DirectPalette, m).unwrap(),
            );
            let rs = matches!(plan_b.rmm.map(|e| e.variant),
                Some(Variant::Rmm(v)) if v.a_src == ASource::Regs);
            assert!(rs, "{label} m={m}: {}", plan_b.variant_name());
            assert_eq!(
                plan_a.variant_name(),
                plan_b.variant_name(),
                "{label} m={m}"
            );
            assert_eq!(plan_a.ctas, plan_b.ctas, "{label} m={m}");
            let ya = h.run(&la, &plan_a, &x).unwrap();
            let yb = h.run(&lb, &plan_b, &x).unwrap();
            if let Some(d) = first_diff(&ya, &yb) {
                failures.push(format!("{label} m={m}: transcoded vs palette upload: {d}"));
            }
            let tp = twin_plan(&raw, &plan_b).unwrap().expect("a raw RS twin");
            let yr = h.run(&raw, &tp, &x).unwrap();
            if let Some(d) = first_diff(&yb, &yr) {
                failures.push(format!(
                    "{label} m={m}: transcoded vs raw twin {}: {d}",
                    tp.variant_name()
                ));
            }
        }
    }
    assert_no_failures(&failures);
}

/// A budget between all hard and all easy gives a strict mix (16 small SwiGLU layers, where hard
/// layers save more than the two slots cost), its planned bytes within the budget and close to
/// what the stack really holds, and the stack equals its raw twin.
#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_budget_picks_a_mix() {
    let (h, mut rng) = gpu_session();
    let case = synth_swiglu(&mut rng, 16, 4, 512, 1024);
    let tensors = compress(&case, Encoding::Huffman).unwrap();
    let bytes: Vec<_> = tensors.iter().map(layer_bytes).collect();
    let all_hard = budget::cost(&bytes, &[H; 16]).total();
    let all_easy = budget::cost(&bytes, &[E; 16]).total();
    assert!(all_hard < all_easy, "{all_hard} vs {all_easy}");
    let b = (all_hard + all_easy) / 2;
    let (stack, report) =
        unweight::gpu::mlp::build_stack(&h.dev, case.act, tensors, &Residencies::Budget(b), 16)
            .unwrap();
    let hard = report.kinds.iter().filter(|k| **k == H).count();
    println!(
        "budget {b}: {hard} hard, planned {} B, resident {} B",
        report.planned_bytes,
        stack.resident_bytes()
    );
    assert!(hard > 0 && hard < 16, "{:?}", report.kinds);
    assert!(report.planned_bytes <= b);
    let actual = stack.resident_bytes() as f64;
    assert!(
        (actual / report.planned_bytes as f64 - 1.0).abs() < 0.05,
        "planned {} B, resident {actual} B",
        report.planned_bytes
    );
    let raw = raw_stack(&h.dev, &case, 16).unwrap();
    let x = synth::activations(&mut rng, 16, 512);
    let xd = h.stream.clone_htod(&x).unwrap();
    let plan = stack.plan(16, &PlanOptions::default()).unwrap();
    let y = run(&h.stream, &stack, &plan, &xd).unwrap();
    let twin = run(&h.stream, &raw, &raw.plan_twin(&plan).unwrap(), &xd).unwrap();
    assert_eq!(first_diff(&y, &twin), None);
}

/// Forwards allocate nothing: the device's scratch pool and the stack's buffers stay as built,
/// and repeated forwards give the same bits.
#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_forward_allocates_nothing_and_repeats_exactly() {
    let (h, mut rng) = gpu_session();
    let case = synth_swiglu(&mut rng, 3, 3, 512, 1024);
    let (stack, _) = unweight::gpu::mlp::build_stack(
        &h.dev,
        case.act,
        compress(&case, Encoding::Huffman).unwrap(),
        &Residencies::Explicit(vec![H, E, H]),
        16,
    )
    .unwrap();
    let pool = h.dev.scratch.allocations();
    let x = synth::activations(&mut rng, 16, 512);
    let xd = h.stream.clone_htod(&x).unwrap();
    let plan = stack.plan(16, &PlanOptions::default()).unwrap();
    let first = run(&h.stream, &stack, &plan, &xd).unwrap();
    for _ in 0..3 {
        assert_eq!(run(&h.stream, &stack, &plan, &xd).unwrap(), first);
    }
    assert_eq!(h.dev.scratch.allocations(), pool, "the scratch pool grew");
}

/// For `compute-sanitizer --tool memcheck`: a 2-layer SwiGLU stack (one easy, one hard) and a
/// 2-layer GELU one, a partial batch tile, eager and overlapped, checked against the raw twin.
#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_mlp_sanitizer_small() {
    let (h, mut rng) = gpu_session();
    let mut failures = Vec::new();
    let swiglu = synth_swiglu(&mut rng, 2, 2, 256, 512);
    let mut gelu = swiglu.clone();
    gelu.act = ActOp::Gelu;
    gelu.name = "gelu 256->512->256".into();
    for l in &mut gelu.layers {
        l.remove(1);
    }
    for case in [swiglu, gelu] {
        let raw = raw_stack(&h.dev, &case, 8).unwrap();
        let tensors = compress(&case, Encoding::Huffman).unwrap();
        let (_, f) = check_stack(&h, &mut rng, &case, tensors, &raw, &[E, H], &[7], false).unwrap();
        failures.extend(f);
    }
    assert_no_failures(&failures);
}
