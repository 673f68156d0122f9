//! `tune`: arguments of the autotuner, handed to the GPU runtime (`unweight::gpu::tuner::run`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::bench::Shape;
use crate::gpu::layout::Residency;
use crate::gpu::tuner::run::TuneOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct TuneArgs {
    /// Weight shapes N×K, comma-separated; a `t` suffix tunes the transposed orientation.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "14336x4096,4096x14336,4096x14336t"
    )]
    pub shapes: Vec<Shape>,
    /// Batch buckets M, comma-separated.
    #[arg(long = "m", value_delimiter = ',', default_value = "1,16,64,256,1024")]
    pub m: Vec<usize>,
    /// Residencies to tune, comma-separated (huffman, palette, raw).
    #[arg(long, value_delimiter = ',', default_value = "huffman,palette,raw", value_parser = parse_residency)]
    pub residency: Vec<Residency>,
    /// Stop starting new searches after this many seconds (the rest keep the default plan).
    #[arg(long, default_value_t = 1800.0)]
    pub budget_s: f64,
    /// The table to write (default: tuning-<gpu>.json in the cache directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also run exhaustive search and log the descent's pick against its best.
    #[arg(long)]
    pub exhaustive: bool,
    /// Timed repetitions per candidate (the median is used).
    #[arg(long, default_value_t = 15)]
    pub reps: usize,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

fn parse_residency(s: &str) -> Result<Residency, String> {
    [Residency::Huffman, Residency::Palette, Residency::Raw]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("residency `{s}` is not one of huffman, palette, raw"))
}

pub fn run(args: TuneArgs) -> anyhow::Result<ExitCode> {
    crate::gpu::tuner::run::run(args.options())?;
    Ok(ExitCode::SUCCESS)
}

impl TuneArgs {
    pub fn options(&self) -> TuneOptions {
        TuneOptions {
            device: self.device,
            shapes: self
                .shapes
                .iter()
                .map(|s| (s.n, s.k, s.orientation))
                .collect(),
            batch: self.m.clone(),
            residencies: self.residency.clone(),
            budget_s: self.budget_s,
            out: self.out.clone(),
            exhaustive: self.exhaustive,
            iters: self.reps,
            ..TuneOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn arguments_reach_the_options() {
        let cli = crate::cli::Cli::parse_from([
            "unweight",
            "tune",
            "--shapes",
            "14336x4096,4096x14336t",
            "--m",
            "1,64,256",
            "--residency",
            "palette",
            "--budget-s",
            "60",
            "--out",
            "t.json",
            "--exhaustive",
        ]);
        let crate::cli::Command::Tune(args) = cli.command else {
            panic!("not tune")
        };
        let o = args.options();
        assert_eq!(o.shapes.len(), 2);
        assert_eq!(o.shapes[1].2, crate::codec::Orientation::Transposed);
        assert_eq!(o.batch, vec![1, 64, 256]);
        assert_eq!(o.residencies, vec![crate::gpu::layout::Residency::Palette]);
        assert_eq!(o.budget_s, 60.0);
        assert_eq!(o.out.as_deref(), Some(std::path::Path::new("t.json")));
        assert!(o.exhaustive);
        assert!(
            crate::cli::Cli::try_parse_from(["unweight", "tune", "--residency", "gold"]).is_err()
        );
    }
}
