//! `unweight bench-mlp`: one forward of a synthetic Llama-3.1-8B MLP stack (32 SwiGLU layers,
//! 4096 → 14336 → 4096) at each batch size, for cuBLAS on BF16, all easy, all hard and budgets
//! between. Each row: time per forward (overlapped), the same stack on one stream (decodes
//! not hidden), the sum of its layers timed alone (matmuls + activation, hard layers' weights
//! pre-decoded) and its decodes alone, the ratio to cuBLAS, resident bytes and the saving
//! against BF16. JSON, markdown and the plot ([`bench_mlp_plot`](crate::gpu::harness::bench_mlp_plot))
//! go to `<out>/<date>-<gpu>-mlp.{json,md,png}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use crate::codec::Encoding;
use crate::gpu::device::GpuDevice;
use crate::gpu::harness::bench::{slug, today};
use crate::gpu::harness::mlp::{compress, cublas_plan, raw_stack, synth_swiglu};
use crate::gpu::harness::synth::{self, Rng};
use crate::gpu::mlp::budget::{self, LayerKind};
use crate::gpu::mlp::load::{build_layers, layer_bytes, Residencies};
use crate::gpu::mlp::stack::{default_decode_sms, kinds_text, MlpStack, PlanOptions, StackPlan};
use crate::gpu::mlp::Mlp;
use crate::gpu::scheduler::compute_stream;
use crate::gpu::tuner::{self, split, Table};

/// What `bench-mlp` runs.
#[derive(Clone, Debug)]
pub struct MlpBenchOptions {
    pub device: usize,
    pub out_dir: PathBuf,
    pub layers: usize,
    /// Layers generated (the rest are copies of them, uploaded separately).
    pub distinct: usize,
    pub hidden: usize,
    pub inter: usize,
    pub ms: Vec<usize>,
    /// Memory budgets strictly between all hard and all easy, evenly spaced.
    pub budgets: usize,
    pub warmup: usize,
    pub iters: usize,
    pub table: Option<PathBuf>,
    pub seed: u64,
    /// SMs left to overlapped decodes, each a row of its own (empty: with a table, the share
    /// measured fastest on each stack, `tuner::split::tune_stack_split`; without, a quarter and
    /// a half of the GPU).
    pub decode_sms: Vec<u32>,
    /// Layers ahead a hard layer's decode is issued.
    pub window: usize,
}

impl Default for MlpBenchOptions {
    fn default() -> Self {
        MlpBenchOptions {
            device: 0,
            out_dir: PathBuf::from("bench/results"),
            layers: 32,
            distinct: 2,
            hidden: 4096,
            inter: 14336,
            ms: vec![1, 16, 64, 256, 1024],
            budgets: 2,
            warmup: 3,
            iters: 10,
            table: None,
            seed: 1,
            decode_sms: Vec::new(),
            window: 1,
        }
    }
}

/// One layout at one batch size.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MlpRow {
    pub m: usize,
    pub layout: String,
    /// `E`/`H` per layer (empty for cuBLAS).
    pub kinds: String,
    pub resident_bytes: usize,
    pub saving_vs_bf16: f64,
    /// One forward, hard layers' decodes overlapped on the second stream.
    pub us: f64,
    /// The same layers on one stream (decodes before their layer, all SMs to each kernel).
    pub us_one_stream: f64,
    /// The layers timed alone and added up (the one-stream plans; hard weights pre-decoded).
    pub sum_layers_us: f64,
    /// The hard layers' decodes timed alone and added up (all SMs).
    pub decode_us: f64,
    /// Share of the decode time the overlap hid: `1 - (us - sum_layers_us) / decode_us`.
    pub hidden_fraction: Option<f64>,
    pub ratio_to_cublas: f64,
    pub decode_sms: u32,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MlpReport {
    pub device: String,
    pub date: String,
    pub command: String,
    pub layers: usize,
    pub shape: String,
    pub bf16_bytes: usize,
    pub rows: Vec<MlpRow>,
}

/// Median µs of `f` over `iters` event-timed runs after `warmup` ([`bench::time`]).
pub(crate) fn time(
    stream: &Arc<CudaStream>,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    crate::gpu::harness::bench::time(stream, warmup, iters, |_| f())
}

struct Bufs {
    x: CudaSlice<u16>,
    y: CudaSlice<u16>,
    tmp: CudaSlice<u16>,
}

/// Times one layout at batch `m`: overlapped, one stream, layers alone, decodes alone.
fn bench_layout(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    m: usize,
    bufs: &Bufs,
    table: Option<&Table>,
    decode_sms: Option<u32>,
    o: &MlpBenchOptions,
) -> anyhow::Result<(f64, f64, f64, f64, u32)> {
    let (xp, yp, tp) = (
        bufs.x.device_ptr(stream).0,
        bufs.y.device_ptr(stream).0,
        bufs.tmp.device_ptr(stream).0,
    );
    let over = stack.plan(
        m,
        &PlanOptions {
            table,
            decode_sms,
            window: o.window,
            ..Default::default()
        },
    )?;
    let serial = stack.plan(
        m,
        &PlanOptions {
            table,
            overlap: false,
            ..Default::default()
        },
    )?;
    fn forward<'a>(
        stream: &'a CudaStream,
        stack: &'a MlpStack,
        p: &'a StackPlan,
        x: u64,
        y: u64,
    ) -> impl FnMut() -> anyhow::Result<()> + 'a {
        // SAFETY: x and y hold max_m × hidden values, live for the whole benchmark.
        move || unsafe { stack.forward_raw(stream, x, y, p) }.map_err(anyhow::Error::from)
    }
    let us = time(
        stream,
        o.warmup,
        o.iters,
        forward(stream, stack, &over, xp, yp),
    )?;
    let us_one = time(
        stream,
        o.warmup,
        o.iters,
        forward(stream, stack, &serial, xp, yp),
    )?;
    let (mut sum, mut dec) = (0.0, 0.0);
    for l in 0..stack.layers().len() {
        if stack.layers()[l].residency() == crate::gpu::layout::Residency::Huffman {
            // SAFETY: nothing else runs on the stack; slot 0 is free between these calls.
            dec += time(stream, 1, o.iters, || {
                unsafe { stack.decode_layer_raw(stream, l, &serial, 0) }
                    .map_err(anyhow::Error::from)
            })?;
        }
        // SAFETY: x and tmp hold max_m × hidden values; slot 0 holds layer l's decode when it
        // is hard (the decode above ran last on the same stream).
        sum += time(stream, 1, o.iters, || {
            unsafe { stack.layer_raw(stream, l, xp, tp, &serial) }.map_err(anyhow::Error::from)
        })?;
    }
    Ok((us, us_one, sum, dec, over.decode_sms))
}

/// Runs the benchmark and writes the results.
pub fn run(o: MlpBenchOptions) -> anyhow::Result<MlpReport> {
    anyhow::ensure!(
        o.iters >= 3 && o.layers >= 1,
        "need at least 3 iterations and 1 layer"
    );
    let t0 = Instant::now();
    let dev = GpuDevice::new(o.device)?;
    let stream = compute_stream(&dev.ctx)?;
    let table = match &o.table {
        Some(p) => Some(Table::load(p, &tuner::current_stamp(&dev)?)?),
        None => None,
    };
    let max_m = o.ms.iter().copied().max().unwrap_or(1);
    println!(
        "bench-mlp on {}: {} SwiGLU layers {}->{}->{} ({} distinct), m = {:?}",
        dev.info.name, o.layers, o.hidden, o.inter, o.hidden, o.distinct, o.ms
    );
    let mut rng = Rng::new(o.seed);
    let case = synth_swiglu(&mut rng, o.layers, o.distinct, o.hidden, o.inter);
    // Compress the distinct layers once; the copies share their tensors (renamed).
    let distinct = o.distinct.clamp(1, o.layers);
    let made = compress(
        &crate::gpu::harness::mlp::StackCase {
            layers: case.layers[..distinct].to_vec(),
            ..case.clone()
        },
        Encoding::Huffman,
    )?;
    let tensors: Vec<_> = (0..o.layers)
        .map(|l| {
            made[l % distinct]
                .iter()
                .zip(&case.layers[l])
                .map(|((_, t), m)| (m.name.clone(), t.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    println!(
        "  weights made and compressed in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let bytes: Vec<_> = tensors.iter().map(layer_bytes).collect();
    let all_easy = vec![LayerKind::Easy; o.layers];
    let all_hard = vec![LayerKind::Hard; o.layers];
    let (easy_b, hard_b) = (
        budget::cost(&bytes, &all_easy).total(),
        budget::cost(&bytes, &all_hard).total(),
    );
    let mut layouts: Vec<(String, Vec<LayerKind>)> = vec![
        ("all easy".into(), all_easy.clone()),
        ("all hard".into(), all_hard.clone()),
    ];
    for i in 1..=o.budgets {
        let b = hard_b + (easy_b.saturating_sub(hard_b)) * i / (o.budgets + 1);
        let p = budget::plan(&bytes, b).map_err(|e| anyhow::anyhow!("{e}"))?;
        layouts.push((format!("budget {:.2} GB", b as f64 / 1e9), p.kinds));
    }
    // Upload every layer once easy and once hard; the mixes share them.
    let load = |kinds: &[LayerKind]| -> anyhow::Result<Vec<Arc<Mlp>>> {
        let t = Instant::now();
        let (l, r) = build_layers(
            &dev,
            case.act,
            tensors.clone(),
            &Residencies::Explicit(kinds.to_vec()),
        )?;
        println!(
            "  {} layers {} in {:.1}s (GPU transcode {:.2}s for {} matrices)",
            l.len(),
            kinds_text(&kinds[..1]),
            t.elapsed().as_secs_f64(),
            r.transcode_s,
            r.transcoded
        );
        Ok(l.into_iter().map(Arc::new).collect())
    };
    let easy = load(&all_easy)?;
    let hard = load(&all_hard)?;
    let raw = raw_stack(&dev, &case, max_m)?;
    let bf16 = raw.bf16_bytes();
    let bufs = Bufs {
        x: stream.clone_htod(&synth::activations(&mut rng, max_m, o.hidden))?,
        y: stream.alloc_zeros::<u16>(max_m * o.hidden)?,
        tmp: stream.alloc_zeros::<u16>(max_m * o.hidden)?,
    };
    let mut rows = Vec::new();
    for &m in &o.ms {
        let (xp, yp) = (bufs.x.device_ptr(&stream).0, bufs.y.device_ptr(&stream).0);
        let cp = cublas_plan(&raw, m)?;
        // SAFETY: x and y hold max_m × hidden values for the whole benchmark.
        let cublas_us = time(&stream, o.warmup, o.iters, || {
            unsafe { raw.forward_raw(&stream, xp, yp, &cp) }.map_err(anyhow::Error::from)
        })?;
        rows.push(MlpRow {
            m,
            layout: "cublas bf16".into(),
            kinds: String::new(),
            resident_bytes: bf16,
            saving_vs_bf16: 0.0,
            us: cublas_us,
            us_one_stream: cublas_us,
            sum_layers_us: cublas_us,
            decode_us: 0.0,
            hidden_fraction: None,
            ratio_to_cublas: 1.0,
            decode_sms: 0,
        });
        println!("  m={m:<5} cublas bf16          {cublas_us:>9.1} us");
        for (name, kinds) in &layouts {
            let layers = kinds
                .iter()
                .enumerate()
                .map(|(l, k)| match k {
                    LayerKind::Easy => easy[l].clone(),
                    LayerKind::Hard => hard[l].clone(),
                })
                .collect();
            let stack = MlpStack::from_shared(&dev, layers, max_m)?;
            let has_hard = kinds.contains(&LayerKind::Hard);
            let splits: Vec<Option<u32>> = match (has_hard, o.decode_sms.is_empty()) {
                (false, _) => vec![None],
                (true, false) => o.decode_sms.iter().map(|&d| Some(d)).collect(),
                (true, true) if table.is_some() => {
                    // The tuned stack: its decode share measured on the stack itself.
                    // SAFETY: x and y hold max_m × hidden values for the whole benchmark.
                    let (best, timed) = unsafe {
                        split::tune_stack_split(
                            &stream,
                            &stack,
                            m,
                            (xp, yp),
                            table.as_ref(),
                            o.window,
                            &split::stack_candidates(dev.info.sm_count),
                            (1, o.iters.div_ceil(2).max(3)),
                        )?
                    };
                    let line = timed
                        .iter()
                        .map(|(s, us)| format!("{s}: {us:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    println!("  m={m:<5} {name:<20} decode SMs tried (us) {line} -> {best}");
                    vec![Some(best)]
                }
                (true, true) => {
                    let sms = dev.info.sm_count;
                    vec![Some(default_decode_sms(sms)), Some(sms / 2)]
                }
            };
            for split in splits {
                let (us, us_one, sum, dec, dsms) =
                    bench_layout(&stream, &stack, m, &bufs, table.as_ref(), split, &o)?;
                let hidden = (dec > 0.0).then(|| (1.0 - (us - sum) / dec).clamp(0.0, 1.0));
                let resident = stack.resident_bytes();
                println!(
                "  m={m:<5} {name:<20} {us:>9.1} us ({:.3}x cuBLAS)  one stream {us_one:.1}  layers {sum:.1} + decodes {dec:.1}  hidden {}  {:.2} GB",
                us / cublas_us,
                hidden.map_or("-".to_string(), |h| format!("{:.0}%", 100.0 * h)),
                resident as f64 / 1e9
            );
                rows.push(MlpRow {
                    m,
                    layout: name.clone(),
                    kinds: kinds_text(kinds),
                    resident_bytes: resident,
                    saving_vs_bf16: 1.0 - resident as f64 / bf16 as f64,
                    us,
                    us_one_stream: us_one,
                    sum_layers_us: sum,
                    decode_us: dec,
                    hidden_fraction: hidden,
                    ratio_to_cublas: us / cublas_us,
                    decode_sms: dsms,
                });
            }
        }
    }
    let report = MlpReport {
        device: dev.info.name.clone(),
        date: today(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        layers: o.layers,
        shape: format!("{}->{}->{}", o.hidden, o.inter, o.hidden),
        bf16_bytes: bf16,
        rows,
    };
    std::fs::create_dir_all(&o.out_dir)?;
    let stem = o
        .out_dir
        .join(format!("{}-{}-mlp", report.date, slug(&report.device)));
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(stem.with_extension("md"), &md)?;
    crate::gpu::harness::bench_mlp_plot::draw(&report, &stem.with_extension("png"))?;
    println!(
        "\n{md}\nwrote {}.{{json,md,png}} in {:.0}s",
        stem.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// A named residency mix: the kind of layer `l`.
type Mix = (&'static str, fn(usize) -> LayerKind);

/// One line of `unweight demo`'s stack table.
#[derive(Clone, Debug)]
pub struct DemoRow {
    pub layout: String,
    pub m: usize,
    pub us: f64,
    pub cublas_us: f64,
    pub resident_bytes: usize,
    pub bf16_bytes: usize,
}

/// `unweight demo`'s GPU stack part: `case`'s layers all easy, mixed (every other hard) and all
/// hard, one forward each at every batch in `ms`, beside the cuBLAS stack on the BF16 weights.
pub fn demo(
    dev: &Arc<GpuDevice>,
    case: &crate::gpu::harness::mlp::StackCase,
    ms: &[usize],
) -> anyhow::Result<Vec<DemoRow>> {
    let stream = compute_stream(&dev.ctx)?;
    let max_m = ms.iter().copied().max().unwrap_or(1);
    let n = case.layers.len();
    let tensors = compress(case, Encoding::Huffman)?;
    let build = |k: LayerKind| -> anyhow::Result<Vec<Arc<Mlp>>> {
        let (l, _) = build_layers(
            dev,
            case.act,
            tensors.clone(),
            &Residencies::Explicit(vec![k; n]),
        )?;
        Ok(l.into_iter().map(Arc::new).collect())
    };
    let (easy, hard) = (build(LayerKind::Easy)?, build(LayerKind::Hard)?);
    let raw = raw_stack(dev, case, max_m)?;
    let mut rng = Rng::new(7);
    let x = stream.clone_htod(&synth::activations(&mut rng, max_m, raw.hidden()))?;
    let y = stream.alloc_zeros::<u16>(max_m * raw.hidden())?;
    let (xp, yp) = (x.device_ptr(&stream).0, y.device_ptr(&stream).0);
    let mixes: [Mix; 3] = [
        ("all easy", |_| LayerKind::Easy),
        ("mixed", |l| {
            if l % 2 == 1 {
                LayerKind::Hard
            } else {
                LayerKind::Easy
            }
        }),
        ("all hard", |_| LayerKind::Hard),
    ];
    let mut rows = Vec::new();
    for &m in ms {
        let cp = cublas_plan(&raw, m)?;
        // SAFETY: x and y hold max_m × hidden values until the function returns (synced).
        let cublas_us = time(&stream, 3, 20, || {
            unsafe { raw.forward_raw(&stream, xp, yp, &cp) }.map_err(anyhow::Error::from)
        })?;
        for (name, kind) in mixes {
            let layers = (0..n)
                .map(|l| match kind(l) {
                    LayerKind::Easy => easy[l].clone(),
                    LayerKind::Hard => hard[l].clone(),
                })
                .collect();
            let stack = MlpStack::from_shared(dev, layers, max_m)?;
            let plan = stack.plan(m, &PlanOptions::default())?;
            // SAFETY: as above.
            let us = time(&stream, 3, 20, || {
                unsafe { stack.forward_raw(&stream, xp, yp, &plan) }.map_err(anyhow::Error::from)
            })?;
            rows.push(DemoRow {
                layout: format!("{name} ({})", kinds_text(&stack.kinds())),
                m,
                us,
                cublas_us,
                resident_bytes: stack.resident_bytes(),
                bf16_bytes: stack.bf16_bytes(),
            });
        }
    }
    Ok(rows)
}

/// The results as a markdown table.
pub fn markdown(r: &MlpReport) -> String {
    let mut s = format!(
        "# MLP stack: {} layers {} on {} ({})\n\n`{}`\n\nBF16 weights: {:.2} GB. `us`: one forward, decodes overlapped; `one stream`: the same without overlap; `layers`: each layer alone, added up; `decodes`: the hard layers' decodes alone, added up; `hidden`: 1 - (us - layers) / decodes.\n\n| m | layout | us | x cuBLAS | one stream us | layers us | decodes us | hidden | resident GB | saving | decode SMs | mix |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        r.layers,
        r.shape,
        r.device,
        r.date,
        r.command,
        r.bf16_bytes as f64 / 1e9
    );
    s.insert_str(
        s.find("| m |").unwrap_or(s.len()),
        &format!(
            "![speed against resident bytes, one line per M]({}-{}-mlp.png)\n\n",
            r.date,
            slug(&r.device)
        ),
    );
    for w in &r.rows {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.3} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.1}% | {} | {} |\n",
            w.m,
            w.layout,
            w.us,
            w.ratio_to_cublas,
            w.us_one_stream,
            w.sum_layers_us,
            w.decode_us,
            w.hidden_fraction
                .map_or("-".to_string(), |h| format!("{:.0}%", 100.0 * h)),
            w.resident_bytes as f64 / 1e9,
            100.0 * w.saving_vs_bf16,
            w.decode_sms,
            w.kinds
        ));
    }
    s
}
