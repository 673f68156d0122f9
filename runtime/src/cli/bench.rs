//! `bench`: arguments of the GPU benchmark, handed to the GPU runtime (`unweight::gpu::harness::bench`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::codec::Orientation;

/// A weight shape `N×K` (`y = x·Wᵀ`, W is N rows of K); a `t` suffix encodes it transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub k: usize,
    pub orientation: Orientation,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (body, orientation) = match s.strip_suffix('t') {
            Some(b) => (b, Orientation::Transposed),
            None => (s, Orientation::Standard),
        };
        let (n, k) = body
            .split_once(['x', '×'])
            .ok_or_else(|| format!("shape `{s}` is not NxK or NxKt"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|e| format!("shape `{s}`: {e}"))
        };
        Ok(Self {
            n: parse(n)?,
            k: parse(k)?,
            orientation,
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Weight shapes N×K, comma-separated; a `t` suffix benchmarks the transposed orientation
    /// (default: Llama-3.1-8B's gate/up and down projections, down also transposed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "14336x4096,4096x14336,4096x14336t"
    )]
    pub shapes: Vec<Shape>,
    /// Batch sizes M, comma-separated.
    #[arg(long = "m", value_delimiter = ',', default_value = "1,16,64,256,1024")]
    pub m: Vec<usize>,
    /// Directory for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 50)]
    pub reps: usize,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// A tuning table (`unweight tune`): also time `plan_auto` against the default plans.
    #[arg(long)]
    pub table: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    crate::gpu::harness::bench::run(args.options())?;
    Ok(ExitCode::SUCCESS)
}

impl BenchArgs {
    /// The GPU benchmark's options; what the command line does not set keeps its default.
    pub fn options(&self) -> crate::gpu::harness::bench::BenchOptions {
        crate::gpu::harness::bench::BenchOptions {
            device: self.device,
            out_dir: self.out.clone(),
            shapes: self
                .shapes
                .iter()
                .map(|s| (s.n, s.k, s.orientation))
                .collect(),
            batch: self.m.clone(),
            iters: self.reps,
            table: self.table.clone(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_benchmark() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["unweight", "bench", "--m", "1,64", "--reps", "60"]);
        let crate::cli::Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        let o = args.options();
        assert_eq!(o.batch, vec![1, 64]);
        assert_eq!(o.iters, 60);
        assert_eq!(o.shapes.len(), 3);
        assert_eq!(o.shapes[2], (4096, 14336, Orientation::Transposed));
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(
            "14336x4096".parse::<Shape>().unwrap(),
            Shape {
                n: 14336,
                k: 4096,
                orientation: Orientation::Standard
            }
        );
        assert_eq!(
            "4096×14336t".parse::<Shape>().unwrap(),
            Shape {
                n: 4096,
                k: 14336,
                orientation: Orientation::Transposed
            }
        );
        assert!("4096".parse::<Shape>().is_err());
        assert!("ax3".parse::<Shape>().is_err());
    }
}
