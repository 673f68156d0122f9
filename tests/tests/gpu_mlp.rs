//! MLP stacks on the GPU: the activation kernels equal their CPU reference bit for bit; stacks
//! of every residency mix (all easy, all hard, mixed) equal their raw twin (the same kernels on
//! the raw BF16 weights) bit for bit, overlapped and on one stream, agree with cuBLAS to BF16
//! tolerance layer by layer (each given the cuBLAS layer's input) and as a stack (all of a GELU
//! stack, the first two layers of a SwiGLU one, on synthetic weights calibrated to unit RMS;
//! `unweight::gpu::harness::stack_error` says why), equal their layers run one by one, and
//! replay from a CUDA graph exactly; on MiniLM's real MLP weights and on a
//! synthetic Llama-3.1-8B stack (4 of its 32 layers here; `unweight bench-mlp` runs all 32);
//! loading from Huffman and palette bundles, under a budget; a small stack for memcheck
//! (`gpu_mlp_sanitizer_small`, run alone by scripts/gpu-run.sh's sanitizer step).

use std::path::PathBuf;

use unweight::bundle::{compress_file, CompressOptions, Selection};
use unweight::codec::Encoding;
use unweight::gpu::harness::check::first_diff;
use unweight::gpu::harness::mlp::{
    chain, check_activations, check_stack, compress, cublas_failures, cublas_plan, minilm,
    raw_stack, run, synth_swiglu,
};
use unweight::gpu::harness::synth;
use unweight::gpu::mlp::budget::{self, LayerKind};
use unweight::gpu::mlp::load::{layer_bytes, load_stack, Naming, Residencies};
use unweight::gpu::mlp::PlanOptions;
use unweight_codegen::variant::ActOp;
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
