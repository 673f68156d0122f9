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
    /// (default: Llama-3.1-8B's and -70B's gate/up and down projections, down also transposed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "14336x4096,4096x14336,4096x14336t,28672x8192,8192x28672,8192x28672t"
    )]
    pub shapes: Vec<Shape>,
    /// Batch sizes M, comma-separated.
    #[arg(
        long = "m",
        value_delimiter = ',',
        default_value = "1,4,16,64,128,256,512,1024,2048"
    )]
    pub m: Vec<usize>,
    /// SMs the Huffman decode rows run on (S: as many blocks as fill S SMs, as the MLP scheduler
    /// launches them), comma-separated; `all` = the kernel's natural grid.
    #[arg(
        long = "decode-sms",
        alias = "decode-ctas",
        value_delimiter = ',',
        default_value = "all,66,33,16",
        value_parser = parse_ctas
    )]
    pub decode_ctas: Vec<u32>,
    /// Directory for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Appended to the result files' names (`<date>-<gpu>-<tag>.json`), so the parts of a split
    /// run keep their own files.
    #[arg(long)]
    pub tag: Option<String>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 50)]
    pub reps: usize,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Size every rmm plan's CTA count with this spread instead of the plan's own
    /// (`even`: the default rule, `whole-splits`: one CTA per tile where the tiles fill the GPU,
    /// `persistent`: persistent CTAs wherever they fill it), to compare schedules in one run.
    #[arg(long, value_parser = parse_spread)]
    pub spread: Option<crate::gpu::plan::Spread>,
    /// A tuning table (`unweight tune`): also time `plan_auto` against the default plans.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Share of the synthetic weights' 64-element groups with an exponent outside the palette
    /// (escapes; 0 to 1). Trained checkpoints escape ~0.1-0.3% of groups.
    #[arg(long, default_value_t = 0.002, value_parser = parse_share)]
    pub escape_groups: f64,
    /// The synthetic weights' bulk exponent histogram: `trained` (all-MiniLM-L6-v2's, ~2.66 bits
    /// per symbol of Huffman) or `flat` (~3.79, what the figures before 2026-12-02 s7 used).
    #[arg(long, value_enum, default_value = "trained")]
    pub weights: crate::gpu::harness::synth::Bulk,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

/// `all` → 0 (the natural grid), else a positive SM count.
fn parse_ctas(s: &str) -> Result<u32, String> {
    if s.trim() == "all" {
        return Ok(0);
    }
    match s.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("`{s}` is not `all` or a positive SM count")),
        Ok(n) => Ok(n),
    }
}

fn parse_spread(s: &str) -> Result<crate::gpu::plan::Spread, String> {
    use crate::gpu::plan::Spread;
    match s.trim() {
        "even" => Ok(Spread::Even),
        "whole-splits" | "whole_splits" => Ok(Spread::WholeSplits),
        "persistent" => Ok(Spread::Persistent),
        _ => Err(format!("`{s}` is not even, whole-splits or persistent")),
    }
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
            tag: self.tag.clone(),
            shapes: self
                .shapes
                .iter()
                .map(|s| (s.n, s.k, s.orientation))
                .collect(),
            batch: self.m.clone(),
            decode_ctas: self.decode_ctas.clone(),
            iters: self.reps,
            table: self.table.clone(),
            spread: self.spread,
            escape_groups: self.escape_groups,
            bulk: self.weights,
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
        use crate::gpu::harness::bench::{BenchOptions, BATCHES, DECODE_CTAS};
        use clap::Parser;
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::parse_from(args);
            let crate::cli::Command::Bench(args) = cli.command else {
                panic!("not bench")
            };
            args.options()
        };
        let o = parse(&["unweight", "bench", "--m", "1,64", "--reps", "60"]);
        assert_eq!(o.batch, vec![1, 64]);
        assert_eq!(o.iters, 60);
        assert_eq!(o.tag, None);
        // The command line's defaults are the library's.
        let d = BenchOptions::default();
        assert_eq!(o.shapes, d.shapes);
        assert_eq!(o.shapes.len(), 6);
        assert_eq!(o.shapes[2], (4096, 14336, Orientation::Transposed));
        assert_eq!(o.shapes[3], (28672, 8192, Orientation::Standard));
        assert_eq!(o.shapes[5], (8192, 28672, Orientation::Transposed));
        assert_eq!(o.decode_ctas, DECODE_CTAS.to_vec());
        assert_eq!(o.escape_groups, d.escape_groups);
        assert_eq!(parse(&["unweight", "bench"]).batch, BATCHES.to_vec());
        let o = parse(&["unweight", "bench", "--escape-groups", "0"]);
        assert_eq!(o.escape_groups, 0.0);
        assert_eq!(o.bulk, d.bulk);
        let o = parse(&["unweight", "bench", "--spread", "persistent"]);
        assert_eq!(o.spread, Some(crate::gpu::plan::Spread::Persistent));
        assert_eq!(parse(&["unweight", "bench"]).spread, None);
        assert!(crate::cli::Cli::try_parse_from(["unweight", "bench", "--spread", "odd"]).is_err());
        let o = parse(&["unweight", "bench", "--weights", "flat"]);
        assert_eq!(o.bulk, crate::gpu::harness::synth::Bulk::Flat);
        for bad in ["1.5", "-0.1", "x"] {
            assert!(
                crate::cli::Cli::try_parse_from(["unweight", "bench", "--escape-groups", bad])
                    .is_err(),
                "{bad}"
            );
        }
        let o = parse(&[
            "unweight",
            "bench",
            "--shapes",
            "28672x8192",
            "--decode-ctas",
            "all,8",
            "--tag",
            "70b",
        ]);
        assert_eq!(o.shapes, vec![(28672, 8192, Orientation::Standard)]);
        assert_eq!(o.decode_ctas, vec![0, 8]);
        assert_eq!(o.tag.as_deref(), Some("70b"));
        for bad in ["0", "x", "-3"] {
            assert!(
                crate::cli::Cli::try_parse_from(["unweight", "bench", "--decode-ctas", bad])
                    .is_err(),
                "{bad}"
            );
        }
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
