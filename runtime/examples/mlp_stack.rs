//! An engine's view of an MLP stack: load a bundle, take a tuning table (or tune the stack's
//! shapes now), build an `MlpStack` under a device-memory budget, and run it on the engine's
//! own stream with the engine's own buffers.
//!
//! ```sh
//! unweight compress model.safetensors model.uw.safetensors --transpose down_proj
//! cargo run --release -p unweight --example mlp_stack -- model.uw.safetensors \
//!     --layers 32 --budget-gb 9 --m 16 [--table tuning.json | --tune] [--naming llama|bert]
//! ```
//! Needs an sm_90 GPU.

use std::path::PathBuf;

use anyhow::Context;
use unweight::gpu::mlp::{load_stack, Naming, PlanOptions, Residencies};
use unweight::gpu::tuner::{self, run::TuneOptions, Table};
use unweight::gpu::GpuDevice;

struct Args {
    bundle: PathBuf,
    layers: usize,
    budget: usize,
    m: usize,
    table: Option<PathBuf>,
    tune: bool,
    naming: Naming,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        bundle: PathBuf::new(),
        layers: 32,
        budget: usize::MAX,
        m: 16,
        table: None,
        tune: false,
        naming: Naming::llama(),
    };
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| {
        it.next().with_context(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--layers" => a.layers = value(&mut it, &arg)?.parse()?,
            "--budget-gb" => a.budget = (value(&mut it, &arg)?.parse::<f64>()? * 1e9) as usize,
            "--m" => a.m = value(&mut it, &arg)?.parse()?,
            "--table" => a.table = Some(value(&mut it, &arg)?.into()),
            "--tune" => a.tune = true,
            "--naming" => {
                a.naming = match value(&mut it, &arg)?.as_str() {
                    "llama" => Naming::llama(),
                    "bert" => Naming::bert(),
                    other => anyhow::bail!("--naming {other}: expected llama or bert"),
                }
            }
            _ if a.bundle.as_os_str().is_empty() => a.bundle = arg.into(),
            _ => anyhow::bail!("unexpected argument {arg}"),
        }
    }
    anyhow::ensure!(
        !a.bundle.as_os_str().is_empty(),
        "usage: mlp_stack BUNDLE [options]"
    );
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    // The engine owns the context and the stream (of high priority, so the matmuls' CTAs are
    // placed before the lower-priority decode stream's blocks); unweight borrows them.
    let ctx = cudarc::driver::CudaContext::new(0)?;
    let dev = GpuDevice::from_context(ctx.clone())?;
    let stream = unweight::gpu::scheduler::compute_stream(&ctx)?;

    let (stack, report) = load_stack(
        &dev,
        &a.bundle,
        &a.naming,
        a.layers,
        &Residencies::Budget(a.budget),
        a.m,
    )?;
    println!(
        "loaded {} layers in {:.2}s ({} matrices transcoded to palette on the GPU in {:.2}s): {:?}",
        a.layers, report.total_s, report.transcoded, report.transcode_s, report.kinds
    );
    println!(
        "resident {:.2} GB of weights + {:.2} GB of preprocess slots (BF16: {:.2} GB)",
        stack.weight_bytes() as f64 / 1e9,
        stack.slot_bytes() as f64 / 1e9,
        stack.bf16_bytes() as f64 / 1e9
    );

    let table: Option<Table> = match (&a.table, a.tune) {
        (Some(p), _) => Some(Table::load(p, &tuner::current_stamp(&dev)?)?),
        (None, true) => {
            let mut shapes: Vec<_> = stack.layers()[0]
                .matrices()
                .iter()
                .map(|l| {
                    let g = l.weights().geometry;
                    (g.n_out, g.k, g.orientation)
                })
                .collect();
            shapes.dedup();
            Some(tuner::run::run(TuneOptions {
                shapes,
                batch: vec![a.m],
                ..Default::default()
            })?)
        }
        (None, false) => None,
    };
    let plan = stack.plan(
        a.m,
        &PlanOptions {
            table: table.as_ref(),
            ..Default::default()
        },
    )?;

    // The engine's activations: x in, y out, bf16 [m][hidden] on its stream.
    let hidden = stack.hidden();
    let x = stream.clone_htod(&vec![0x3f80u16; a.m * hidden])?; // 1.0
    let mut y = stream.alloc_zeros::<u16>(a.m * hidden)?;
    stack.forward(&stream, &x, &mut y, &plan)?; // warm-up: loads every kernel
    let start = stream.record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    stack.forward(&stream, &x, &mut y, &plan)?;
    let end = stream.record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    stream.synchronize()?;
    println!(
        "one forward at m={}: {:.1} us (decode SMs {})",
        a.m,
        start.elapsed_ms(&end)? * 1e3,
        plan.decode_sms
    );
    Ok(())
}
