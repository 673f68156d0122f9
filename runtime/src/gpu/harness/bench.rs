//! `unweight bench`: every pipeline's best variant beside cuBLAS BF16 on Llama-3.1-8B and -70B
//! MLP shapes, plus GPU Huffman decode on a chosen number of CTAs. CUDA events around every
//! iteration, warm-up, median of `iters`, weights rotating over copies so L2 never holds the next
//! call's weights. Every row carries the bytes it must move and its floor: those bytes over the
//! device-to-device copy bandwidth measured at the start of the same run ([`traffic`]).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{CudaSlice, CudaStream};
use unweight_codegen::variant::{
    ASource, HuffOutput, HuffRefill, HuffVariant, RegistryEntry, Variant,
};

use crate::codec::{self, Encoding, Orientation};
use crate::gpu::device::GpuDevice;
use crate::gpu::harness::synth::{self, Bulk, Rng, WeightSpec};
use crate::gpu::harness::traffic::{self, Footprint};
use crate::gpu::harness::{probe, targets};
use crate::gpu::jit::registry;
use crate::gpu::layout::{BlockLayout, Residency};
use crate::gpu::linear::Linear;
use crate::gpu::mlp::stack::decode_blocks_of;
use crate::gpu::plan::{self, ctas_for, ExecPipeline, Plan, Spread};
use crate::gpu::weights::{DeviceWeights, Resident};

/// Llama-3.1-8B's MLP projections: gate/up, down, and down encoded transposed.
pub const LLAMA_8B_SHAPES: [(usize, usize, Orientation); 3] = [
    (14336, 4096, Orientation::Standard),
    (4096, 14336, Orientation::Standard),
    (4096, 14336, Orientation::Transposed),
];

/// Llama-3.1-70B's MLP projections, the same three ways.
pub const LLAMA_70B_SHAPES: [(usize, usize, Orientation); 3] = [
    (28672, 8192, Orientation::Standard),
    (8192, 28672, Orientation::Standard),
    (8192, 28672, Orientation::Transposed),
];

/// Decode-time batches up to the compute-bound range (issue 8's targets name each of them).
pub const BATCHES: [usize; 9] = [1, 4, 16, 64, 128, 256, 512, 1024, 2048];

/// CTA counts of the decode rows: 0 (all: the kernel's natural grid), then about a half, a quarter
/// and an eighth of an H200's 132 SMs, the shares the MLP scheduler may leave to decode.
pub const DECODE_CTAS: [u32; 4] = [0, 66, 33, 16];

/// Weight sets rotate over at least this many times the L2's bytes, so no call finds the
/// previous use of its weights in L2; a weight several times larger than L2 needs only two sets
/// (which bounds the device and host memory of the 70B shapes).
const ROTATION_L2S: usize = 6;

/// Options of `unweight bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub device: usize,
    /// Where `<date>-<gpu>[-<tag>].json` and `.md` go.
    pub out_dir: PathBuf,
    /// Appended to the file names, so the parts of a split run keep their own files.
    pub tag: Option<String>,
    /// `(n_out, k, orientation)` of each weight.
    pub shapes: Vec<(usize, usize, Orientation)>,
    pub batch: Vec<usize>,
    /// SM shares of the Huffman decode rows (0: all, the natural grid; S: the blocks that fill S
    /// SMs).
    pub decode_ctas: Vec<u32>,
    /// Timed iterations per measurement (median reported); at least 50.
    pub iters: usize,
    pub warmup: usize,
    /// Iterations per candidate while searching variants.
    pub search_iters: usize,
    /// Copies of each weight, rotated per iteration; at least 3 (fewer for weights much larger
    /// than L2, see [`rotation_sets`]).
    pub weight_sets: usize,
    /// Batch tiles tried around the default (1 = default only, 3 = one smaller and one larger).
    pub tile_candidates: usize,
    /// Deepest ring depths tried per tile.
    pub stage_candidates: usize,
    /// Fraction of escaped groups in the synthetic weights.
    pub escape_groups: f64,
    /// The synthetic weights' bulk exponent histogram.
    pub bulk: Bulk,
    /// Recorded in the JSON as the command that produced it.
    pub command: String,
    pub seed: u64,
    /// A tuning table: also time `Linear::plan_auto` against each residency's default plan.
    pub table: Option<PathBuf>,
    /// Size every rmm plan's CTA count with this spread instead of the plan's own (same-run
    /// comparisons of schedules: one CTA per tile against persistent CTAs).
    pub spread: Option<Spread>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            device: 0,
            out_dir: PathBuf::from("bench/results"),
            tag: None,
            shapes: LLAMA_8B_SHAPES
                .iter()
                .chain(&LLAMA_70B_SHAPES)
                .copied()
                .collect(),
            batch: BATCHES.to_vec(),
            decode_ctas: DECODE_CTAS.to_vec(),
            iters: 50,
            warmup: 10,
            search_iters: 15,
            weight_sets: 3,
            tile_candidates: 3,
            stage_candidates: 3,
            escape_groups: 0.002,
            bulk: Bulk::Trained,
            command: "unweight bench".to_string(),
            seed: 0x5eed,
            table: None,
            spread: None,
        }
    }
}

/// One measured matmul row. The fields up to `cublas_us` are those of the first H100/H200 files
/// (older tools read them); the rest default to 0 when such a file is read back.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub shape: String,
    pub orientation: String,
    pub m: usize,
    /// `cublas` for the reference row itself.
    pub pipeline: String,
    pub variant: String,
    /// CTAs of the rmm launch (stream-K; 1 for cuBLAS-only plans).
    pub ctas: u32,
    pub us: f64,
    pub cublas_us: f64,
    /// Bytes the call must read (the weight in its resident form, `x`, a preprocess output read
    /// back) and write (`y`, a preprocess output): [`traffic::matmul`].
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub written_bytes: u64,
    /// (read + written) / time, TB/s.
    #[serde(default)]
    pub tb_s: f64,
    /// (read + written) / the run's copy bandwidth, µs.
    #[serde(default)]
    pub floor_us: f64,
}

/// `plan_auto` (tuned) beside the fixed default plan of one residency.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

/// Huffman decode of one kernel on one weight, on `ctas` blocks.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DecodeRow {
    pub shape: String,
    pub orientation: String,
    pub kernel: String,
    pub us: f64,
    /// Elements decoded per second / 1e9.
    pub gelem_per_s: f64,
    /// Every resident byte of the Huffman weight per second / 1e9 (as in the first files; the
    /// bytes this kernel really reads are `read_bytes`).
    pub gb_per_s_in: f64,
    /// CTAs asked for (`all` or a count) and launched (at most the natural grid).
    #[serde(default = "all_ctas")]
    pub share: String,
    #[serde(default)]
    pub ctas: u32,
    /// Bytes read and written ([`traffic::decode`]).
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub written_bytes: u64,
    #[serde(default)]
    pub tb_s: f64,
    #[serde(default)]
    pub floor_us: f64,
}

fn all_ctas() -> String {
    "all".to_string()
}

/// The copy bandwidth a row's floor divides by, and how it was measured.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CopyBandwidth {
    pub tb_s: f64,
    /// Bytes of the source buffer (the destination is another buffer of the same size).
    pub buffer_bytes: u64,
    /// Bytes counted per copy: read + written, 2 × `buffer_bytes`.
    pub counted_bytes: u64,
    /// Median µs of one copy.
    pub us: f64,
    pub warmup: usize,
    pub iters: usize,
    pub method: String,
}

/// One benchmarked weight: how many copies rotated, and its bytes in each residency.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShapeInfo {
    pub shape: String,
    pub orientation: String,
    pub weight_sets: usize,
    pub raw_bytes: u64,
    pub palette_bytes: u64,
    pub huffman_bytes: u64,
}

/// What `unweight bench` measured and writes as JSON and Markdown.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub device: String,
    pub date: String,
    pub command: String,
    /// Device-to-device copy bandwidth of this run, TB/s of read + written bytes (0 in files
    /// older than the field); `copy` says how it was measured.
    #[serde(default)]
    pub copy_tb_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyBandwidth>,
    #[serde(default)]
    pub sm_count: u32,
    #[serde(default)]
    pub l2_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<ShapeInfo>,
    pub rows: Vec<Row>,
    pub decode: Vec<DecodeRow>,
    /// Present with `--table`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto: Vec<AutoRow>,
    /// Seconds from start to this report.
    #[serde(default)]
    pub wall_s: f64,
    /// The synthetic weights: bulk histogram (absent in files before 2026-12-02 s7, which used
    /// `flat`) and share of escaped groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<Bulk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape_groups: Option<f64>,
    /// Per-CTA timelines of the rmm rows (a diagnostic build, `UNWEIGHT_PROBE=1`; [`probe`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<probe::ProbeRow>,
}

/// Weight copies to rotate for a weight of `bf16_bytes`: enough to cover `ROTATION_L2S` (6) × L2,
/// at least 2, at most `max_sets`.
pub fn rotation_sets(bf16_bytes: usize, l2_bytes: usize, max_sets: usize) -> usize {
    (ROTATION_L2S * l2_bytes)
        .div_ceil(bf16_bytes.max(1))
        .clamp(2, max_sets.max(2))
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
/// RS rows: name, pipeline, CTAs per SM of the variants searched (the RS pairs get rows of
/// their own, so one run shows both occupancies).
const RS_ROWS: [(&str, ExecPipeline, u32); 4] = [
    ("direct_palette_rs", ExecPipeline::DirectPalette, 1),
    ("direct_palette_rs2", ExecPipeline::DirectPalette, 2),
    ("raw_rs", ExecPipeline::Raw, 1),
    ("raw_rs2", ExecPipeline::Raw, 2),
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
    /// The weights the SS rows time: palette in tiled layout.
    fn for_pipeline(&self, p: ExecPipeline) -> &[Linear] {
        match p.residency() {
            Residency::Palette => &self.palette,
            r => self.for_residency(r),
        }
    }

    /// The weights as `DeviceWeights`' default upload makes them resident (palette in fragment
    /// layout where the rmm takes the shape): what the tuner and `plan_auto` rows time.
    pub(crate) fn for_residency(&self, r: Residency) -> &[Linear] {
        match r {
            Residency::Huffman => &self.huffman,
            Residency::Palette if !self.palette_rs.is_empty() => &self.palette_rs,
            Residency::Palette => &self.palette,
            Residency::Raw => &self.raw,
        }
    }

    /// The footprint of each residency (every set of a shape has the same sizes, within the
    /// escapes of its random weights: the first set's stands for all).
    fn footprints(&self) -> Footprints {
        Footprints {
            raw: Footprint::of_device(self.raw[0].weights()),
            palette: Footprint::of_device(self.palette[0].weights()),
            huffman: Footprint::of_device(self.huffman[0].weights()),
        }
    }
}

/// [`Footprint`] of one shape in each residency.
struct Footprints {
    raw: Footprint,
    palette: Footprint,
    huffman: Footprint,
}

impl Footprints {
    fn of(&self, p: ExecPipeline) -> &Footprint {
        match p.residency() {
            Residency::Raw => &self.raw,
            Residency::Palette => &self.palette,
            Residency::Huffman => &self.huffman,
        }
    }
}

/// Runs the benchmark with `opts` and writes `<date>-<gpu>[-<tag>].json` and `.md` to
/// `opts.out_dir` (after every shape, so a run cut short keeps the shapes it finished).
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
    let l2_bytes = dev
        .ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        .context("reading the L2 size")? as usize;
    println!(
        "device: {} ({} SMs, sm_{}{}, {} MB L2)",
        dev.info.name,
        dev.info.sm_count,
        dev.info.major,
        dev.info.minor,
        l2_bytes / 1_000_000
    );
    let stream = dev
        .ctx
        .new_stream()
        .context("creating the benchmark stream")?;
    let copy = measure_copy(&stream, l2_bytes, dev.info.total_mem)?;
    println!("copy bandwidth: {:.3} TB/s ({})", copy.tb_s, copy.method);
    let mut rng = Rng::new(opts.seed);
    let mut report = Report {
        device: dev.info.name.clone(),
        date: today(),
        command: opts.command.clone(),
        copy_tb_s: copy.tb_s,
        copy: Some(copy),
        sm_count: dev.info.sm_count,
        l2_bytes: l2_bytes as u64,
        shapes: Vec::new(),
        rows: Vec::new(),
        decode: Vec::new(),
        auto: Vec::new(),
        wall_s: 0.0,
        bulk: Some(opts.bulk),
        escape_groups: Some(opts.escape_groups),
        probes: Vec::new(),
    };
    let copy_tb_s = report.copy_tb_s;
    let table = match &opts.table {
        Some(p) => Some(crate::gpu::tuner::Table::load(
            p,
            &crate::gpu::tuner::current_stamp(&dev)?,
        )?),
        None => None,
    };
    let at = || started.elapsed().as_secs_f64();

    for &(n_out, k, orientation) in &opts.shapes {
        let shape = format!("{n_out}x{k}");
        let sets = rotation_sets(n_out * k * 2, l2_bytes, opts.weight_sets);
        let t0 = Instant::now();
        let set = build_set(
            &dev,
            &mut rng,
            n_out,
            k,
            orientation,
            &BenchOptions {
                weight_sets: sets,
                ..opts.clone()
            },
        )?;
        let fp = set.footprints();
        println!(
            "[{:>4.0}s] {shape} {orientation}: {sets} weight sets ready in {:.1}s",
            at(),
            t0.elapsed().as_secs_f64()
        );
        report.shapes.push(ShapeInfo {
            shape: shape.clone(),
            orientation: orientation.to_string(),
            weight_sets: sets,
            raw_bytes: fp.raw.total(),
            palette_bytes: fp.palette.total(),
            huffman_bytes: fp.huffman.total(),
        });
        precompile(&dev, &opts, orientation == Orientation::Transposed)?;

        report.decode.extend(bench_decode(
            &stream,
            &set,
            &fp.huffman,
            &shape,
            orientation,
            copy_tb_s,
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
            let row = |p: ExecPipeline, variant: String, ctas: u32, us: f64| {
                // The residency's own geometry: a Huffman one pads its rows to whole groups.
                let g = set.for_pipeline(p)[0].weights().geometry;
                let t = traffic::matmul(p, fp.of(p), &g, m);
                Row {
                    shape: shape.clone(),
                    orientation: orientation.to_string(),
                    m,
                    pipeline: p.as_str().to_string(),
                    variant,
                    ctas,
                    us,
                    cublas_us: cublas,
                    read_bytes: t.read,
                    written_bytes: t.written,
                    tb_s: traffic::tb_s(t.total(), us),
                    floor_us: traffic::floor_us(t.total(), copy_tb_s),
                }
            };
            report
                .rows
                .push(row(ExecPipeline::Cublas, "cublas".into(), 1, cublas));
            for p in PIPELINES {
                let (plan_name, ctas, us) =
                    best(&stream, &set, p, m, orientation, &x, &mut y, &opts)?;
                let r = row(p, plan_name, ctas, us);
                println!(
                    "[{:>4.0}s] {shape} {orientation} m={m:<5} {:<18} {:<26} {ctas:>4} CTAs {us:>9.1} us  {:.2}x cuBLAS {cublas:.1} us  {:.2} TB/s  {:.2}x floor",
                    at(),
                    p.as_str(),
                    r.variant,
                    us / cublas,
                    r.tb_s,
                    us / r.floor_us
                );
                push_probe(&dev, &stream, &mut report, &r)?;
                report.rows.push(r);
            }
            for (row_name, p, per_sm) in RS_ROWS {
                let lins = match p {
                    ExecPipeline::DirectPalette => &set.palette_rs,
                    _ => &set.raw,
                };
                if lins.is_empty() {
                    continue; // the rmm does not take this shape
                }
                // The pairs are small-batch kernels (tiles up to 16 fit their registers).
                if per_sm > 1 && m > 64 {
                    continue;
                }
                let (plan_name, ctas, us) = best_of(
                    &stream,
                    lins,
                    p,
                    (ASource::Regs, per_sm),
                    m,
                    orientation,
                    &x,
                    &mut y,
                    &opts,
                )?;
                // Same bytes as the tiled form (a permutation within each block).
                let mut r = row(p, plan_name, ctas, us);
                r.pipeline = row_name.to_string();
                println!(
                    "[{:>4.0}s] {shape} {orientation} m={m:<5} {row_name:<18} {:<26} {ctas:>4} CTAs {us:>9.1} us  {:.2}x cuBLAS {cublas:.1} us  {:.2} TB/s  {:.2}x floor",
                    at(),
                    r.variant,
                    us / cublas,
                    r.tb_s,
                    us / r.floor_us
                );
                push_probe(&dev, &stream, &mut report, &r)?;
                report.rows.push(r);
            }
            if let Some(t) = &table {
                for r in [Residency::Huffman, Residency::Palette, Residency::Raw] {
                    let row = bench_auto(&stream, &set, t, r, m, &x, &mut y, &opts)?;
                    println!(
                        "  {shape} {orientation} m={m:<5} {r:<8} auto {:<40} {:>9.1} us  default {:.1} us",
                        row.auto, row.auto_us, row.default_us
                    );
                    report.auto.push(AutoRow {
                        shape: shape.clone(),
                        orientation: orientation.to_string(),
                        ..row
                    });
                }
            }
        }
        // Written after every shape: a run stopped by its step's time limit keeps what it measured.
        report.wall_s = at();
        write_report(&report, &opts)?;
    }

    report.wall_s = at();
    let (json, md) = write_report(&report, &opts)?;
    println!(
        "\nwrote {} and {} in {:.0}s\n",
        json.display(),
        md.display(),
        report.wall_s
    );
    println!("{}", markdown(&report));
    Ok(())
}

/// `<date>-<gpu>[-<tag>]` in `opts.out_dir`.
pub fn file_stem(r: &Report, tag: Option<&str>) -> String {
    match tag {
        Some(t) if !t.is_empty() => format!("{}-{}-{}", r.date, slug(&r.device), slug(t)),
        _ => format!("{}-{}", r.date, slug(&r.device)),
    }
}

/// With the probe built in ([`probe::enabled`]): `r`'s rmm timeline from its last timed launch,
/// printed as one line and kept in the report.
fn push_probe(
    dev: &GpuDevice,
    stream: &Arc<CudaStream>,
    report: &mut Report,
    r: &Row,
) -> anyhow::Result<()> {
    if !probe::enabled() {
        return Ok(());
    }
    if let Some(probe::Timeline { ns, sm, summary }) = probe::read(dev, stream, &r.variant, r.ctas)?
    {
        println!(
            "  probe {} {} m={} {} (µs median/max from the first entry): {}",
            r.shape,
            r.orientation,
            r.m,
            r.variant,
            probe::summary_line(&summary)
        );
        report.probes.push(probe::ProbeRow {
            shape: r.shape.clone(),
            orientation: r.orientation.clone(),
            m: r.m,
            pipeline: r.pipeline.clone(),
            variant: r.variant.clone(),
            ctas: r.ctas,
            summary,
            ns,
            sm,
        });
    }
    Ok(())
}

/// Writes the JSON and the markdown of `r`; returns their paths.
fn write_report(r: &Report, opts: &BenchOptions) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let stem = opts.out_dir.join(file_stem(r, opts.tag.as_deref()));
    let json = stem.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(r)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let md = stem.with_extension("md");
    std::fs::write(&md, markdown(r)).with_context(|| format!("writing {}", md.display()))?;
    Ok((json, md))
}

/// Warm-up and timed copies of [`measure_copy`].
const COPY_WARMUP: usize = 5;
const COPY_ITERS: usize = 50;

/// Device-to-device copy bandwidth: `cuMemcpyDtoDAsync` between two buffers of at least 16× L2
/// (512 MiB or more, at most an eighth of the memory), CUDA events around each copy, the median;
/// counting read + written bytes, as a kernel's floor counts them.
fn measure_copy(
    stream: &Arc<CudaStream>,
    l2_bytes: usize,
    total_mem: usize,
) -> anyhow::Result<CopyBandwidth> {
    let bytes = (16 * l2_bytes).max(512 << 20).min(total_mem / 8);
    let src = stream
        .alloc_zeros::<u8>(bytes)
        .context("allocating the copy benchmark's source")?;
    let mut dst = stream
        .alloc_zeros::<u8>(bytes)
        .context("allocating the copy benchmark's destination")?;
    let us = time(stream, COPY_WARMUP, COPY_ITERS, |_| {
        stream.memcpy_dtod(&src, &mut dst)?;
        Ok(())
    })?;
    let counted = 2 * bytes as u64;
    Ok(CopyBandwidth {
        tb_s: traffic::tb_s(counted, us),
        buffer_bytes: bytes as u64,
        counted_bytes: counted,
        us,
        warmup: COPY_WARMUP,
        iters: COPY_ITERS,
        method: format!(
            "cuMemcpyDtoDAsync of {} MiB into another buffer of {} MiB, CUDA events around each copy, \
             {COPY_WARMUP} warm-up, median of {COPY_ITERS}; bytes = read + written",
            bytes >> 20,
            bytes >> 20
        ),
    })
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
    let spec = WeightSpec {
        escape_groups: opts.escape_groups,
        specials: false,
        bulk: opts.bulk,
    };
    for s in 0..opts.weight_sets {
        let name = format!("bench {n_out}x{k} {o} #{s}");
        let w = synth::weights(rng, n_out, k, spec);
        let t = codec::compress(&w, &[n_out, k], o, Encoding::Huffman)?;
        set.raw.push(Linear::new(DeviceWeights::raw_twin(
            dev, &name, &w, n_out, k, o,
        )?)?);
        set.palette.push(Linear::new(DeviceWeights::palette_with(
            dev,
            &name,
            &t,
            BlockLayout::Tiled,
        )?)?);
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
    candidates_of(pipeline, transpose, (ASource::Smem, 1), m, tiles, stages)
}

/// [`candidates`] among the variants of one A-operand form and CTAs per SM.
pub fn candidates_of(
    pipeline: ExecPipeline,
    transpose: bool,
    (a_src, per_sm): (ASource, u32),
    m: usize,
    tiles: usize,
    stages: usize,
) -> Vec<&'static RegistryEntry> {
    let Some(fam) = pipeline.rmm() else {
        return Vec::new();
    };
    let all: Vec<_> = plan::rmm_candidates_of(registry::VARIANTS, fam, transpose, a_src)
        .into_iter()
        .filter(|(_, v)| v.ctas_per_sm == per_sm)
        .collect();
    if all.is_empty() {
        return Vec::new();
    }
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
        for (_, p, per_sm) in RS_ROWS {
            entries.extend(candidates_of(
                p,
                transpose,
                (ASource::Regs, per_sm),
                m,
                opts.tile_candidates,
                opts.stage_candidates,
            ));
        }
    }
    for out in HuffOutput::ALL {
        for refill in HuffRefill::ALL {
            entries.push(plan::huff_variant_entry(out, refill)?);
        }
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
        (ASource::Smem, 1),
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
    form: (ASource, u32),
    m: usize,
    o: Orientation,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    opts: &BenchOptions,
) -> anyhow::Result<(String, u32, f64)> {
    let cands = candidates_of(
        p,
        o == Orientation::Transposed,
        form,
        m,
        opts.tile_candidates,
        opts.stage_candidates,
    );
    let spread = |l: &Linear, plan: Result<Plan, crate::gpu::GpuError>| {
        plan.map(|plan| respread(l, plan, opts.spread))
    };
    if cands.is_empty() {
        let plan = spread(&lins[0], lins[0].plan(p, m))?;
        let us = time_plans(
            stream,
            lins,
            |l| spread(l, l.plan(p, m)),
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
            |l| spread(l, l.plan_with(p, m, e)),
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
        |l| spread(l, l.plan_with(p, m, winner)),
        x,
        y,
        opts.warmup,
        opts.iters,
    )?;
    let plan = spread(&lins[0], lins[0].plan_with(p, m, winner))?;
    Ok((plan.variant_name(), plan.ctas, us))
}

/// `plan` with its rmm's CTA count sized by `spread` (unchanged for `None` or without an rmm).
fn respread(l: &Linear, mut plan: Plan, spread: Option<Spread>) -> Plan {
    if let (Some(spread), Some(e)) = (spread, plan.rmm) {
        let sm_count = l.weights().device().info.sm_count;
        plan.ctas = ctas_for(e, l.n_out(), l.k(), plan.m, sm_count, spread);
    }
    plan
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
pub(crate) fn time(
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

/// Decode rows: every Huffman output on each of `opts.decode_ctas` SM shares, in the layout
/// the pipelines use (tiled for exponent / palette when the rmm takes the shape).
#[allow(clippy::too_many_arguments)]
fn bench_decode(
    stream: &Arc<CudaStream>,
    set: &ShapeSet,
    fp: &Footprint,
    shape: &str,
    o: Orientation,
    copy_tb_s: f64,
    opts: &BenchOptions,
) -> anyhow::Result<Vec<DecodeRow>> {
    let lin = &set.huffman;
    let w = lin[0].weights();
    let g = w.geometry;
    let Resident::Huffman(_) = &w.resident else {
        anyhow::bail!("{}: the decode rows need a Huffman-resident weight", w.name);
    };
    let mut out = stream.alloc_zeros::<u8>(lin[0].decode_bytes(HuffOutput::Bf16))?;
    let mut rows = Vec::new();
    // Every refill variant at the natural grid; the runtime's default also on each share of the SMs.
    let runs = HuffOutput::ALL.into_iter().flat_map(|output| {
        HuffRefill::ALL.into_iter().flat_map(move |refill| {
            let shares: Vec<u32> = if refill == HuffRefill::DEFAULT {
                opts.decode_ctas.clone()
            } else {
                vec![0]
            };
            shares.into_iter().map(move |asked| (output, refill, asked))
        })
    });
    for (output, refill, asked) in runs {
        let kernel = format!("huff_{}_{}", output.as_str(), refill.as_str());
        // A share of S SMs launches as many blocks as fill S SMs, as the MLP scheduler does.
        let blocks = match asked {
            0 => 0,
            sms => decode_blocks_of(&HuffVariant { output, refill }, sms),
        };
        let ctas = lin[0].decode_ctas(HuffVariant { output, refill }, blocks)?;
        let us = time(stream, opts.warmup, opts.iters, |i| {
            // The layout the pipelines use: tiled for exponent / palette when the rmm takes the shape.
            lin[i % lin.len()].decode_into_refill(
                stream,
                output,
                refill,
                g.rmm_ok(),
                blocks,
                &mut out,
            )?;
            Ok(())
        })?;
        for l in lin {
            l.weights().take_decode_error(stream)?;
        }
        let elems = (g.rows * g.cols) as f64;
        let t = traffic::decode(fp, &g, output);
        let row = DecodeRow {
            shape: shape.to_string(),
            orientation: o.to_string(),
            kernel,
            us,
            gelem_per_s: elems / us / 1e3,
            gb_per_s_in: w.resident_bytes() as f64 / us / 1e3,
            share: share_label(asked),
            ctas,
            read_bytes: t.read,
            written_bytes: t.written,
            tb_s: traffic::tb_s(t.total(), us),
            floor_us: traffic::floor_us(t.total(), copy_tb_s),
        };
        println!(
            "  decode {shape} {o} {:<19} S={:<4} {ctas:>5} CTAs {us:>9.1} us  {:.1} Gelem/s  {:.2} TB/s  {:.2}x floor ({:.1} us)",
            row.kernel,
            row.share,
            row.gelem_per_s,
            row.tb_s,
            us / row.floor_us,
            row.floor_us
        );
        rows.push(row);
    }
    Ok(rows)
}

/// `all` for 0 (the natural grid), else the count.
fn share_label(ctas: u32) -> String {
    if ctas == 0 {
        all_ctas()
    } else {
        ctas.to_string()
    }
}

/// `a / b` to two places, or `-` where a file predates the field (`b` = 0).
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_string()
    }
}

/// MB (10⁶ bytes) to one place, `-` for 0.
fn mb(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_string()
    } else {
        format!("{:.1}", bytes as f64 / 1e6)
    }
}

/// TB/s to two places, `-` for 0.
fn tbs(v: f64) -> String {
    if v > 0.0 {
        format!("{v:.2}")
    } else {
        "-".to_string()
    }
}

/// The markdown table printed last and written beside the JSON.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# unweight bench — {} — {}\n", r.device, r.date);
    let _ = writeln!(s, "`{}`\n", r.command);
    match &r.copy {
        Some(c) => {
            let _ = writeln!(
                s,
                "Copy bandwidth in this run: **{:.3} TB/s** ({}).\n",
                c.tb_s, c.method
            );
        }
        None if r.copy_tb_s > 0.0 => {
            let _ = writeln!(
                s,
                "Copy bandwidth in this run: **{:.3} TB/s**.\n",
                r.copy_tb_s
            );
        }
        None => {}
    }
    if let Some(bulk) = r.bulk {
        let _ = writeln!(
            s,
            "Synthetic weights: `{}` bulk exponent histogram ({}), {:.2}% of 64-element groups \
             escaped.\n",
            bulk.name(),
            bulk.summary(),
            100.0 * r.escape_groups.unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        s,
        "t/cuBLAS = time / cuBLAS's time in the same run (lower is better). MB = bytes the call \
         must read and write (weight as resident, x, y, preprocess output written and read back). \
         TB/s = MB / time. t/floor = time / (MB / copy bandwidth).\n"
    );
    let checks = targets::markdown(&targets::checks(r));
    if !checks.is_empty() {
        let _ = writeln!(
            s,
            "Done-when ratios of issues 8 and 9 (worst row of each criterion):\n\n{checks}"
        );
    }
    let _ = writeln!(
        s,
        "| shape | orientation | m | pipeline | variant | CTAs | µs | cuBLAS µs | t/cuBLAS | MB | TB/s | t/floor |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            row.shape,
            row.orientation,
            row.m,
            row.pipeline,
            row.variant,
            row.ctas,
            row.us,
            row.cublas_us,
            ratio(row.us, row.cublas_us),
            mb(row.read_bytes + row.written_bytes),
            tbs(row.tb_s),
            ratio(row.us, row.floor_us)
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
            "\n| decode shape | orientation | kernel | S | CTAs | µs | Gelem/s | MB read | MB written | TB/s | floor µs | t/floor |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for d in &r.decode {
            let floor = if d.floor_us > 0.0 {
                format!("{:.1}", d.floor_us)
            } else {
                "-".to_string()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
                d.shape,
                d.orientation,
                d.kernel,
                d.share,
                d.ctas,
                d.us,
                d.gelem_per_s,
                mb(d.read_bytes),
                mb(d.written_bytes),
                tbs(d.tb_s),
                floor,
                ratio(d.us, d.floor_us)
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

    fn row(pipeline: &str, m: usize, us: f64, cublas_us: f64) -> Row {
        Row {
            shape: "14336x4096".into(),
            orientation: "standard".into(),
            m,
            pipeline: pipeline.into(),
            variant: "rmm_palette_n8_s6_nt".into(),
            ctas: 132,
            us,
            cublas_us,
            read_bytes: 88_900_000,
            written_bytes: 28_672,
            tb_s: traffic::tb_s(88_928_672, us),
            floor_us: traffic::floor_us(88_928_672, 4.0),
        }
    }

    fn report(rows: Vec<Row>, decode: Vec<DecodeRow>) -> Report {
        Report {
            device: "GPU".into(),
            date: "2026-11-22".into(),
            command: "unweight bench".into(),
            copy_tb_s: 4.0,
            copy: Some(CopyBandwidth {
                tb_s: 4.0,
                buffer_bytes: 1 << 30,
                counted_bytes: 2 << 30,
                us: 536.9,
                warmup: 5,
                iters: 50,
                method: "memcpy".into(),
            }),
            sm_count: 132,
            l2_bytes: 50 << 20,
            shapes: vec![],
            rows,
            decode,
            auto: vec![],
            wall_s: 1.0,
            bulk: Some(Bulk::Trained),
            escape_groups: Some(0.002),
            probes: vec![],
        }
    }

    fn decode_row(kernel: &str, share: &str, us: f64, floor_us: f64) -> DecodeRow {
        DecodeRow {
            shape: "14336x4096".into(),
            orientation: "standard".into(),
            kernel: kernel.into(),
            us,
            gelem_per_s: 422.7,
            gb_per_s_in: 627.0,
            share: share.into(),
            ctas: 448,
            read_bytes: 19_400_000,
            written_bytes: 29_400_000,
            tb_s: traffic::tb_s(48_800_000, us),
            floor_us,
        }
    }

    #[test]
    fn markdown_has_one_line_per_row_with_bytes_and_floor() {
        let mut r = report(
            vec![row("direct_palette", 1, 50.0, 60.0)],
            vec![decode_row("huff_palette_vec4", "66", 200.0, 12.2)],
        );
        r.auto.push(AutoRow {
            shape: "14336x4096".into(),
            orientation: "standard".into(),
            m: 16,
            residency: "palette".into(),
            auto: "default".into(),
            auto_us: 51.0,
            default_us: 50.0,
        });
        let md = markdown(&r);
        assert!(
            md.contains("| 14336x4096 | standard | 16 | palette | default | 51.0 | 50.0 | 1.020 |"),
            "{md}"
        );
        // 88.93 MB in 50 µs = 1.78 TB/s; floor 88.93 MB / 4 TB/s = 22.2 µs, so 2.25× the floor.
        assert!(
            md.contains(
                "| 14336x4096 | standard | 1 | direct_palette | rmm_palette_n8_s6_nt | 132 | 50.0 | 60.0 | 0.83 | 88.9 | 1.78 | 2.25 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 14336x4096 | standard | huff_palette_vec4 | 66 | 448 | 200.0 | 422.7 | 19.4 | 29.4 | 0.24 | 12.2 | 16.39 |"
            ),
            "{md}"
        );
        assert!(md.contains("**4.000 TB/s** (memcpy)"), "{md}");
        assert!(md.contains("| t/cuBLAS | MB | TB/s | t/floor |"), "{md}");
    }

    #[test]
    fn done_when_ratios_are_in_the_markdown() {
        // The checks read the pipelines' decoder, whichever refill is the default.
        let default_palette = format!("huff_palette_{}", HuffRefill::DEFAULT.as_str());
        let r = report(
            vec![
                row("direct_palette", 1, 24.0, 32.0),
                row("direct_palette", 16, 28.0, 32.0),
                // The RS form is faster at m = 1 and slower at m = 16: each m takes its faster form.
                row("direct_palette_rs", 1, 20.0, 32.0),
                row("direct_palette_rs", 16, 30.0, 32.0),
                row("raw", 1, 33.0, 32.0),
                row("palette_transcode", 1, 60.0, 32.0),
                row("full_decode", 1, 100.0, 32.0),
            ],
            vec![
                decode_row(&default_palette, "all", 30.0, 12.0),
                decode_row(&default_palette, "16", 300.0, 12.0),
                // Not the pipelines' kernel: no check reads it.
                decode_row("huff_palette_vec4", "all", 90.0, 12.0),
            ],
        );
        let c = targets::checks(&r);
        let find = |what: &str| c.iter().find(|c| c.criterion.starts_with(what)).unwrap();
        let dp = find("direct_palette (faster form) t/cuBLAS, m ∈ {1, 4, 16}");
        assert_eq!(
            (dp.worst, dp.at.as_str(), dp.limit),
            (0.875, "m=16 (direct_palette)", 0.80)
        );
        assert!(!dp.met());
        assert!(find("raw").met());
        // Only the S = all row counts against the decode floor: 30 / 12 = 2.5 > 2.0.
        let hp = find(&format!("{default_palette} t/floor"));
        assert_eq!((hp.worst, hp.met()), (2.5, false));
        assert!(find("palette_transcode").worst == 60.0 / 32.0 && !find("palette_transcode").met());
        assert!(find("full_decode").met(), "100 / 32 = 3.1 ≤ 3.5");
        assert!(
            c.iter().all(|c| !c.criterion.contains("m ∈ {64}")),
            "no m = 64 row, no check"
        );
        let md = markdown(&r);
        assert!(
            md.contains("| 8 | 14336x4096 | standard | direct_palette (faster form) t/cuBLAS, m ∈ {1, 4, 16} | 0.88 | m=16 (direct_palette) | 0.80 | **missed** |"),
            "{md}"
        );
        assert!(
            md.contains("| 9 | 14336x4096 | standard | full_decode t/cuBLAS, m = 1 | 3.12 | m=1 | 3.50 | met |"),
            "{md}"
        );
    }

    #[test]
    fn the_70b_shapes_take_their_own_limits() {
        let mut r = report(vec![row("direct_palette", 4, 27.0, 32.0)], vec![]);
        r.rows[0].shape = "28672x8192".into();
        let c = targets::checks(&r);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].limit, 0.85);
        assert!(c[0].met(), "27 / 32 = 0.84");
        r.rows[0].shape = "1024x1024".into();
        assert!(
            targets::checks(&r).is_empty(),
            "no targets for other shapes"
        );
    }

    /// The last committed H200 file, written before the byte and floor fields existed.
    const OLD_JSON: &str =
        include_str!("../../../../bench/results/2026-12-01-nvidia-h200-d5760c5.json");

    #[test]
    fn an_old_report_reads_back_and_keeps_every_field() {
        let old: serde_json::Value = serde_json::from_str(OLD_JSON).unwrap();
        let r: Report = serde_json::from_str(OLD_JSON).unwrap();
        assert_eq!((r.rows.len(), r.decode.len()), (75, 9));
        assert_eq!(r.copy_tb_s, 0.0);
        assert_eq!(r.decode[0].share, "all");
        let new = serde_json::to_value(&r).unwrap();
        /// Every key of `old` is in `new` with the same value (numbers compared as f64).
        fn contains(old: &serde_json::Value, new: &serde_json::Value, at: &str) {
            match (old, new) {
                (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
                    for (k, v) in o {
                        let w = n.get(k).unwrap_or_else(|| panic!("{at}.{k} dropped"));
                        contains(v, w, &format!("{at}.{k}"));
                    }
                }
                (serde_json::Value::Array(o), serde_json::Value::Array(n)) => {
                    assert_eq!(o.len(), n.len(), "{at}");
                    for (i, (v, w)) in o.iter().zip(n).enumerate() {
                        contains(v, w, &format!("{at}[{i}]"));
                    }
                }
                (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                    assert_eq!(a.as_f64(), b.as_f64(), "{at}")
                }
                _ => assert_eq!(old, new, "{at}"),
            }
        }
        contains(&old, &new, "report");
        // And the new fields are written.
        for key in ["read_bytes", "written_bytes", "tb_s", "floor_us"] {
            assert!(new["rows"][0].get(key).is_some(), "{key}");
            assert!(new["decode"][0].get(key).is_some(), "{key}");
        }
        assert!(new.get("copy_tb_s").is_some());
        // Its markdown still renders, with `-` where it has no bytes.
        let md = markdown(&r);
        assert!(
            md.contains("| 14336x4096 | standard | 1 | direct_palette | rmm_palette_n8_s8_nt | 132 | 41.2 | 32.8 | 1.26 | - | - | - |"),
            "{md}"
        );
    }

    #[test]
    fn rotation_covers_l2_and_bounds_the_70b_sets() {
        let l2 = 50 << 20;
        // 14336×4096 bf16 (117 MB): 3 sets cover 6 × 50 MiB; 28672×8192 (470 MB): 2 sets.
        assert_eq!(rotation_sets(14336 * 4096 * 2, l2, 3), 3);
        assert_eq!(rotation_sets(28672 * 8192 * 2, l2, 3), 2);
        assert_eq!(rotation_sets(28672 * 8192 * 2, l2, 8), 2);
        // A small weight takes every set it is allowed.
        assert_eq!(rotation_sets(1 << 20, l2, 5), 5);
    }

    #[test]
    fn split_runs_keep_their_own_files() {
        let r = report(vec![], vec![]);
        assert_eq!(file_stem(&r, None), "2026-11-22-gpu");
        assert_eq!(file_stem(&r, Some("70B")), "2026-11-22-gpu-70b");
    }
}
