//! `unweight tune` on a GPU: for each shape, residency and batch bucket, coordinate descent from
//! the default plan (optionally also exhaustive search, to log how close the descent gets and
//! from how many timings), timed with `harness::bench`'s CUDA events over rotating weight sets;
//! the picks go into the tuning table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use unweight_codegen::variant::{HuffOutput, RegistryEntry, Variant};

use crate::codec::Orientation;
use crate::gpu::device::GpuDevice;
use crate::gpu::harness::bench::{self, BenchOptions};
use crate::gpu::harness::synth::{self, Rng};
use crate::gpu::jit::registry;
use crate::gpu::layout::Residency;
use crate::gpu::linear::Linear;
use crate::gpu::plan::{self, ExecPipeline, Plan};
use crate::gpu::tuner::search::{self, Candidate, Space};
use crate::gpu::tuner::split;
use crate::gpu::tuner::table::{self, spread_str, Choice, Key, Table, TableError};
use crate::gpu::tuner::{current_stamp, default_pipeline};

/// Options of `unweight tune`.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    pub device: usize,
    pub shapes: Vec<(usize, usize, Orientation)>,
    pub batch: Vec<usize>,
    pub residencies: Vec<Residency>,
    /// Stop starting new (shape, residency, bucket) searches after this many seconds.
    pub budget_s: f64,
    /// The table to write (default: `tuner::table::default_path` of the GPU).
    pub out: Option<PathBuf>,
    /// Also run exhaustive search and log pick vs best.
    pub exhaustive: bool,
    pub warmup: usize,
    /// Timed iterations per candidate (median).
    pub iters: usize,
    pub weight_sets: usize,
    pub seed: u64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            device: 0,
            shapes: bench::LLAMA_8B_SHAPES.to_vec(),
            batch: vec![1, 16, 64, 256, 1024],
            residencies: vec![Residency::Huffman, Residency::Palette, Residency::Raw],
            budget_s: 1800.0,
            out: None,
            exhaustive: false,
            warmup: 3,
            iters: 15,
            weight_sets: 3,
            seed: 0x5eed,
        }
    }
}

/// Runs the tuner, writes the table and returns it.
pub fn run(opts: TuneOptions) -> anyhow::Result<Table> {
    anyhow::ensure!(
        opts.weight_sets >= 3,
        "at least 3 rotating weight sets are needed (got {})",
        opts.weight_sets
    );
    anyhow::ensure!(opts.iters >= 1, "--reps must be at least 1");
    let started = Instant::now();
    let dev = GpuDevice::new(opts.device)?;
    let stamp = current_stamp(&dev)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| table::default_path(&dev.info.name));
    println!(
        "device: {} ({} SMs), table {}",
        dev.info.name,
        dev.info.sm_count,
        out.display()
    );
    // Keep what an earlier run of this stamp tuned; anything else starts afresh.
    let mut table = match Table::load(&out, &stamp) {
        Ok(t) => t,
        Err(TableError::Io { .. }) => Table::new(stamp.clone()),
        Err(e) => {
            println!("starting a new table: {e}");
            Table::new(stamp.clone())
        }
    };
    let stream = dev.ctx.new_stream().context("creating the tuning stream")?;
    let mut rng = Rng::new(opts.seed);
    let bench_opts = BenchOptions {
        weight_sets: opts.weight_sets,
        seed: opts.seed,
        ..BenchOptions::default()
    };
    let keys = opts.shapes.len() * opts.residencies.len() * opts.batch.len();
    let bar = ProgressBar::new(keys as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut log = String::new();
    let mut skipped = 0;

    for &(n_out, k, orientation) in &opts.shapes {
        let shape = format!("{n_out}x{k}");
        bar.set_message(format!("{shape} {orientation}: weights"));
        let set = bench::build_set(&dev, &mut rng, n_out, k, orientation, &bench_opts)?;
        bar.set_message(format!("{shape} {orientation}: kernels"));
        dev.kernels
            .precompile(&kernels(orientation == Orientation::Transposed))?;
        let max_m = *opts.batch.iter().max().unwrap_or(&1);
        let x = stream.clone_htod(&synth::activations(&mut rng, max_m, k))?;
        let mut y = stream.alloc_zeros::<u16>(max_m * n_out)?;
        for &m in &opts.batch {
            let cublas_us = bench::time_plans(
                &stream,
                set.for_residency(Residency::Raw),
                |l| l.plan(ExecPipeline::Cublas, m),
                &x,
                &mut y,
                opts.warmup,
                opts.iters,
            )?;
            for &residency in &opts.residencies {
                bar.set_message(format!("{shape} {orientation} {residency} m={m}"));
                if started.elapsed().as_secs_f64() > opts.budget_s {
                    skipped += 1;
                    bar.inc(1);
                    continue;
                }
                let lins = set.for_residency(residency);
                let space = Space::new(
                    lins[0].weights().geometry,
                    residency,
                    lins[0].weights().resident.default_a_src(),
                    m,
                    dev.info.sm_count,
                    registry::VARIANTS,
                );
                let sizes = space.sizes();
                let Some(start) = space.start(default_pipeline(residency)) else {
                    bar.inc(1);
                    continue;
                };
                let mut timer = |c: &Candidate| {
                    bench::time_plans(
                        &stream,
                        lins,
                        |l| plan_of(l, c, m),
                        &x,
                        &mut y,
                        opts.warmup,
                        opts.iters,
                    )
                };
                let Some(pick) = search::descend(&sizes, &start, |p| space.resolve(p), &mut timer)?
                else {
                    bar.inc(1);
                    continue;
                };
                if opts.exhaustive {
                    if let Some((best, seen)) =
                        search::exhaustive(&sizes, |p| space.resolve(p), &mut timer)?
                    {
                        // The pick's time from the same (exhaustive) session as the best's.
                        let pick_us = seen.get(&pick.best).copied().unwrap_or(pick.us);
                        let line = format!(
                            "| {shape} | {orientation} | {residency} | {m} | {} | {pick_us:.1} | {} | {} | {:.1} | {} | {:.3} | {:.2} |",
                            describe(&pick.best),
                            pick.timings,
                            describe(&best.best),
                            best.us,
                            best.timings,
                            pick_us / best.us,
                            pick.timings as f64 / best.timings as f64,
                        );
                        // suspend, not println: a hidden bar (stdout piped to a log) drops println.
                        bar.suspend(|| println!("{line}"));
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
                let c = pick.best;
                // Hard weights: the decode's share of the SMs beside another layer's matmul.
                let split = if residency == Residency::Huffman {
                    split::time_split(
                        &stream,
                        lins,
                        m,
                        &x,
                        &mut y,
                        opts.warmup,
                        opts.iters,
                        dev.info.sm_count,
                    )?
                    .map(|t| {
                        let best = split::best_split(&t);
                        let line = t
                            .shares
                            .iter()
                            .map(|s| format!("{} SMs {:.1} us", s.decode_sms, s.pair_us))
                            .collect::<Vec<_>>()
                            .join("; ");
                        bar.suspend(|| {
                            println!(
                                "{shape} {orientation} {residency} m={m}: decode + matmul serial {:.1} us; overlapped {line} -> {}",
                                t.serial_us,
                                if best == 0 { "serial".to_string() } else { format!("{best} SMs") }
                            )
                        });
                        (best, t.points())
                    })
                } else {
                    None
                };
                bar.suspend(|| {
                    println!(
                        "{shape} {orientation} {residency} m={m}: {} {:.1} us (t/cuBLAS {:.2}) after {} timings",
                        describe(&c),
                        pick.us,
                        pick.us / cublas_us,
                        pick.timings
                    )
                });
                table.insert(
                    Key {
                        n_out,
                        k,
                        orientation,
                        residency,
                        bucket: m,
                    },
                    Choice {
                        pipeline: c.pipeline,
                        variant: c.variant_name().map(str::to_string),
                        ctas: c.ctas,
                        spread: c.spread,
                        decode_sms: split.as_ref().map(|s| s.0),
                        split_us: split.map(|s| s.1).unwrap_or_default(),
                        us: pick.us,
                        cublas_us,
                    },
                );
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    table.device = Some(dev.info.name.clone());
    table.date = Some(crate::gpu::harness::bench::today());
    table.save(&out)?;
    if opts.exhaustive {
        println!("\n## descent vs exhaustive search\n");
        println!("| shape | orientation | residency | m | descent pick | pick µs | pick timings | exhaustive best | best µs | best timings | pick/best | timings ratio |");
        println!("|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|");
        print!("{log}");
    }
    println!("\n{}", markdown(&table));
    if skipped > 0 {
        println!("{skipped} searches skipped: the {}s budget ran out (their buckets keep the default plan)", opts.budget_s);
    }
    println!(
        "wrote {} in {:.0}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(table)
}

/// The plan of candidate `c` on `l` at batch `m`.
pub fn plan_of(l: &Linear, c: &Candidate, m: usize) -> Result<Plan, crate::gpu::GpuError> {
    match c.rmm {
        None => l.plan(c.pipeline, m),
        Some(e) => {
            let mut p = l.plan_with(c.pipeline, m, e)?;
            p.ctas = c.ctas;
            Ok(p)
        }
    }
}

fn describe(c: &Candidate) -> String {
    match c.rmm {
        None => c.pipeline.to_string(),
        Some(e) => format!(
            "{} {} {} CTAs ({})",
            c.pipeline,
            e.name,
            c.ctas,
            spread_str(c.spread)
        ),
    }
}

/// Every rmm of the orientation and the Huffman kernels: what a search may launch.
fn kernels(transpose: bool) -> Vec<&'static RegistryEntry> {
    let mut v: Vec<&'static RegistryEntry> = registry::VARIANTS
        .iter()
        .filter(|e| matches!(e.variant, Variant::Rmm(r) if r.transpose == transpose))
        .collect();
    v.extend(
        HuffOutput::ALL
            .into_iter()
            .filter_map(|o| plan::huff_entry(o).ok()),
    );
    v
}

/// The table as Markdown, each choice's speed as a ratio to cuBLAS.
pub fn markdown(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# tuning table — {} ({} SMs, driver {}, NVRTC {}, registry {})\n",
        t.stamp.gpu, t.stamp.sm_count, t.stamp.driver, t.stamp.nvrtc, t.stamp.registry
    );
    let _ = writeln!(
        s,
        "| shape | orientation | residency | m | pipeline | variant | CTAs | spread | decode SMs | µs | cuBLAS µs | t/cuBLAS |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|---|---:|---|---:|---:|---:|---:|");
    for e in &t.entries {
        let (k, c) = (&e.key, &e.choice);
        let _ = writeln!(
            s,
            "| {}x{} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} |",
            k.n_out,
            k.k,
            k.orientation,
            k.residency,
            k.bucket,
            c.pipeline,
            c.variant.as_deref().unwrap_or("-"),
            c.ctas,
            spread_str(c.spread),
            c.decode_sms.map_or("-".to_string(), |d| d.to_string()),
            c.us,
            c.cublas_us,
            c.us / c.cublas_us
        );
    }
    s
}
