//! `bench-mlp`: arguments of the MLP stack benchmark (`unweight::gpu::harness::bench_mlp`), and
//! `plot-mlp`, which redraws its plot from the JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::gpu::harness::bench_mlp::{self, MlpBenchOptions};
use crate::gpu::harness::bench_mlp_plot;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchMlpArgs {
    /// Batch sizes M, comma-separated.
    #[arg(long = "m", value_delimiter = ',', default_value = "1,16,64,256,1024")]
    pub m: Vec<usize>,
    /// Layers of the stack (Llama-3.1-8B has 32).
    #[arg(long, default_value_t = 32)]
    pub layers: usize,
    /// Distinct synthetic layers (the others are copies, uploaded separately).
    #[arg(long, default_value_t = 2)]
    pub distinct: usize,
    /// Hidden and intermediate size instead of Llama-3.1-8B's 4096x14336.
    #[arg(long, value_name = "HIDDENxINTERMEDIATE", value_parser = super::parse_dims)]
    pub dims: Option<(usize, usize)>,
    /// Memory budgets between all hard and all easy.
    #[arg(long, default_value_t = 2)]
    pub budgets: usize,
    /// Timed forwards per measurement (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// A tuning table (`unweight tune`): variants, CTA counts and decode SMs from it.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// SMs left to overlapped decodes, comma-separated, one row each (default: the table's,
    /// else a quarter and a half of the GPU).
    #[arg(long, value_delimiter = ',')]
    pub decode_sms: Vec<u32>,
    /// Layers ahead of its compute a hard layer's decode is issued.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Directory for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

pub fn run(a: BenchMlpArgs) -> anyhow::Result<ExitCode> {
    let d = MlpBenchOptions::default();
    let (hidden, inter) = a.dims.unwrap_or((d.hidden, d.inter));
    bench_mlp::run(MlpBenchOptions {
        device: a.device,
        out_dir: a.out,
        layers: a.layers,
        distinct: a.distinct,
        hidden,
        inter,
        ms: a.m,
        budgets: a.budgets,
        iters: a.reps,
        table: a.table,
        decode_sms: a.decode_sms,
        window: a.window,
        ..d
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn plot(json: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let png = bench_mlp_plot::redraw(json, out)?;
    println!("wrote {}", png.display());
    Ok(ExitCode::SUCCESS)
}
