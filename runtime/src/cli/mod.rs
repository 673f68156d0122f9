//! The `unweight` command-line tool: argument parsing (clap) and one module per command.

mod bench;
mod bench_mlp;
mod compress;
mod demo;
mod inspect;
mod progress;
mod table;
mod tune;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use bench::BenchArgs;

#[derive(Debug, Parser)]
#[command(
    name = "unweight",
    version,
    about = "Lossless compression of BF16 LLM weights"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Index encodings offered for bundles (the exponent encoding is an in-memory scratch format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// Canonical Huffman over palette indices: smallest, for distribution.
    Huffman,
    /// 4-bit palette indices: what GPU kernels compute from directly.
    Palette,
}

impl From<EncodingArg> for crate::codec::Encoding {
    fn from(e: EncodingArg) -> Self {
        match e {
            EncodingArg::Huffman => Self::Huffman,
            EncodingArg::Palette => Self::Palette,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compress the selected BF16 tensors of a .safetensors file into a bundle, or of every shard
    /// of a model directory into a new directory.
    Compress {
        /// Input .safetensors file or model directory.
        input: PathBuf,
        /// Output bundle (a .safetensors file), or a new directory for a directory input.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "huffman")]
        encoding: EncodingArg,
        /// Regex searched within each tensor name; replaces the default selection (MLP projection
        /// weights by their usual names).
        #[arg(long, value_name = "REGEX")]
        tensors: Option<String>,
        /// Regex choosing the selected tensors to encode transposed (e.g. down projections).
        #[arg(long, value_name = "REGEX")]
        transpose: Option<String>,
    },
    /// Restore every tensor and the original metadata from a bundle (or every file of a
    /// compressed model directory, byte-identical, into a new directory).
    Decompress {
        /// A bundle or a compressed model directory.
        input: PathBuf,
        /// The restored file, or a new directory for a directory input.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Per BF16 tensor: palette, exponent histogram, entropy, escape rate, sizes (of a file, or
    /// of every shard of a model directory, with totals per shard).
    Inspect { file: PathBuf },
    /// Decode every compressed tensor and check its hash (and, with --against, equality with the
    /// original); a file or a model directory.
    Verify {
        file: PathBuf,
        /// The uncompressed original (a file, or a directory for a directory): every tensor,
        /// the metadata and, for directories, the index and every other file must match it.
        #[arg(long, value_name = "ORIGINAL")]
        against: Option<PathBuf>,
    },
    /// Build a Llama-3.1-8B-shaped MLP layer in memory, compress it both ways, verify, report.
    Demo {
        /// Seed of the synthetic weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Hidden and intermediate size instead of Llama-3.1-8B's 4096x14336 (quick checks).
        #[arg(long, value_name = "HIDDENxINTERMEDIATE", value_parser = parse_dims, hide = true)]
        dims: Option<(usize, usize)>,
    },
    /// GPU benchmark of the decode pipelines against cuBLAS (needs an sm_90 GPU).
    Bench(BenchArgs),
    /// Autotune plans per shape and batch on this GPU and write the tuning table (needs an sm_90 GPU).
    Tune(tune::TuneArgs),
    /// GPU benchmark of a whole MLP stack (Llama-3.1-8B: 32 SwiGLU layers) against cuBLAS:
    /// all easy, all hard and memory budgets between (needs an sm_90 GPU).
    BenchMlp(bench_mlp::BenchMlpArgs),
    /// Redraw bench-mlp's PNG plot (speed against resident bytes, one line per M) from its JSON.
    PlotMlp {
        /// A `bench-mlp` results JSON.
        json: PathBuf,
        /// The PNG to write (default: beside the JSON, same name).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_dims(s: &str) -> Result<(usize, usize), String> {
    let (h, i) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}` is not HIDDENxINTERMEDIATE"))?;
    let p = |v: &str| v.parse::<usize>().map_err(|e| format!("`{s}`: {e}"));
    Ok((p(h)?, p(i)?))
}

/// Runs the tool; errors are printed as one line and give exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the error's text holds.
            let msg = format!("{e:#}");
            eprintln!(
                "unweight: error: {}",
                msg.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Compress {
            input,
            output,
            encoding,
            tensors,
            transpose,
        } => compress::run(
            &input,
            &output,
            encoding.into(),
            tensors.as_deref(),
            transpose.as_deref(),
        ),
        Command::Decompress { input, output } => compress::run_decompress(&input, &output),
        Command::Inspect { file } => inspect::run(&file),
        Command::Verify { file, against } => verify::run(&file, against.as_deref()),
        Command::Demo { seed, dims } => demo::run(
            seed,
            dims.unwrap_or((crate::demo::HIDDEN, crate::demo::INTERMEDIATE)),
        ),
        Command::Bench(args) => bench::run(args),
        Command::Tune(args) => tune::run(args),
        Command::BenchMlp(args) => bench_mlp::run(args),
        Command::PlotMlp { json, out } => bench_mlp::plot(&json, out.as_deref()),
    }
}
