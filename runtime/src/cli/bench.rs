//! `bench`: arguments of the GPU benchmark. The benchmark itself lives in the GPU runtime
//! (`unweight::gpu::bench`), which this command hands its arguments to.

use std::path::PathBuf;
use std::process::ExitCode;

/// A weight shape `N×K` (`y = x·Wᵀ`, W is N rows of K).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub k: usize,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, k) = s.split_once(['x', '×']).ok_or_else(|| format!("shape `{s}` is not NxK"))?;
        let parse = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("shape `{s}`: {e}"));
        Ok(Self { n: parse(n)?, k: parse(k)? })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Weight shapes N×K, comma-separated (default: Llama-3.1-8B's MLP projections).
    #[arg(long, value_delimiter = ',', default_value = "14336x4096,4096x14336")]
    pub shapes: Vec<Shape>,
    /// Batch sizes M, comma-separated.
    #[arg(long = "m", value_delimiter = ',', default_value = "1,8,16,32,64,128,256,512,1024")]
    pub m: Vec<usize>,
    /// Directory for the results (CSV/JSON).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // The GPU runtime registers the benchmark here once it is linked into the tool.
    anyhow::bail!(
        "`bench` runs on an sm_90 GPU through unweight::gpu::bench, which this build does not include \
         (shapes {:?}, m {:?})",
        args.shapes,
        args.m
    )
}
