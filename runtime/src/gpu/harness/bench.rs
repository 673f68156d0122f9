//! `unweight bench`: every pipeline's best variant beside cuBLAS BF16 on Llama-3.1-8B MLP
//! shapes, plus GPU Huffman decode throughput. CUDA events around every iteration, warm-up,
//! median of `iters`, weights rotating over `weight_sets` copies so L2 never holds the next
//! call's weights.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream};
use unweight_codegen::variant::{ASource, HuffOutput, RegistryEntry, Variant};

use crate::codec::{self, Encoding, Orientation};
use crate::gpu::device::GpuDevice;
use crate::gpu::harness::synth::{self, Rng, WeightSpec};
use crate::gpu::jit::registry;
use crate::gpu::layout::{BlockLayout, Residency};
use crate::gpu::linear::Linear;
use crate::gpu::plan::{self, ExecPipeline, Plan};
use crate::gpu::weights::DeviceWeights;

/// Options of `unweight bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub device: usize,
    /// Where `<date>-<gpu>.json` and `.md` go.
    pub out_dir: PathBuf,
    /// `(n_out, k, orientation)` of each weight.
    pub shapes: Vec<(usize, usize, Orientation)>,
    pub batch: Vec<usize>,
    /// Timed iterations per measurement (median reported); at least 50.
    pub iters: usize,
    pub warmup: usize,
    /// Iterations per candidate while searching variants.
    pub search_iters: usize,
    /// Copies of each weight, rotated per iteration; at least 3.
    pub weight_sets: usize,
    /// Batch tiles tried around the default (1 = default only, 3 = one smaller and one larger).
    pub tile_candidates: usize,
    /// Deepest ring depths tried per tile.
    pub stage_candidates: usize,
    /// Fraction of escaped groups in the synthetic weights.
    pub escape_groups: f64,
    /// Recorded in the JSON as the command that produced it.
    pub command: String,
    pub seed: u64,
    /// A tuning table: also time `Linear::plan_auto` against each residency's default plan.
    pub table: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            device: 0,
            out_dir: PathBuf::from("bench/results"),
            shapes: vec![
                (14336, 4096, Orientation::Standard),
                (4096, 14336, Orientation::Standard),
                (4096, 14336, Orientation::Transposed),
            ],
            batch: vec![1, 16, 64, 256, 1024],
            iters: 50,
            warmup: 10,
            search_iters: 15,
            weight_sets: 3,
            tile_candidates: 3,
            stage_candidates: 3,
            escape_groups: 0.002,
            command: "unweight bench".to_string(),
            seed: 0x5eed,
            table: None,
        }
    }
}

/// One measured row.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub shape: String,
    pub orientation: String,
    pub m: usize,
    pub pipeline: String,
    pub variant: String,
    /// CTAs of the rmm launch (stream-K; 1 for cuBLAS-only plans).
    pub ctas: u32,
    pub us: f64,
    pub cublas_us: f64,
}

/// `plan_auto` (tuned) beside the fixed default plan of one residency.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AutoRow {
    pub shape: String,
    pub orientation: String,
    pub m: usize,
    pub residency: String,
    /// `tuned m=<bucket>: <pipeline> <variant>` or `default`.
    pub auto: String,
    pub auto_us: f64,
    pub default_us: f64,
}

/// Huffman decode throughput of one kernel on one weight.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DecodeRow {
    pub shape: String,
    pub orientation: String,
    pub kernel: String,
    pub us: f64,
    /// Elements decoded per second / 1e9.
    pub gelem_per_s: f64,
    /// Compressed bytes read per second / 1e9.
    pub gb_per_s_in: f64,
}

/// What `unweight bench` measured and writes as JSON and Markdown.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub device: String,
    pub date: String,
    pub command: String,
    pub rows: Vec<Row>,
    pub decode: Vec<DecodeRow>,
    /// Present with `--table`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auto: Vec<AutoRow>,
}

/// The benchmarked pipelines, in table order.
const PIPELINES: [ExecPipeline; 5] = [
    ExecPipeline::FullDecode,
    ExecPipeline::Exponent,
    ExecPipeline::PaletteTranscode,
    ExecPipeline::DirectPalette,
    ExecPipeline::Raw,
];

/// The RS-form rows benchmarked after [`PIPELINES`] (the same pipelines through the register-A
/// rmm, on weights uploaded in fragment layout): (row name, pipeline).
const RS_ROWS: [(&str, ExecPipeline); 2] = [
    ("direct_palette_rs", ExecPipeline::DirectPalette),
    ("raw_rs", ExecPipeline::Raw),
];

/// The weights of one shape: `sets` copies in each residency (raw ones also hold fragment
/// blocks when the rmm takes the shape), plus palette copies in fragment layout.
pub(crate) struct ShapeSet {
    raw: Vec<Linear>,
    huffman: Vec<Linear>,
    palette: Vec<Linear>,
    palette_rs: Vec<Linear>,
}

impl ShapeSet {
    fn for_pipeline(&self, p: ExecPipeline) -> &[Linear] {
        self.for_residency(p.residency())
    }

    pub(crate) fn for_residency(&self, r: Residency) -> &[Linear] {
        match r {
            Residency::Huffman => &self.huffman,
            Residency::Palette => &self.palette,
            Residency::Raw => &self.raw,
        }
    }
}

/// Runs the benchmark with `opts` and writes `<date>-<gpu>.json` and `.md` to `opts.out_dir`.
pub fn run(opts: BenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.iters >= 50,
        "--iters must be at least 50 (got {})",
        opts.iters
    );
    anyhow::ensure!(
        opts.weight_sets >= 3,
        "at least 3 rotating weight sets are needed (got {})",
        opts.weight_sets
    );
    let started = Instant::now();
    let dev = GpuDevice::new(opts.device)?;
    println!(
        "device: {} ({} SMs, sm_{}{})",
        dev.info.name, dev.info.sm_count, dev.info.major, dev.info.minor
    );
    let stream = dev
        .ctx
        .new_stream()
        .context("creating the benchmark stream")?;
    let mut rng = Rng::new(opts.seed);
    let mut rows = Vec::new();
    let mut decode = Vec::new();
    let mut auto = Vec::new();
    let table = match &opts.table {
        Some(p) => Some(crate::gpu::tuner::Table::load(
            p,
            &crate::gpu::tuner::current_stamp(&dev)?,
        )?),
        None => None,
    };

    for &(n_out, k, orientation) in &opts.shapes {
        let shape = format!("{n_out}x{k}");
        let t0 = Instant::now();
        let set = build_set(&dev, &mut rng, n_out, k, orientation, &opts)?;
        println!(
            "{shape} {orientation}: weights ready in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        precompile(&dev, &opts, orientation == Orientation::Transposed)?;

        decode.extend(bench_decode(
            &dev,
            &stream,
            &set,
            &shape,
            orientation,
            &opts,
        )?);
        let max_m = *opts.batch.iter().max().unwrap_or(&1);
        let x = stream.clone_htod(&synth::activations(&mut rng, max_m, k))?;
        let mut y = stream.alloc_zeros::<u16>(max_m * n_out)?;
        for &m in &opts.batch {
            let cublas = time_plans(
                &stream,
                &set.raw,
                |l| l.plan(ExecPipeline::Cublas, m),
                &x,
                &mut y,
                opts.warmup,
                opts.iters,
            )?;
            for p in PIPELINES {
                let (plan_name, ctas, us) =
                    best(&stream, &set, p, m, orientation, &x, &mut y, &opts)?;
                println!(
                    "  {shape} {orientation} m={m:<5} {:<18} {:<26} {ctas:>4} CTAs {us:>9.1} us  (cuBLAS {cublas:.1} us)",
                    p.as_str(),
                    plan_name
                );
                rows.push(Row {
                    shape: shape.clone(),
                    orientation: orientation.to_string(),
                    m,
                    pipeline: p.as_str().to_string(),
                    variant: plan_name,
                    ctas,
                    us,
                    cublas_us: cublas,
                });
            }
            for (row_name, p) in RS_ROWS {
                let lins = match p {
                    ExecPipeline::DirectPalette => &set.palette_rs,
                    _ => &set.raw,
                };
                if lins.is_empty() {
                    continue; // the rmm does not take this shape
                }
                let (plan_name, ctas, us) = best_of(
                    &stream,
                    lins,
                    p,
                    ASource::Regs,
                    m,
                    orientation,
                    &x,
                    &mut y,
                    &opts,
                )?;
                println!(
                    "  {shape} {orientation} m={m:<5} {row_name:<18} {plan_name:<26} {ctas:>4} CTAs {us:>9.1} us  (cuBLAS {cublas:.1} us)"
                );
                rows.push(Row {
                    shape: shape.clone(),
                    orientation: orientation.to_string(),
                    m,
                    pipeline: row_name.to_string(),
                    variant: plan_name,
                    ctas,
                    us,
                    cublas_us: cublas,
                });
            }
            if let Some(t) = &table {
                for r in [Residency::Huffman, Residency::Palette, Residency::Raw] {
                    let row = bench_auto(&stream, &set, t, r, m, &x, &mut y, &opts)?;
                    println!(
                        "  {shape} {orientation} m={m:<5} {r:<8} auto {:<40} {:>9.1} us  default {:.1} us",
                        row.auto, row.auto_us, row.default_us
                    );
                    auto.push(AutoRow {
                        shape: shape.clone(),
                        orientation: orientation.to_string(),
                        ..row
                    });
                }
            }
        }
    }

    let report = Report {
        device: dev.info.name.clone(),
        date: today(),
        command: opts.command.clone(),
        rows,
        decode,
        auto,
    };
    let table = markdown(&report);
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let stem = opts
        .out_dir
        .join(format!("{}-{}", report.date, slug(&report.device)));
    let json = stem.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let md = stem.with_extension("md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    println!(
        "\nwrote {} and {} in {:.0}s\n",
        json.display(),
        md.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{table}");
    Ok(())
}

pub(crate) fn build_set(
    dev: &Arc<GpuDevice>,
    rng: &mut Rng,
    n_out: usize,
    k: usize,
    o: Orientation,
    opts: &BenchOptions,
) -> anyhow::Result<ShapeSet> {
    let mut set = ShapeSet {
        raw: Vec::new(),
        huffman: Vec::new(),
        palette: Vec::new(),
        palette_rs: Vec::new(),
    };
    let rmm_ok = crate::gpu::layout::Geometry::raw(n_out, k, o).rmm_ok();
    let raw_layout = if rmm_ok {
        BlockLayout::Fragments
    } else {
        BlockLayout::Tiled
    };
    let spec = WeightSpec {
        escape_groups: opts.escape_groups,
        specials: false,
    };
    for s in 0..opts.weight_sets {
        let name = format!("bench {n_out}x{k} {o} #{s}");
        let w = synth::weights(rng, n_out, k, spec);
        let t = codec::compress(&w, &[n_out, k], o, Encoding::Huffman)?;
        set.raw.push(Linear::new(DeviceWeights::raw_with(
            dev, &name, &w, n_out, k, o, raw_layout,
        )?)?);
        set.palette
            .push(Linear::new(DeviceWeights::palette(dev, &name, &t)?)?);
        if rmm_ok {
            let frag = DeviceWeights::palette_with(dev, &name, &t, BlockLayout::Fragments)?;
            set.palette_rs.push(Linear::new(frag)?);
        }
        set.huffman
            .push(Linear::new(DeviceWeights::huffman(dev, &name, &t)?)?);
    }
    Ok(set)
}

/// The rmm variants tried for `pipeline` at batch `m`: tiles around the default, deepest rings.
pub fn candidates(
    pipeline: ExecPipeline,
    transpose: bool,
    m: usize,
    tiles: usize,
    stages: usize,
) -> Vec<&'static RegistryEntry> {
    candidates_of(pipeline, transpose, ASource::Smem, m, tiles, stages)
}

/// [`candidates`] among the variants of one A-operand form.
pub fn candidates_of(
    pipeline: ExecPipeline,
    transpose: bool,
    a_src: ASource,
    m: usize,
    tiles: usize,
    stages: usize,
) -> Vec<&'static RegistryEntry> {
    let Some(fam) = pipeline.rmm() else {
        return Vec::new();
    };
    let all = plan::rmm_candidates_of(registry::VARIANTS, fam, transpose, a_src);
    let Some(def) = plan::default_variant_of(registry::VARIANTS, fam, transpose, a_src, m) else {
        return Vec::new();
    };
    let Variant::Rmm(dv) = def.variant else {
        return Vec::new();
    };
    let mut tile_list: Vec<u32> = all.iter().map(|(_, v)| v.tile_n).collect();
    tile_list.sort();
    tile_list.dedup();
    let at = tile_list.iter().position(|&t| t == dv.tile_n).unwrap_or(0);
    let lo = at.saturating_sub(tiles / 2);
    let picked: Vec<u32> = tile_list
        .iter()
        .copied()
        .skip(lo)
        .take(tiles.max(1))
        .collect();
    let mut out = Vec::new();
    for t in picked {
        let mut same: Vec<_> = all.iter().filter(|(_, v)| v.tile_n == t).collect();
        same.sort_by_key(|(_, v)| std::cmp::Reverse(v.stages));
        out.extend(same.into_iter().take(stages.max(1)).map(|(e, _)| *e));
    }
    out
}

fn precompile(dev: &GpuDevice, opts: &BenchOptions, transpose: bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut entries: Vec<&'static RegistryEntry> = Vec::new();
    for &m in &opts.batch {
        for p in PIPELINES {
            entries.extend(candidates(
                p,
                transpose,
                m,
                opts.tile_candidates,
                opts.stage_candidates,
            ));
        }
        for (_, p) in RS_ROWS {
            entries.extend(candidates_of(
                p,
                transpose,
                ASource::Regs,
                m,
                opts.tile_candidates,
                opts.stage_candidates,
            ));
        }
    }
    for out in HuffOutput::ALL {
        entries.push(plan::huff_entry(out)?);
    }
    entries.sort_by_key(|e| e.name);
    entries.dedup_by_key(|e| e.name);
    dev.kernels.precompile(&entries)?;
    println!(
        "  {} kernels ready in {:.1}s",
        entries.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Best (variant, µs) of `pipeline` at batch `m` over the candidate search.
#[allow(clippy::too_many_arguments)]
fn best(
    stream: &Arc<CudaStream>,
    set: &ShapeSet,
    p: ExecPipeline,
    m: usize,
    o: Orientation,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    opts: &BenchOptions,
) -> anyhow::Result<(String, u32, f64)> {
    best_of(
        stream,
        set.for_pipeline(p),
        p,
        ASource::Smem,
        m,
        o,
        x,
        y,
        opts,
    )
}

/// [`best`] over `lins` among the variants of one A-operand form.
#[allow(clippy::too_many_arguments)]
fn best_of(
    stream: &Arc<CudaStream>,
    lins: &[Linear],
    p: ExecPipeline,
    a_src: ASource,
    m: usize,
    o: Orientation,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    opts: &BenchOptions,
) -> anyhow::Result<(String, u32, f64)> {
    let cands = candidates_of(
        p,
        o == Orientation::Transposed,
        a_src,
        m,
        opts.tile_candidates,
        opts.stage_candidates,
    );
    if cands.is_empty() {
        let plan = lins[0].plan(p, m)?;
        let us = time_plans(
            stream,
            lins,
            |l| l.plan(p, m),
            x,
            y,
            opts.warmup,
            opts.iters,
        )?;
        return Ok((plan.variant_name(), plan.ctas, us));
    }
    let mut scored = Vec::new();
    for e in cands {
        let us = time_plans(
            stream,
            lins,
            |l| l.plan_with(p, m, e),
            x,
            y,
            3,
            opts.search_iters,
        )?;
        scored.push((us, e));
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let winner = scored[0].1;
    let us = time_plans(
        stream,
        lins,
        |l| l.plan_with(p, m, winner),
        x,
        y,
        opts.warmup,
        opts.iters,
    )?;
    let plan = lins[0].plan_with(p, m, winner)?;
    Ok((plan.variant_name(), plan.ctas, us))
}

/// Rounds of alternating timings in [`bench_auto`].
const AUTO_ROUNDS: usize = 5;

/// Median of a few round medians.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `plan_auto` from `table` against the residency's default plan, both timed alike.
#[allow(clippy::too_many_arguments)]
fn bench_auto(
    stream: &Arc<CudaStream>,
    set: &ShapeSet,
    table: &crate::gpu::tuner::Table,
    r: Residency,
    m: usize,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    opts: &BenchOptions,
) -> anyhow::Result<AutoRow> {
    use crate::gpu::tuner::{default_pipeline, Source};
    let lins = set.for_residency(r);
    let (plan, source) = lins[0].plan_auto(table, m)?;
    let auto = match source {
        Source::Tuned { bucket } => format!(
            "tuned m={bucket}: {} {} {} CTAs",
            plan.pipeline,
            plan.variant_name(),
            plan.ctas
        ),
        Source::Default => "default".to_string(),
    };
    // Alternate the two in rounds and take the median of each one's round medians: timed one after
    // the other, the second of two identical plans measured up to 3% apart at m = 1024 on the H200
    // (clock and thermal drift over a run), which would read as a tuning loss.
    let (mut autos, mut defaults) = (Vec::new(), Vec::new());
    for _ in 0..AUTO_ROUNDS {
        autos.push(time_plans(
            stream,
            lins,
            |l| l.plan_auto(table, m).map(|(p, _)| p),
            x,
            y,
            opts.warmup,
            opts.iters,
        )?);
        defaults.push(time_plans(
            stream,
            lins,
            |l| l.plan(default_pipeline(r), m),
            x,
            y,
            opts.warmup,
            opts.iters,
        )?);
    }
    let (auto_us, default_us) = (median(&mut autos), median(&mut defaults));
    Ok(AutoRow {
        shape: String::new(),
        orientation: String::new(),
        m,
        residency: r.to_string(),
        auto,
        auto_us,
        default_us,
    })
}

/// Median µs of one call, rotating over `lins` (one weight set per iteration).
pub fn time_plans(
    stream: &Arc<CudaStream>,
    lins: &[Linear],
    plan: impl Fn(&Linear) -> Result<Plan, crate::gpu::GpuError>,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    warmup: usize,
    iters: usize,
) -> anyhow::Result<f64> {
    let plans: Vec<Plan> = lins.iter().map(&plan).collect::<Result<_, _>>()?;
    time(stream, warmup, iters, |i| {
        let j = i % lins.len();
        lins[j].forward(stream, x, y, &plans[j])?;
        Ok(())
    })
}

/// Median of per-iteration event timings, in µs.
fn time(
    stream: &Arc<CudaStream>,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    for i in 0..warmup {
        f(i)?;
    }
    let ctx = stream.context();
    let mut pairs = Vec::with_capacity(iters);
    for i in 0..iters {
        let a = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        let b = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        a.record(stream)?;
        f(warmup + i)?;
        b.record(stream)?;
        pairs.push((a, b));
    }
    stream.synchronize()?;
    let mut us: Vec<f64> = pairs
        .iter()
        .map(|(a, b)| a.elapsed_ms(b).map(|ms| ms as f64 * 1e3))
        .collect::<Result<_, _>>()?;
    us.sort_by(f64::total_cmp);
    Ok(us[us.len() / 2])
}

fn bench_decode(
    dev: &Arc<GpuDevice>,
    stream: &Arc<CudaStream>,
    set: &ShapeSet,
    shape: &str,
    o: Orientation,
    opts: &BenchOptions,
) -> anyhow::Result<Vec<DecodeRow>> {
    let lin = &set.huffman;
    let g = lin[0].weights().geometry;
    let mut out = stream.alloc_zeros::<u8>(lin[0].decode_bytes(HuffOutput::Bf16))?;
    let mut rows = Vec::new();
    for output in HuffOutput::ALL {
        let us = time(stream, opts.warmup, opts.iters, |i| {
            // The layout the pipelines use: tiled for exponent / palette when the rmm takes the shape.
            lin[i % lin.len()].decode_into(stream, output, g.rmm_ok(), &mut out)?;
            Ok(())
        })?;
        let elems = (g.rows * g.cols) as f64;
        let bytes_in = lin[0].weights().resident_bytes() as f64;
        rows.push(DecodeRow {
            shape: shape.to_string(),
            orientation: o.to_string(),
            kernel: format!("huff_{}", output.as_str()),
            us,
            gelem_per_s: elems / us / 1e3,
            gb_per_s_in: bytes_in / us / 1e3,
        });
        println!(
            "  decode {shape} {o} huff_{:<9} {us:>9.1} us  {:.1} Gelem/s",
            output.as_str(),
            elems / us / 1e3
        );
    }
    let _ = dev;
    Ok(rows)
}

/// The markdown table printed last and written beside the JSON.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# unweight bench — {} — {}\n", r.device, r.date);
    let _ = writeln!(s, "`{}`\n", r.command);
    let _ = writeln!(
        s,
        "| shape | orientation | m | pipeline | variant | CTAs | µs | cuBLAS µs | vs cuBLAS |"
    );
    let _ = writeln!(s, "|---|---|---:|---|---|---:|---:|---:|---:|");
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2}x |",
            row.shape,
            row.orientation,
            row.m,
            row.pipeline,
            row.variant,
            row.ctas,
            row.us,
            row.cublas_us,
            row.cublas_us / row.us
        );
    }
    if !r.auto.is_empty() {
        let _ = writeln!(
            s,
            "\n| shape | orientation | m | residency | plan_auto | auto µs | default µs | auto/default |"
        );
        let _ = writeln!(s, "|---|---|---:|---|---|---:|---:|---:|");
        for a in &r.auto {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} |",
                a.shape,
                a.orientation,
                a.m,
                a.residency,
                a.auto,
                a.auto_us,
                a.default_us,
                a.auto_us / a.default_us
            );
        }
    }
    if !r.decode.is_empty() {
        let _ = writeln!(
            s,
            "\n| decode shape | orientation | kernel | µs | Gelem/s | GB/s read |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|");
        for d in &r.decode {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.0} |",
                d.shape, d.orientation, d.kernel, d.us, d.gelem_per_s, d.gb_per_s_in
            );
        }
    }
    s
}

/// `"NVIDIA H100 80GB HBM3"` → `"nvidia-h100-80gb-hbm3"`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86400)
        .unwrap_or(0);
    civil_date(days as i64)
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (Howard Hinnant's civil_from_days).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_slugs() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_414), "2025-11-22");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(slug("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3");
    }

    #[test]
    fn markdown_has_one_line_per_row() {
        let r = Report {
            device: "GPU".into(),
            date: "2026-11-22".into(),
            command: "unweight bench".into(),
            rows: vec![Row {
                shape: "14336x4096".into(),
                orientation: "standard".into(),
                m: 1,
                pipeline: "direct_palette".into(),
                variant: "rmm_palette_n8_s6_nt".into(),
                ctas: 1,
                us: 50.0,
                cublas_us: 60.0,
            }],
            decode: vec![],
            auto: vec![AutoRow {
                shape: "14336x4096".into(),
                orientation: "standard".into(),
                m: 16,
                residency: "palette".into(),
                auto: "default".into(),
                auto_us: 51.0,
                default_us: 50.0,
            }],
        };
        let md = markdown(&r);
        assert!(
            md.contains("| 14336x4096 | standard | 16 | palette | default | 51.0 | 50.0 | 1.020 |"),
            "{md}"
        );
        assert!(md.contains("| 14336x4096 | standard | 1 | direct_palette | rmm_palette_n8_s6_nt | 1 | 50.0 | 60.0 | 1.20x |"), "{md}");
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in ["device", "date", "command", "rows"] {
            assert!(json.get(key).is_some());
        }
        for key in ["shape", "m", "pipeline", "variant", "us", "cublas_us"] {
            assert!(json["rows"][0].get(key).is_some(), "{key}");
        }
    }
}
