//! The GPU half of `unweight demo`: the demo layer's projections palette-resident, the fused
//! direct-palette matmul checked bit for bit against the raw-BF16 rmm of the same tiling and to
//! tolerance against cuBLAS, then timed beside cuBLAS BF16 in the same run.
//!
//! A machine without a CUDA driver, without a device, or whose GPU is not Hopper is not an
//! error: [`open`] says why the GPU part is skipped and [`run`] returns `Ok(None)`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cudarc::driver::CudaContext;
use unweight_codegen::abi::{BK, BM};
use unweight_codegen::variant::RegistryEntry;

use crate::codec::{self, Encoding, Orientation};
use crate::demo::{DemoLayer, DemoTensor};
use crate::gpu::device::{self, GpuDevice};
use crate::gpu::error::{driver_text, GpuError};
use crate::gpu::harness::bench::time_plans;
use crate::gpu::harness::check::{first_diff, raw_twin, twin_plan, Harness, TOLERANCE};
use crate::gpu::harness::synth::{self, Rng};
use crate::gpu::layout::Geometry;
use crate::gpu::linear::Linear;
use crate::gpu::plan::{default_variant, ExecPipeline};
use crate::gpu::weights::DeviceWeights;

/// How the GPU part measures.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Batch sizes M of `y = x·Wᵀ`.
    pub ms: Vec<usize>,
    pub warmup: usize,
    /// Timed calls per measurement; the median is reported.
    pub iters: usize,
    /// Seed of the activations x (fresh per run by default, printed for replay).
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            ms: vec![1, 16],
            warmup: 10,
            iters: 50,
            seed: Rng::fresh_seed(),
        }
    }
}

/// One projection, orientation and batch size.
#[derive(Clone, Debug)]
pub struct Row {
    /// `gate_proj`, `up_proj`, `down_proj`.
    pub projection: String,
    /// The weight is `n_out × k` (`[out_features, in_features]`).
    pub n_out: usize,
    pub k: usize,
    /// How the compressed matrix is stored.
    pub orientation: Orientation,
    pub m: usize,
    /// The direct-palette rmm variant and its CTA count.
    pub variant: String,
    pub ctas: u32,
    /// Median µs of one call.
    pub palette_us: f64,
    pub cublas_us: f64,
    /// Bytes a call reads for the weight: palette-resident vs BF16.
    pub palette_bytes: usize,
    pub bf16_bytes: usize,
    /// Relative Frobenius error of the fused result against cuBLAS.
    pub rel_err: f64,
    /// Whether the fused result equals the raw-BF16 rmm of the same tiling bit for bit.
    pub bit_exact: bool,
}

/// What the GPU part of the demo measured and checked.
#[derive(Clone, Debug)]
pub struct Report {
    pub device: String,
    pub seed: u64,
    pub warmup: usize,
    pub iters: usize,
    pub rows: Vec<Row>,
    /// Checks that failed (empty = every fused result bit-exact and within tolerance).
    pub failures: Vec<String>,
    /// Projections the fused kernels cannot take (shape not a multiple of 128 × 64), with why.
    pub skipped: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// Every measured row bit-exact and within tolerance, and at least one row measured.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && !self.rows.is_empty() && self.rows.iter().all(|r| r.bit_exact)
    }
}

/// GPU 0 when it can run the fused kernels; `Ok(Err(reason))` when the GPU part must be
/// skipped (no driver, no device, not compute capability 9.0); `Err` for a real failure.
pub fn open() -> anyhow::Result<Result<Arc<GpuDevice>, String>> {
    if !device::driver_present() {
        return Ok(Err("no CUDA driver (libcuda) on this machine".into()));
    }
    match CudaContext::device_count() {
        Err(e) => {
            return Ok(Err(format!(
                "the CUDA driver reports no usable device: {}",
                driver_text(&e)
            )))
        }
        Ok(0) => return Ok(Err("no CUDA device".into())),
        Ok(_) => {}
    }
    match GpuDevice::new(0) {
        Ok(dev) if (dev.info.major, dev.info.minor) == (9, 0) => Ok(Ok(dev)),
        Ok(dev) => Ok(Err(not_hopper(
            &dev.info.name,
            dev.info.major,
            dev.info.minor,
        ))),
        Err(GpuError::NotHopper {
            device,
            major,
            minor,
        }) => Ok(Err(not_hopper(&device, major, minor))),
        Err(e) => Err(e).context("opening GPU 0"),
    }
}

fn not_hopper(device: &str, major: i32, minor: i32) -> String {
    format!("{device} is compute capability {major}.{minor}; the fused kernels need 9.0 (Hopper)")
}

/// The demo's GPU part on GPU 0 with the default options, or `None` when it must be skipped.
pub fn run(layer: &DemoLayer) -> anyhow::Result<Option<Report>> {
    match open()? {
        Ok(dev) => run_on(&dev, layer, &DemoOptions::default()).map(Some),
        Err(_) => Ok(None),
    }
}

/// The orientations measured per tensor: down_proj both ways (the transposed layout is what
/// a fused MLP wants for it), the others standard.
fn orientations(t: &DemoTensor) -> Vec<Orientation> {
    if t.name.contains("down_proj") {
        vec![Orientation::Standard, Orientation::Transposed]
    } else {
        vec![Orientation::Standard]
    }
}

/// `mlp.gate_proj.weight` → `gate_proj`.
fn projection(name: &str) -> String {
    name.trim_end_matches(".weight")
        .rsplit('.')
        .next()
        .unwrap_or(name)
        .to_string()
}

/// The GPU part on `dev`: checks and timings for every projection, orientation and batch size.
pub fn run_on(
    dev: &Arc<GpuDevice>,
    layer: &DemoLayer,
    opts: &DemoOptions,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.iters > 0 && !opts.ms.is_empty(),
        "the GPU demo needs at least one batch size and one timed call"
    );
    let started = Instant::now();
    let stream = dev.ctx.new_stream().context("creating the demo stream")?;
    let h = Harness {
        dev: dev.clone(),
        stream: stream.clone(),
    };
    println!(
        "GPU: {} ({} SMs, sm_{}{})",
        dev.info.name, dev.info.sm_count, dev.info.major, dev.info.minor
    );
    precompile(dev, &opts.ms)?;

    let mut rng = Rng::new(opts.seed);
    let mut report = Report {
        device: dev.info.name.clone(),
        seed: opts.seed,
        warmup: opts.warmup,
        iters: opts.iters,
        rows: Vec::new(),
        failures: Vec::new(),
        skipped: Vec::new(),
        seconds: 0.0,
    };
    for t in &layer.tensors {
        let [n_out, k] = t.shape;
        for o in orientations(t) {
            if !Geometry::raw(n_out, k, o).rmm_ok() {
                report.skipped.push(format!(
                    "{} {n_out}×{k} {o}: the fused kernels need n_out % {BM} == 0 and k % {BK} == 0",
                    t.name
                ));
                continue;
            }
            measure(&h, t, o, opts, &mut rng, &mut report)?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Compiles the direct-palette variants the default plans pick and their raw twins, in
/// parallel, so no measurement waits on NVRTC (the disk cache makes later runs instant).
fn precompile(dev: &GpuDevice, ms: &[usize]) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut entries: Vec<&'static RegistryEntry> = Vec::new();
    for transpose in [false, true] {
        for &m in ms {
            if let Some(e) = default_variant(ExecPipeline::DirectPalette, transpose, m)? {
                entries.push(e);
                entries.extend(raw_twin(e));
            }
        }
    }
    entries.sort_by_key(|e| e.name);
    entries.dedup_by_key(|e| e.name);
    dev.kernels.precompile(&entries)?;
    println!(
        "{} kernels ready in {:.1} s",
        entries.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One tensor in one orientation: upload palette-resident and raw, then per batch size check
/// and time.
fn measure(
    h: &Harness,
    t: &DemoTensor,
    o: Orientation,
    opts: &DemoOptions,
    rng: &mut Rng,
    report: &mut Report,
) -> anyhow::Result<()> {
    let [n_out, k] = t.shape;
    let label = format!("{} ({o})", t.name);
    let ct = codec::compress(&t.bits, &t.shape, o, Encoding::Palette)
        .with_context(|| format!("compressing {label}"))?;
    let pal = Linear::new(DeviceWeights::palette(&h.dev, &label, &ct)?)?;
    // The default palette upload is in fragment layout: its raw twin is the raw RS rmm.
    let raw = Linear::new(DeviceWeights::raw_twin(
        &h.dev, &label, &t.bits, n_out, k, o,
    )?)?;
    for &m in &opts.ms {
        let case = format!("{label} m={m}");
        let x = synth::activations(rng, m, k);
        let plan = pal.plan(ExecPipeline::DirectPalette, m)?;
        let y = h.run(&pal, &plan, &x)?;
        let Some(tp) = twin_plan(&raw, &plan)? else {
            anyhow::bail!(
                "{case}: the registry has no raw rmm variant with the tiling of {}",
                plan.variant_name()
            );
        };
        let bit_exact = match first_diff(&y, &h.run(&raw, &tp, &x)?) {
            None => true,
            Some(d) => {
                report.failures.push(format!(
                    "{case}: {} not bit-identical to {}: {d}",
                    plan.variant_name(),
                    tp.variant_name()
                ));
                false
            }
        };
        let y_cublas = h.run(&raw, &raw.plan(ExecPipeline::Cublas, m)?, &x)?;
        let (rel_err, non_finite) = synth::rel_frobenius(&y, &y_cublas);
        if non_finite || rel_err.is_nan() || rel_err > TOLERANCE {
            report.failures.push(format!(
                "{case}: relative Frobenius error {rel_err:.3e} vs cuBLAS (limit {TOLERANCE:e}), non-finite where cuBLAS is finite: {non_finite}"
            ));
        }

        // One weight copy: at Llama shapes it is larger than the H100's 50 MB L2 either way.
        let xd = h.stream.clone_htod(&x).context("uploading x")?;
        let mut yd = h
            .stream
            .alloc_zeros::<u16>(m * n_out)
            .context("allocating y")?;
        let palette_us = time_plans(
            &h.stream,
            std::slice::from_ref(&pal),
            |l| l.plan(ExecPipeline::DirectPalette, m),
            &xd,
            &mut yd,
            opts.warmup,
            opts.iters,
        )?;
        let cublas_us = time_plans(
            &h.stream,
            std::slice::from_ref(&raw),
            |l| l.plan(ExecPipeline::Cublas, m),
            &xd,
            &mut yd,
            opts.warmup,
            opts.iters,
        )?;
        report.rows.push(Row {
            projection: projection(&t.name),
            n_out,
            k,
            orientation: o,
            m,
            variant: plan.variant_name(),
            ctas: plan.ctas,
            palette_us,
            cublas_us,
            palette_bytes: pal.weights().resident_bytes(),
            bf16_bytes: raw.weights().resident_bytes(),
            rel_err,
            bit_exact,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_and_orientations() {
        let layer = DemoLayer::build(1, 128, 256);
        let names: Vec<String> = layer.tensors.iter().map(|t| projection(&t.name)).collect();
        assert_eq!(names, ["gate_proj", "up_proj", "down_proj"]);
        let counts: Vec<usize> = layer
            .tensors
            .iter()
            .map(|t| orientations(t).len())
            .collect();
        assert_eq!(counts, [1, 1, 2]);
    }

    #[test]
    fn passed_needs_rows_and_no_failures() {
        let row = Row {
            projection: "up_proj".into(),
            n_out: 256,
            k: 128,
            orientation: Orientation::Standard,
            m: 1,
            variant: "rmm_palette_n8_s6_nt".into(),
            ctas: 1,
            palette_us: 5.0,
            cublas_us: 6.0,
            palette_bytes: 100,
            bf16_bytes: 200,
            rel_err: 1e-3,
            bit_exact: true,
        };
        let mut r = Report {
            device: "GPU".into(),
            seed: 1,
            warmup: 1,
            iters: 1,
            rows: vec![],
            failures: vec![],
            skipped: vec![],
            seconds: 0.0,
        };
        assert!(!r.passed());
        r.rows.push(row);
        assert!(r.passed());
        r.failures.push("x".into());
        assert!(!r.passed());
    }
}
