//! MLP stacks on the GPU for the tests (tests/tests/gpu_mlp.rs), the `bench-mlp` benchmark and
//! the demo: synthetic Llama-like and real MiniLM layers, their raw twins, and the checks (bit
//! for bit against the raw twin, to tolerance against a cuBLAS stack, graph capture = eager).

use std::path::Path;
use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use unweight_codegen::variant::ActOp;

use crate::codec::{self, Encoding, Orientation};
use crate::gpu::device::GpuDevice;
use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::harness::check::{first_diff, Harness, POISON};
use crate::gpu::harness::stack_error::{calibrate_down, checked_depth, tolerance_failure};
use crate::gpu::harness::synth::{self, rel_frobenius, Rng};
use crate::gpu::launch::{self, ActArgs};
use crate::gpu::linear::Linear;
use crate::gpu::mlp::activation;
use crate::gpu::mlp::budget::LayerKind;
use crate::gpu::mlp::layer::act_entry;
use crate::gpu::mlp::load::{build_stack, LayerTensors, LoadReport, Residencies};
use crate::gpu::mlp::stack::{kinds_text, MlpStack, PlanOptions, StackPlan};
use crate::gpu::mlp::Mlp;
use crate::gpu::plan::ExecPipeline;
use crate::gpu::weights::DeviceWeights;

/// One matrix of a test stack: name, bf16 bits `[n_out][k]`, shape, stored orientation.
#[derive(Clone)]
pub struct Matrix {
    pub name: String,
    pub bits: Vec<u16>,
    pub n_out: usize,
    pub k: usize,
    pub orientation: Orientation,
}

/// The layers of a stack as bf16, before compression.
#[derive(Clone)]
pub struct StackCase {
    pub name: String,
    pub act: ActOp,
    pub layers: Vec<Vec<Matrix>>,
}

/// A synthetic SwiGLU stack of `layers` layers with calibrated weight statistics (the demo's
/// generator, `crate::demo`: ~2.6 bits of exponent entropy and ~1% escape groups, as real
/// checkpoints have), `distinct` of them generated and the rest copies (uploads are separate
/// either way; generating and compressing 32 Llama layers costs minutes). gate and up are stored
/// standard, down transposed (as a bundle compressed with `--transpose down_proj` stores it).
///
/// A bare stack has no norms or residuals, and `silu(g)·u` is quadratic in the input: each
/// layer's down projection is scaled by a power of two ([`calibrate_down`], exact, the codec's
/// statistics unchanged) so that the activations keep unit RMS layer after layer, as the norm in
/// front of a real model's MLP keeps them ([`synth_swiglu_raw`] skips it).
pub fn synth_swiglu(
    rng: &mut Rng,
    layers: usize,
    distinct: usize,
    hidden: usize,
    inter: usize,
) -> StackCase {
    let mut case = synth_swiglu_raw(rng, layers, distinct, hidden, inter);
    let probe = synth::activations(&mut Rng::new(rng.next_u64()), 1, hidden);
    calibrate_down(&mut case, &probe, 1);
    case
}

/// [`synth_swiglu`] without the calibration: the scale runs away layer over layer.
pub fn synth_swiglu_raw(
    rng: &mut Rng,
    layers: usize,
    distinct: usize,
    hidden: usize,
    inter: usize,
) -> StackCase {
    let distinct = distinct.clamp(1, layers.max(1));
    let seed = rng.next_u64();
    let made: Vec<Vec<Matrix>> = (0..distinct)
        .map(|l| {
            let layer = crate::demo::DemoLayer::build(seed.wrapping_add(l as u64), hidden, inter);
            layer
                .tensors
                .into_iter()
                .map(|t| Matrix {
                    name: format!("model.layers.{l}.{}", t.name),
                    orientation: if t.name.contains("down") {
                        Orientation::Transposed
                    } else {
                        Orientation::Standard
                    },
                    n_out: t.shape[0],
                    k: t.shape[1],
                    bits: t.bits,
                })
                .collect()
        })
        .collect();
    let layers = (0..layers)
        .map(|l| {
            made[l % distinct]
                .iter()
                .map(|m| Matrix {
                    name: m.name.replace(
                        &format!("layers.{}.", l % distinct),
                        &format!("layers.{l}."),
                    ),
                    ..m.clone()
                })
                .collect()
        })
        .collect();
    StackCase {
        name: format!("swiglu {hidden}->{inter}->{hidden}"),
        act: ActOp::SiluMul,
        layers,
    }
}

/// MiniLM's 6 GELU MLP layers (384 → 1536 → 384), real weights, stored standard.
pub fn minilm(path: &Path) -> Result<StackCase, GpuError> {
    let all = crate::minilm::load_bf16(path).map_err(|e| GpuError::Checkpoint {
        path: e.path,
        reason: e.reason,
    })?;
    let get = |name: &str| {
        all.iter()
            .find(|(n, _, _)| n == name)
            .map(|(n, shape, bits)| Matrix {
                name: n.clone(),
                bits: bits.clone(),
                n_out: shape[0],
                k: shape[1],
                orientation: Orientation::Standard,
            })
            .ok_or_else(|| GpuError::Checkpoint {
                path: path.display().to_string(),
                reason: format!("no tensor {name}"),
            })
    };
    let layers = (0..6)
        .map(|i| {
            Ok(vec![
                get(&format!("encoder.layer.{i}.intermediate.dense.weight"))?,
                get(&format!("encoder.layer.{i}.output.dense.weight"))?,
            ])
        })
        .collect::<Result<_, GpuError>>()?;
    Ok(StackCase {
        name: "minilm gelu 384->1536->384".into(),
        act: ActOp::Gelu,
        layers,
    })
}

/// The case's matrices compressed in `encoding`.
pub fn compress(case: &StackCase, encoding: Encoding) -> Result<Vec<LayerTensors>, GpuError> {
    case.layers
        .iter()
        .map(|l| {
            l.iter()
                .map(|m| {
                    let t = codec::compress(&m.bits, &[m.n_out, m.k], m.orientation, encoding)?;
                    Ok((m.name.clone(), t))
                })
                .collect()
        })
        .collect()
}

/// The case as a raw-resident stack (the bit-exact twin and the cuBLAS reference).
pub fn raw_stack(
    dev: &Arc<GpuDevice>,
    case: &StackCase,
    max_m: usize,
) -> Result<MlpStack, GpuError> {
    let mut scratch = dev
        .stream
        .alloc_zeros::<u8>(16)
        .ctx(|| "allocating".into())?;
    let mut layers = Vec::new();
    for l in &case.layers {
        let mut mats = Vec::new();
        for m in l {
            // Fragment blocks too: the raw RS twin of a palette layer in fragment layout (a
            // palette bundle's easy layers) reads them.
            let w = DeviceWeights::raw_twin(dev, &m.name, &m.bits, m.n_out, m.k, m.orientation)?;
            mats.push(Linear::with_own_scratch(w, &mut scratch)?);
        }
        let mut it = mats.into_iter();
        layers.push(match case.act {
            ActOp::SiluMul => Mlp::swiglu(
                it.next().expect("3"),
                it.next().expect("3"),
                it.next().expect("3"),
            )?,
            ActOp::Gelu => Mlp::gelu(it.next().expect("2"), it.next().expect("2"))?,
        });
    }
    MlpStack::new(dev, layers, max_m)
}

/// The plan of the cuBLAS reference on a raw stack.
pub fn cublas_plan(raw: &MlpStack, m: usize) -> Result<StackPlan, GpuError> {
    raw.plan(
        m,
        &PlanOptions {
            overlap: false,
            raw: ExecPipeline::Cublas,
            ..Default::default()
        },
    )
}

fn drv<T>(r: Result<T, cudarc::driver::DriverError>, what: &str) -> Result<T, GpuError> {
    r.ctx(|| what.to_string())
}

/// An output buffer of `m × hidden` values, poisoned (so a value not written shows).
fn poisoned_y(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    m: usize,
) -> Result<CudaSlice<u16>, GpuError> {
    drv(
        stream.clone_htod(&vec![POISON; m * stack.hidden()]),
        "poisoning y",
    )
}

/// Runs one forward into a poisoned `y` and returns it.
pub fn run(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    plan: &StackPlan,
    x: &CudaSlice<u16>,
) -> Result<Vec<u16>, GpuError> {
    let mut y = poisoned_y(stream, stack, plan.m)?;
    stack.forward(stream, x, &mut y, plan)?;
    drv(stream.synchronize(), "running the MLP stack")?;
    drv(stream.clone_dtoh(&y), "downloading y")
}

/// Captures one forward into a CUDA graph, replays it twice into a poisoned `y` (the second
/// replay over the first's output) and returns `y`.
pub fn run_graph(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    plan: &StackPlan,
    x: &CudaSlice<u16>,
) -> Result<Vec<u16>, GpuError> {
    let y = poisoned_y(stream, stack, plan.m)?;
    let (xp, yp) = (x.device_ptr(stream).0, y.device_ptr(stream).0);
    drv(stream.synchronize(), "before capture")?;
    drv(
        stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED),
        "beginning the capture",
    )?;
    // SAFETY: x and y hold m × hidden values and outlive the graph's replays below (synced).
    let captured = unsafe { stack.forward_raw(stream, xp, yp, plan) };
    let graph = drv(
        stream.end_capture(CUgraphInstantiate_flags(0)),
        "ending the capture",
    )?;
    captured?;
    let graph = graph.ok_or_else(|| GpuError::Mlp {
        layer: "stack".into(),
        reason: "the capture produced no graph".into(),
    })?;
    drv(stream.synchronize(), "instantiating the graph")?;
    for _ in 0..2 {
        drv(graph.launch(), "replaying the graph")?;
    }
    drv(stream.synchronize(), "running the graph")?;
    drv(stream.clone_dtoh(&y), "downloading y")
}

/// The activation kernels on every bf16 input (plus a tail of 5 values for the scalar path)
/// against their CPU reference, bit for bit; returns the failures.
pub fn check_activations(h: &Harness) -> Result<Vec<String>, GpuError> {
    let a: Vec<u16> = (0..=u16::MAX).chain(0x3f00..0x3f05).collect();
    let b: Vec<u16> = a.iter().map(|&x| x.rotate_left(5) & 0xbfff).collect();
    let mut failures = Vec::new();
    for op in ActOp::ALL {
        let want = activation::reference(op, &a, &b);
        let kernel = h.dev.kernels.get_entry(act_entry(op)?)?;
        let ad = drv(h.stream.clone_htod(&a), "uploading a")?;
        let bd = drv(h.stream.clone_htod(&b), "uploading b")?;
        let out = drv(h.stream.clone_htod(&vec![POISON; a.len()]), "poisoning out")?;
        let args = ActArgs {
            a: ad.device_ptr(&h.stream).0,
            b: if op.gated() {
                bd.device_ptr(&h.stream).0
            } else {
                0
            },
            out: out.device_ptr(&h.stream).0,
            n: a.len() as u64,
        };
        // SAFETY: all three buffers hold a.len() values and live past the sync below.
        unsafe { launch::act(&h.stream, &kernel, &args)? };
        drv(h.stream.synchronize(), "running the activation")?;
        let got = drv(h.stream.clone_dtoh(&out), "downloading out")?;
        if let Some(d) = first_diff(&got, &want) {
            failures.push(format!("act_{}: {d}", op.as_str()));
        }
    }
    Ok(failures)
}

/// Runs layer `l` of `stack` alone on `x` into a poisoned output (a hard layer decoded into slot
/// 0 first, on the natural grid) and returns it.
pub fn run_layer(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    plan: &StackPlan,
    l: usize,
    x: &CudaSlice<u16>,
) -> Result<Vec<u16>, GpuError> {
    let y = poisoned_y(stream, stack, plan.m)?;
    let (xp, yp) = (x.device_ptr(stream).0, y.device_ptr(stream).0);
    if stack.kinds()[l] == LayerKind::Hard {
        // SAFETY: nothing else runs on this stack; slot 0 is free (the last forward synced).
        unsafe { stack.decode_layer_raw(stream, l, plan, 0)? };
    }
    // SAFETY: x and y hold m × hidden values and outlive the sync below; slot 0 holds the
    // layer's decode when it is hard (enqueued just before on the same stream).
    unsafe { stack.layer_raw(stream, l, xp, yp, plan)? };
    drv(stream.synchronize(), "running one layer")?;
    drv(stream.clone_dtoh(&y), "downloading y")
}

/// One layer's input (uploaded) and output, as [`chain`] runs it.
pub type LayerRun = (CudaSlice<u16>, Vec<u16>);

/// `stack` run layer by layer on `x` ([`run_layer`], each on the previous one's output): each
/// layer's input (uploaded) and output.
pub fn chain(
    h: &Harness,
    stack: &MlpStack,
    plan: &StackPlan,
    x: &[u16],
) -> Result<Vec<LayerRun>, GpuError> {
    let mut input = x.to_vec();
    let mut chain = Vec::with_capacity(stack.layers().len());
    for l in 0..stack.layers().len() {
        let xd = drv(h.stream.clone_htod(&input), "uploading a layer's input")?;
        let y = run_layer(&h.stream, stack, plan, l, &xd)?;
        input = y.clone();
        chain.push((xd, y));
    }
    Ok(chain)
}

/// The tolerance failures of `stack`'s forward `y` (run as `own`, layer by layer) against the
/// cuBLAS stack (`reference`, run as `cublas` layer by layer): each layer given the cuBLAS layer's
/// input, the stack over its first [`checked_depth`] layers, nothing non-finite at full depth;
/// the errors per layer and per depth are printed.
#[allow(clippy::too_many_arguments)]
pub fn cublas_failures(
    h: &Harness,
    stack: &MlpStack,
    plan: &StackPlan,
    own: &[LayerRun],
    cublas: &[LayerRun],
    y: &[u16],
    reference: &[u16],
    act: ActOp,
    case: &str,
) -> Result<Vec<String>, GpuError> {
    let mut failures = Vec::new();
    let mut per_layer = Vec::with_capacity(cublas.len());
    for (l, (input, want)) in cublas.iter().enumerate() {
        let got = run_layer(&h.stream, stack, plan, l, input)?;
        per_layer.push(format!("{:.1e}", rel_frobenius(&got, want).0));
        let what = format!("{case} layer {l} (the cuBLAS layer's input)");
        failures.extend(tolerance_failure(&what, &got, want));
    }
    let by_depth: Vec<String> = own
        .iter()
        .zip(cublas)
        .map(|(o, c)| format!("{:.1e}", rel_frobenius(&o.1, &c.1).0))
        .collect();
    println!(
        "  {case}: rel err vs cuBLAS: per layer [{}], stack after each layer [{}]",
        per_layer.join(", "),
        by_depth.join(", ")
    );
    // The whole stack's criterion over the layers where a bare chain does not amplify rounding
    // past meaning (stack_error::checked_depth); nothing non-finite at any depth.
    let depth = checked_depth(act, cublas.len());
    let what = format!("{case} stack of its first {depth} layers");
    failures.extend(tolerance_failure(
        &what,
        &own[depth - 1].1,
        &cublas[depth - 1].1,
    ));
    if rel_frobenius(y, reference).1 {
        failures.push(format!(
            "{case}: non-finite where the cuBLAS stack is finite"
        ));
    }
    Ok(failures)
}

/// Builds `case` with `kinds` from its Huffman encoding and checks, at each batch in `ms`:
/// the overlapped and the one-stream forward each bit-identical to the raw twin and to the
/// same layers run one by one (the forward's chaining, which the twin shares); against
/// cuBLAS ([`tolerance_failure`]: relative Frobenius error ≤ [`TOLERANCE`](crate::gpu::harness::check::TOLERANCE),
/// nothing non-finite where cuBLAS is finite) each layer given the same input as the cuBLAS
/// layer (the kernels' error, unamplified) and the stack over its first
/// [`checked_depth`] layers (why: [`stack_error`](crate::gpu::harness::stack_error)), nothing
/// non-finite at full depth; and (with `graph`) a captured, replayed
/// forward equal to the eager one. Returns the load report and the failures.
#[allow(clippy::too_many_arguments)]
pub fn check_stack(
    h: &Harness,
    rng: &mut Rng,
    case: &StackCase,
    tensors: Vec<LayerTensors>,
    raw: &MlpStack,
    kinds: &[LayerKind],
    ms: &[usize],
    graph: bool,
) -> Result<(LoadReport, Vec<String>), GpuError> {
    let max_m = raw.max_m();
    let (stack, report) = build_stack(
        &h.dev,
        case.act,
        tensors,
        &Residencies::Explicit(kinds.to_vec()),
        max_m,
    )?;
    let mut failures = Vec::new();
    let case_act = case.act;
    let tag = format!("{} [{}]", case.name, kinds_text(kinds));
    println!(
        "{tag}: loaded in {:.2}s (transcode {:.3}s for {} matrices), resident {} MB",
        report.total_s,
        report.transcode_s,
        report.transcoded,
        stack.resident_bytes() / 1_000_000
    );
    for &m in ms {
        let x = synth::activations(rng, m, stack.hidden());
        let xd = drv(h.stream.clone_htod(&x), "uploading x")?;
        let reference = run(&h.stream, raw, &cublas_plan(raw, m)?, &xd)?;
        let cublas = chain(h, raw, &cublas_plan(raw, m)?, &x)?;
        for overlap in [true, false] {
            let plan = stack.plan(
                m,
                &PlanOptions {
                    overlap,
                    ..Default::default()
                },
            )?;
            let y = run(&h.stream, &stack, &plan, &xd)?;
            let twin = run(&h.stream, raw, &raw.plan_twin(&plan)?, &xd)?;
            let case = format!(
                "{tag} m={m} overlap={overlap} (decode SMs {})",
                plan.decode_sms
            );
            if let Some(d) = first_diff(&y, &twin) {
                failures.push(format!("{case}: differs from the raw twin: {d}"));
            }
            // The forward's chaining and scheduling against the layers run one by one.
            let own = chain(h, &stack, &plan, &x)?;
            let last = &own.last().expect("a stack has layers").1;
            if let Some(d) = first_diff(&y, last) {
                failures.push(format!(
                    "{case}: differs from its layers run one by one: {d}"
                ));
            }
            failures.extend(cublas_failures(
                h, &stack, &plan, &own, &cublas, &y, &reference, case_act, &case,
            )?);
            if graph && overlap {
                let g = run_graph(&h.stream, &stack, &plan, &xd)?;
                if let Some(d) = first_diff(&g, &y) {
                    failures.push(format!("{case}: graph replay differs from eager: {d}"));
                }
            }
        }
    }
    Ok((report, failures))
}
