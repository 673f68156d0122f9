//! `cargo run --release -p xtask -- bench-codec [--runs N] [--out DIR] [--minilm PATH] [--keep DIR] [--baseline BIN]` (release:
//! the xtask alias builds unoptimised code, which this refuses to time): CPU compress/decompress
//! throughput of the unweight codec (huffman, palette) beside ZipNN on the same bytes, in GB/s
//! of BF16 input. Writes `bench/results/<date>-codec-<host>.json` and a markdown table beside it.
//!
//! Data: all-MiniLM-L6-v2's MLP weights (fp32 rounded to BF16, as the tests do) and the demo
//! generator's Llama-3.1-8B-shaped MLP layer (gate/up 14336×4096, down 4096×14336: 352 MB,
//! ~2.6 bits exponent entropy).
//! ZipNN runs in a python3 subprocess with 2 threads, one untimed round then one timed round (the
//! unweight codec is warmed up too); each round compresses a fresh copy because
//! zipnn 0.5.4's compress rewrites its input buffer.
//!
//! unweight is timed through the functions the bundle writer and reader call for a file's
//! tensors: `codec::compress_batch` (parallel over the tensors and within each) and
//! `codec::decompress_contiguous` (the tensors decoded back to back into one buffer, every
//! hash checked); the restored values are then compared with the input, untimed.
//!
//! Beside them, the `unweight` binary (built first) is timed as a whole process: `compress` of
//! each dataset written as a .safetensors file in a scratch directory under the current one,
//! then `decompress` of the bundle; the restored file must equal the input byte for byte. The
//! same is timed with the files on tmpfs (/dev/shm, where `fsync` is free), and every run also
//! times writing + `fsync` of a dataset-sized file on both, so the disk's share is on record.
//!
//! Each in-process unweight round is preceded by an untimed one, as the ZipNN script's rounds
//! are: the development VM hands memory freed for about two seconds back to its host
//! (virtio-balloon free page reporting), and touching such memory again costs a host page
//! fault per page (measured: 0.3-1 GB/s, against ~6 GB/s for memory freed just before), which
//! would otherwise charge the first codec after the CLI and ZipNN rows for the VM, not itself.
//! `--baseline BIN` adds the same whole-process rows for another build of the binary (say, of
//! an older commit), interleaved in the same runs, for before/after figures under equal load.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use unweight::codec::{self, Encoding, Orientation};

/// A named list of BF16 tensors measured as one unit.
struct Dataset {
    name: String,
    /// Tensor names, for the safetensors file the CLI is timed on.
    names: Vec<String>,
    tensors: Vec<(Vec<usize>, Vec<u16>)>,
}

impl Dataset {
    fn bytes(&self) -> usize {
        self.tensors.iter().map(|(_, b)| 2 * b.len()).sum()
    }
}

/// Throughput (GB/s of BF16 input) and size of one codec on one dataset.
struct Measured {
    codec: String,
    compress_gbps: f64,
    decompress_gbps: f64,
    /// Fastest run: what the machine gives when no other work shares its two cores.
    best_compress_gbps: f64,
    best_decompress_gbps: f64,
    compressed_bytes: usize,
    /// CPU time of all threads per BF16 element, averaged over the runs: unaffected by other
    /// work on the machine, unlike wall-clock throughput.
    compress_cpu_ns: f64,
    decompress_cpu_ns: f64,
    /// Every run's seconds, in run order.
    compress_s: Vec<f64>,
    decompress_s: Vec<f64>,
}

pub fn run(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        bail!("this measures speed: run the optimised build, `cargo run --release -p xtask -- bench-codec`");
    }
    let mut runs = 5usize;
    let mut out_dir = PathBuf::from("bench/results");
    let mut minilm = std::env::var("UNWEIGHT_MINILM").ok();
    let mut keep: Option<PathBuf> = None;
    let mut baseline: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = value()?.parse().context("--runs")?,
            "--out" => out_dir = PathBuf::from(value()?),
            "--minilm" => minilm = Some(value()?.clone()),
            "--keep" => keep = Some(PathBuf::from(value()?)),
            "--baseline" => baseline = Some(PathBuf::from(value()?)),
            _ => bail!("unknown flag {a:?}; usage: cargo xtask bench-codec [--runs N] [--out DIR] [--minilm PATH] [--keep DIR] [--baseline BIN]"),
        }
    }
    let minilm = minilm.context(
        "UNWEIGHT_MINILM is not set: run `source $(scripts/setup-tools.sh)` or pass --minilm PATH",
    )?;
    let datasets = [minilm_mlp(Path::new(&minilm))?, llama_synthetic()];
    let bin = cli_binary()?;
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!("bench-codec: {cpu}, {cores} cores, {runs} runs per measurement (median)");

    // The development machine is shared: record its load so readers can judge the noise.
    let load_before = loadavg();
    let mut rows = Vec::new();
    for d in &datasets {
        let stats = stats(d)?;
        eprintln!(
            "{}: {:.1} MB, exponent entropy {:.3} bits, escape groups {:.2}%",
            d.name,
            d.bytes() as f64 / 1e6,
            stats.0,
            100.0 * stats.1
        );
        // Runs alternate between the codecs so that all see the same load on a shared machine.
        let zipnn_input = ZipnnInput::new(d)?;
        let cli_input = CliInput::new(d, &bin, keep.as_deref(), Path::new("."))?;
        // The same binary with its files on tmpfs, where `fsync` costs nothing: the CLI's own
        // cost apart from the disk's.
        let tmpfs_input = tmpfs_dir()
            .map(|dir| CliInput::new(d, &bin, None, dir))
            .transpose()?;
        let base_input = baseline
            .as_deref()
            .map(|b| CliInput::new(d, b, None, Path::new(".")))
            .transpose()?;
        let n_rows = 4 + usize::from(tmpfs_input.is_some()) + usize::from(base_input.is_some());
        let mut samples: Vec<Samples> = (0..n_rows).map(|_| Samples::default()).collect();
        let tmpfs_row = tmpfs_input.as_ref().map(|_| 3);
        let base_row = 3 + usize::from(tmpfs_input.is_some());
        let fill = vec![0x5au8; d.bytes()];
        let mut disk = WriteSamples::default();
        // Warm-up (untimed), so no codec pays first-call costs in the timed runs.
        for enc in [Encoding::Huffman, Encoding::Palette] {
            run_unweight(d, enc)?;
        }
        cli_input.run()?;
        if let Some(t) = &tmpfs_input {
            t.run()?;
        }
        if let Some(b) = &base_input {
            b.run()?;
        }
        let zipnn_row = samples.len() - 1;
        for _ in 0..runs {
            for (i, enc) in [Encoding::Huffman, Encoding::Palette]
                .into_iter()
                .enumerate()
            {
                // An untimed round right before the timed one, as the ZipNN script does: on a
                // VM that hands freed memory back to its host (virtio-balloon free page
                // reporting), memory first touched after a pause costs a host page fault per
                // page, and the timed round should not pay for what other rows freed.
                run_unweight(d, enc)?;
                samples[i].add(run_unweight(d, enc)?);
            }
            samples[2].add(cli_input.run()?);
            if let (Some(t), Some(row)) = (&tmpfs_input, tmpfs_row) {
                samples[row].add(t.run()?);
            }
            if let Some(b) = &base_input {
                samples[base_row].add(b.run()?);
            }
            samples[zipnn_row].add(run_zipnn(&zipnn_input)?);
            disk.disk
                .push(time_write_fsync(cli_input.dir.path(), &fill)?);
            if let Some(t) = &tmpfs_input {
                disk.tmpfs.push(time_write_fsync(t.dir.path(), &fill)?);
            }
        }
        drop(fill);
        cli_input.check_restored()?;
        if let Some(t) = &tmpfs_input {
            t.check_restored()?;
        }
        let gb = d.bytes() as f64 / 1e9;
        let elems = (d.bytes() / 2) as f64;
        let mut names = vec![
            "unweight huffman".to_string(),
            "unweight palette".to_string(),
            CLI_CODEC.to_string(),
        ];
        if tmpfs_input.is_some() {
            names.push(CLI_TMPFS_CODEC.to_string());
        }
        if let Some(b) = &baseline {
            names.push(format!("{CLI_CODEC}, baseline {}", b.display()));
        }
        names.push(format!("zipnn {} (2 threads)", zipnn_input.version()?));
        let results: Vec<Measured> = samples
            .into_iter()
            .zip(names)
            .map(|(s, codec)| Measured {
                codec,
                compress_gbps: gb / median(s.compress.clone()),
                decompress_gbps: gb / median(s.decompress.clone()),
                best_compress_gbps: gb / s.compress.iter().copied().fold(f64::MAX, f64::min),
                best_decompress_gbps: gb / s.decompress.iter().copied().fold(f64::MAX, f64::min),
                compressed_bytes: s.bytes,
                compress_cpu_ns: 1e9 * s.compress_cpu / (runs as f64 * elems),
                decompress_cpu_ns: 1e9 * s.decompress_cpu / (runs as f64 * elems),
                compress_s: s.compress,
                decompress_s: s.decompress,
            })
            .collect();
        for m in &results {
            eprintln!(
                "  {:24} compress {:6.2} GB/s  decompress {:6.2} GB/s",
                m.codec, m.compress_gbps, m.decompress_gbps
            );
        }
        let writes = Writes {
            disk_gbps: gb / median(disk.disk.clone()),
            tmpfs_gbps: (!disk.tmpfs.is_empty()).then(|| gb / median(disk.tmpfs.clone())),
            disk_s: disk.disk,
            tmpfs_s: disk.tmpfs,
        };
        eprintln!(
            "  write + fsync of {:.1} MB: disk {:.2} GB/s, tmpfs {}",
            gb * 1e3,
            writes.disk_gbps,
            writes
                .tmpfs_gbps
                .map_or("-".to_string(), |g| format!("{g:.2} GB/s"))
        );
        rows.push((d, stats, results, writes));
    }

    let date = unweight::gpu::harness::bench::today();
    let host = hostname();
    let command = format!(
        "cargo run --release -p xtask -- bench-codec {}",
        args.join(" ")
    )
    .trim_end()
    .to_string();
    let load = format!("load average {load_before} before, {} after", loadavg());
    let mut json = report_json(&rows, &date, &host, &cpu, cores, runs, &command, &load);
    json["built_from"] = Value::String(built_from());
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let stem = out_dir.join(format!("{date}-codec-{host}"));
    let json_path = stem.with_extension("json");
    let md_path = stem.with_extension("md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = report_markdown(&rows, &date, &cpu, cores, runs, &command, &load).replacen(
        "\n\n",
        &format!(
            "\n\nBuilt from {}.\n\n",
            json["built_from"].as_str().unwrap_or("?")
        ),
        1,
    );
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    print!("{md}");
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn minilm_mlp(path: &Path) -> Result<Dataset> {
    let mlp = unweight::minilm::load_mlp_bf16(path)?;
    let names = mlp.iter().map(|(n, _, _)| n.clone()).collect();
    let tensors = mlp
        .into_iter()
        .map(|(_, shape, bits)| (shape, bits))
        .collect();
    Ok(Dataset {
        name: "MiniLM-L6 MLP (12 tensors)".into(),
        names,
        tensors,
    })
}

/// The demo's Llama-3.1-8B-shaped MLP layer: gate_proj and up_proj 14336×4096, down_proj
/// 4096×14336 (352 MB of BF16, ~2.6 bits exponent entropy).
fn llama_synthetic() -> Dataset {
    let layer =
        unweight::demo::DemoLayer::build(1, unweight::demo::HIDDEN, unweight::demo::INTERMEDIATE);
    let mut names = Vec::new();
    let mut tensors = Vec::new();
    for t in layer.tensors {
        names.push(format!("model.layers.0.{}", t.name));
        tensors.push((t.shape.to_vec(), t.bits));
    }
    Dataset {
        name: "synthetic Llama-3.1-8B MLP layer (3 tensors)".into(),
        names,
        tensors,
    }
}

/// (exponent entropy in bits, escaped-group rate).
fn stats(d: &Dataset) -> Result<(f64, f64)> {
    let mut hist = [0u64; 256];
    let (mut esc, mut groups) = (0usize, 0usize);
    for (shape, bits) in &d.tensors {
        for &b in bits {
            hist[codec::exponent(b) as usize] += 1;
        }
        let t = codec::compress(bits, shape, Orientation::Standard, Encoding::Palette)?;
        esc += t.escape_count();
        groups += t.groups();
    }
    let n: u64 = hist.iter().sum();
    let h = hist.iter().filter(|&&c| c > 0).map(|&c| {
        let p = c as f64 / n as f64;
        -p * p.log2()
    });
    Ok((h.sum(), esc as f64 / groups.max(1) as f64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds per compress and decompress of each run, and the compressed size.
#[derive(Default)]
struct Samples {
    compress: Vec<f64>,
    decompress: Vec<f64>,
    /// CPU seconds of all threads, summed over the runs.
    compress_cpu: f64,
    decompress_cpu: f64,
    bytes: usize,
}

/// One run: wall seconds and CPU seconds (all threads) of compress and decompress, stored bytes.
struct Run {
    compress: f64,
    decompress: f64,
    compress_cpu: f64,
    decompress_cpu: f64,
    bytes: usize,
}

impl Samples {
    fn add(&mut self, r: Run) {
        self.compress.push(r.compress);
        self.decompress.push(r.decompress);
        self.compress_cpu += r.compress_cpu;
        self.decompress_cpu += r.decompress_cpu;
        self.bytes = r.bytes;
    }
}

/// CPU seconds used so far by the live threads of this process: the sum of each thread's
/// time on a CPU (nanoseconds, first field of /proc/self/task/*/schedstat). The pool's
/// threads live for the whole run, so differences between two calls are exact; the per-process
/// tick counts of /proc/self/stat (10 ms) are too coarse for runs of a few milliseconds and
/// are used only where schedstat is missing.
fn cpu_seconds() -> f64 {
    let from_schedstat = std::fs::read_dir("/proc/self/task").ok().map(|tasks| {
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum::<u64>() as f64
            / 1e9
    });
    match from_schedstat {
        Some(s) if s > 0.0 => s,
        _ => {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            // Fields after the parenthesised command name: state is the first, utime the 12th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
        }
    }
}

/// One compress + decompress of every tensor of `d` (hash checked), then a bit-exact comparison.
fn run_unweight(d: &Dataset, enc: Encoding) -> Result<Run> {
    let c0 = cpu_seconds();
    let t0 = Instant::now();
    // The batch functions, as the bundle writer and reader call them for a file's tensors:
    // parallel over the tensors, and decompression into one buffer (hashes checked).
    let inputs: Vec<codec::CompressInput> = d
        .tensors
        .iter()
        .map(|(shape, bits)| (&bits[..], &shape[..], Orientation::Standard))
        .collect();
    let compressed = codec::compress_batch(&inputs, enc)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let t1 = Instant::now();
    let c1 = cpu_seconds();
    let refs: Vec<&codec::CompressedTensor> = compressed.iter().collect();
    let restored = codec::decompress_contiguous(&refs)
        .map_err(|(i, e)| anyhow::anyhow!("{}: tensor {i}: {e}", d.name))?;
    let t2 = Instant::now();
    let c2 = cpu_seconds();
    let mut at = 0;
    for (_, bits) in &d.tensors {
        if restored.get(at..at + bits.len()) != Some(&bits[..]) {
            bail!("{}: {enc} round trip is not bit-exact", d.name);
        }
        at += bits.len();
    }
    if at != restored.len() {
        bail!(
            "{}: {enc} decompressed {} values, expected {at}",
            d.name,
            restored.len()
        );
    }
    let size = compressed.iter().map(|c| c.stored_bytes()).sum();
    Ok(Run {
        compress: (t1 - t0).as_secs_f64(),
        decompress: (t2 - t1).as_secs_f64(),
        compress_cpu: c1 - c0,
        decompress_cpu: c2 - c1,
        bytes: size,
    })
}

/// The name of the whole-process rows (files in a scratch directory under the current one,
/// i.e. on the project's disk).
const CLI_CODEC: &str = "unweight CLI huffman (whole process)";
/// The whole-process rows with the files on tmpfs.
const CLI_TMPFS_CODEC: &str = "unweight CLI huffman (whole process, files on tmpfs /dev/shm)";

/// A tmpfs to time the CLI on, if the machine has one.
fn tmpfs_dir() -> Option<&'static Path> {
    let p = Path::new("/dev/shm");
    p.is_dir().then_some(p)
}

/// Seconds of each run's write + fsync of a dataset-sized file, on the disk and on tmpfs.
#[derive(Default)]
struct WriteSamples {
    disk: Vec<f64>,
    tmpfs: Vec<f64>,
}

/// What the file systems themselves give: median GB/s of writing and syncing a new file of the
/// dataset's size, beside every run's seconds.
struct Writes {
    disk_gbps: f64,
    tmpfs_gbps: Option<f64>,
    disk_s: Vec<f64>,
    tmpfs_s: Vec<f64>,
}

/// Seconds to create a file in `dir`, write `bytes` to it and `fsync` it (what the CLI's
/// output costs at least); the file is removed afterwards, untimed.
fn time_write_fsync(dir: &Path, bytes: &[u8]) -> Result<f64> {
    let path = dir.join("write-fsync.bin");
    let t0 = Instant::now();
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    let s = t0.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(s)
}

/// The `unweight` binary of this build (built first, so it is never stale): it lies beside the
/// xtask executable in target/release.
fn cli_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "unweight",
            "--bin",
            "unweight",
        ])
        .status()
        .context("building the unweight binary")?;
    if !status.success() {
        bail!("cargo build --release -p unweight failed");
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .context("xtask has no directory")?
        .join("unweight");
    if !bin.is_file() {
        bail!("{} not found after building it", bin.display());
    }
    Ok(bin)
}

/// The dataset as a .safetensors file, for timing `unweight compress` and `unweight decompress`
/// as whole processes (start-up, reading, writing and syncing the output included).
/// With `--keep DIR` the files stay in `DIR/<dataset>/` for timing the binary by hand.
struct CliInput {
    bin: PathBuf,
    dir: tempfile::TempDir,
    input: PathBuf,
}

impl CliInput {
    /// Files in a scratch directory under `parent` (the current directory, so they live on the
    /// disk a user's checkpoint would, or a tmpfs).
    fn new(d: &Dataset, bin: &Path, keep: Option<&Path>, parent: &Path) -> Result<Self> {
        let mut dir = tempfile::Builder::new()
            .prefix(".bench-codec-")
            .tempdir_in(parent)
            .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
        if let Some(k) = keep {
            let sub = k.join(d.name.split(' ').next().unwrap_or("data"));
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
            dir = tempfile::TempDir::new_in(&sub)?;
            dir.disable_cleanup(true);
        }
        let input = dir.path().join("model.safetensors");
        let bytes: Vec<Vec<u8>> = d
            .tensors
            .iter()
            .map(|(_, bits)| bits.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = d
            .names
            .iter()
            .zip(&d.tensors)
            .zip(&bytes)
            .map(|((n, (shape, _)), b)| {
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(
                        safetensors::Dtype::BF16,
                        shape.clone(),
                        b,
                    )?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize_to_file(views, None, &input)?;
        Ok(Self {
            bin: bin.to_path_buf(),
            dir,
            input,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary with `args`; wall seconds and the child's CPU seconds (user + system).
    fn time(&self, args: &[&Path]) -> Result<(f64, f64)> {
        let c0 = children_cpu_seconds();
        let t0 = Instant::now();
        let out = Command::new(&self.bin)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = children_cpu_seconds() - c0;
        if !out.status.success() {
            bail!(
                "{} {:?} failed: {}",
                self.bin.display(),
                args,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((wall, cpu))
    }

    /// One `compress` and one `decompress`, each into a path that does not exist yet (removing
    /// an old output inside the timed process would charge it for freeing its pages).
    fn run(&self) -> Result<Run> {
        let (bundle, back) = (
            self.path("model.uw.safetensors"),
            self.path("back.safetensors"),
        );
        for p in [&bundle, &back] {
            if p.exists() {
                std::fs::remove_file(p)?;
            }
        }
        let o = Path::new("-o");
        let (compress, compress_cpu) =
            self.time(&[Path::new("compress"), &self.input, o, &bundle])?;
        let (decompress, decompress_cpu) =
            self.time(&[Path::new("decompress"), &bundle, o, &back])?;
        Ok(Run {
            compress,
            decompress,
            compress_cpu,
            decompress_cpu,
            bytes: std::fs::metadata(&bundle)?.len() as usize,
        })
    }

    /// The last run's restored file is the input, byte for byte.
    fn check_restored(&self) -> Result<()> {
        let back = std::fs::read(self.path("back.safetensors"))?;
        if back != std::fs::read(&self.input)? {
            bail!("unweight decompress did not restore the input byte for byte");
        }
        Ok(())
    }
}

/// CPU seconds (user + system) of the waited-for children so far.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

const ZIPNN_SCRIPT: &str = r#"
import json, sys, time
import zipnn
path, sizes = sys.argv[1], json.loads(sys.argv[2])
data = open(path, "rb").read()
parts, at = [], 0
for n in sizes:
    parts.append(data[at:at + n]); at += n
z = zipnn.ZipNN(input_format="byte", bytearray_dtype="bfloat16", threads=2)
# One untimed round first: the timed one then runs warm, as the unweight runs do.
for _round in range(2):
    copies = [bytearray(p) for p in parts]  # compress rewrites its input in place
    c0, t0 = time.process_time(), time.perf_counter()
    comp = [z.compress(c) for c in copies]
    c1, t1 = time.process_time(), time.perf_counter()
    back = [z.decompress(c) for c in comp]
    c2, t2 = time.process_time(), time.perf_counter()
if any(bytes(b) != p for b, p in zip(back, parts)):
    sys.exit("zipnn round trip is not bit-exact")
print(json.dumps({"compress_s": t1 - t0, "decompress_s": t2 - t1, "compress_cpu_s": c1 - c0,
                  "decompress_cpu_s": c2 - c1, "bytes": sum(len(c) for c in comp)}))
"#;

/// The dataset's bytes in a temporary file for the ZipNN subprocess.
struct ZipnnInput {
    file: tempfile::NamedTempFile,
    sizes: Vec<usize>,
}

impl ZipnnInput {
    fn new(d: &Dataset) -> Result<Self> {
        let mut file = tempfile::NamedTempFile::new()?;
        let mut sizes = Vec::new();
        for (_, bits) in &d.tensors {
            let bytes: Vec<u8> = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
            file.write_all(&bytes)?;
            sizes.push(bytes.len());
        }
        file.flush()?;
        Ok(ZipnnInput { file, sizes })
    }

    fn version(&self) -> Result<String> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('zipnn'))",
            ])
            .output()
            .context("running python3 for ZipNN (pip install zipnn)")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// One ZipNN compress + decompress of every tensor, timed inside python (start-up excluded).
fn run_zipnn(input: &ZipnnInput) -> Result<Run> {
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", ZIPNN_SCRIPT])
        .arg(input.file.path())
        .arg(serde_json::to_string(&input.sizes)?)
        .output()
        .context("running python3 for ZipNN (pip install zipnn)")?;
    if !out.status.success() {
        bail!(
            "ZipNN benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("ZipNN output {stdout:?}"))?;
    let num = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("ZipNN output lacks {k}"))
    };
    Ok(Run {
        compress: num("compress_s")?,
        decompress: num("decompress_s")?,
        compress_cpu: num("compress_cpu_s")?,
        decompress_cpu: num("decompress_cpu_s")?,
        bytes: num("bytes")? as usize,
    })
}

type Row<'a> = (&'a Dataset, (f64, f64), Vec<Measured>, Writes);

/// The fastest a whole-process `decompress` could run on this machine, in GB/s of BF16 output,
/// from figures of the same run: the codec's own CPU time (in-process huffman, all threads)
/// plus writing the output into the page cache (the tmpfs write: all CPU) shared by `cores`,
/// and on the disk never faster than writing and syncing the output alone. Start-up, reading
/// the input and unmapping are left out, so the real floor is lower still.
struct Floor {
    disk_gbps: f64,
    tmpfs_gbps: Option<f64>,
}

fn floor(d: &Dataset, results: &[Measured], w: &Writes, cores: usize) -> Floor {
    let gb = d.bytes() as f64 / 1e9;
    let codec_cpu_s = results[0].decompress_cpu_ns * (d.bytes() / 2) as f64 * 1e-9;
    let page_cache_s = w.tmpfs_gbps.map(|g| gb / g);
    let cpu_s = (codec_cpu_s + page_cache_s.unwrap_or(0.0)) / cores.max(1) as f64;
    Floor {
        disk_gbps: gb / cpu_s.max(gb / w.disk_gbps),
        tmpfs_gbps: page_cache_s.map(|_| gb / cpu_s),
    }
}

/// Targets: compress ≥ 2× ZipNN, decompress ≥ ZipNN (huffman, the distribution format), for
/// the codec in-process (`results[0]`) and the CLI as a whole process (`results[2]`), both
/// against ZipNN in-process (the last row).
fn verdict(results: &[Measured], which: usize) -> (bool, bool) {
    let (u, z) = (&results[which], &results[results.len() - 1]);
    (
        u.compress_gbps >= 2.0 * z.compress_gbps,
        u.decompress_gbps >= z.decompress_gbps,
    )
}

/// Indices of the rows the targets judge: in-process huffman and the whole-process CLI (on the
/// disk, and on tmpfs when the run has that row).
fn judged(results: &[Measured]) -> Vec<(usize, &'static str)> {
    let mut j = vec![
        (0, "in-process codec"),
        (2, "whole-process CLI, files on the disk"),
    ];
    if results.get(3).is_some_and(|m| m.codec == CLI_TMPFS_CODEC) {
        j.push((3, "whole-process CLI, files on tmpfs"));
    }
    j
}

#[allow(clippy::too_many_arguments)]
fn report_json(
    rows: &[Row],
    date: &str,
    host: &str,
    cpu: &str,
    cores: usize,
    runs: usize,
    command: &str,
    load: &str,
) -> Value {
    let datasets: Vec<Value> = rows
        .iter()
        .map(|(d, (entropy, esc), results, writes)| {
            let fl = floor(d, results, writes, cores);
            let (c_ok, d_ok) = verdict(results, 0);
            let (cli_c_ok, cli_d_ok) = verdict(results, 2);
            let mut targets = json!({
                "huffman_compress_ge_2x_zipnn": c_ok,
                "huffman_decompress_ge_zipnn": d_ok,
                "cli_compress_ge_2x_zipnn": cli_c_ok,
                "cli_decompress_ge_zipnn": cli_d_ok,
            });
            if judged(results).len() > 2 {
                let (t_c_ok, t_d_ok) = verdict(results, 3);
                targets["cli_tmpfs_compress_ge_2x_zipnn"] = Value::Bool(t_c_ok);
                targets["cli_tmpfs_decompress_ge_zipnn"] = Value::Bool(t_d_ok);
            }
            json!({
                "name": d.name,
                "bf16_bytes": d.bytes(),
                "exponent_entropy_bits": entropy,
                "escape_group_rate": esc,
                "results": results.iter().map(|m| json!({
                    "codec": m.codec,
                    "compress_gbps": m.compress_gbps,
                    "decompress_gbps": m.decompress_gbps,
                    "best_compress_gbps": m.best_compress_gbps,
                    "best_decompress_gbps": m.best_decompress_gbps,
                    "compressed_bytes": m.compressed_bytes,
                    "compress_cpu_ns_per_element": m.compress_cpu_ns,
                    "decompress_cpu_ns_per_element": m.decompress_cpu_ns,
                    "compress_s": m.compress_s,
                    "decompress_s": m.decompress_s,
                    "saved_percent": 100.0 * (1.0 - m.compressed_bytes as f64 / d.bytes() as f64),
                })).collect::<Vec<_>>(),
                "targets": targets,
                "write_fsync": {
                    "what": "create a new file of the dataset's size, write it from a warm buffer, fsync (median over runs, same runs as the rows)",
                    "disk_gbps": writes.disk_gbps,
                    "tmpfs_gbps": writes.tmpfs_gbps,
                    "disk_s": writes.disk_s,
                    "tmpfs_s": writes.tmpfs_s,
                },
                "decompress_floor": {
                    "what": "upper bound on whole-process decompress GB/s here: (in-process huffman decompress CPU time + tmpfs write time) / cores, and on the disk at most the write+fsync rate",
                    "disk_gbps": fl.disk_gbps,
                    "tmpfs_gbps": fl.tmpfs_gbps,
                    "zipnn_decompress_gbps": results[results.len() - 1].decompress_gbps,
                },
            })
        })
        .collect();
    json!({
        "date": date,
        "host": host,
        "device": { "cpu": cpu, "cores": cores },
        "command": command,
        "machine_load": load,
        "runs": runs,
        "statistic": "median over runs; the codecs alternate within each run",
        "cli": "the unweight binary as a whole process (start-up, input mapped from the page cache, output written and synced: to the project's disk in the CLI rows, to tmpfs /dev/shm in the 'files on tmpfs' rows), wall clock of `unweight compress FILE -o NEW` and `unweight decompress NEW -o NEW2`, CPU = the child's user + system time; the restored file is checked byte-identical to the input",
        "unit": "GB/s of BF16 input (1 GB = 1e9 bytes)",
        "datasets": datasets,
    })
}

#[allow(clippy::too_many_arguments)]
fn report_markdown(
    rows: &[Row],
    date: &str,
    cpu: &str,
    cores: usize,
    runs: usize,
    command: &str,
    load: &str,
) -> String {
    let mut s = format!(
        "# Codec throughput, {date}\n\n{cpu}, {cores} cores (shared: {load}); `{command}`; median and best of {runs} runs (codecs alternating); GB/s of BF16 input.\n\n\
         | data | codec | compress GB/s | decompress GB/s | best compress | best decompress | compress CPU ns/elem | decompress CPU ns/elem | saved |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (d, (entropy, esc), results, _) in rows {
        for m in results {
            s += &format!(
                "| {} ({:.1} MB, {entropy:.2} bits exp. entropy, {:.2}% escape groups) | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}% |\n",
                d.name,
                d.bytes() as f64 / 1e6,
                100.0 * esc,
                m.codec,
                m.compress_gbps,
                m.decompress_gbps,
                m.best_compress_gbps,
                m.best_decompress_gbps,
                m.compress_cpu_ns,
                m.decompress_cpu_ns,
                100.0 * (1.0 - m.compressed_bytes as f64 / d.bytes() as f64)
            );
        }
    }
    s += "\nCPU ns/elem: CPU time of all threads per BF16 element (mean over runs; unweight: the threads'\n\
          schedstat run time, ZipNN: python's process_time), which other work on a shared machine does\n\
          not inflate the way it does wall-clock time.\n\n\
          The CLI rows time `unweight compress FILE -o NEW` and `unweight decompress NEW -o NEW2` as\n\
          whole processes (start-up, input mapped from the page cache, output written and synced;\n\
          CPU = the child's user + system time); the restored file is checked byte-identical. Plain\n\
          CLI rows keep the files on the project's disk, the \"files on tmpfs\" rows on /dev/shm,\n\
          where `fsync` costs nothing. The in-process rows run an untimed round right before each\n\
          timed one, as the ZipNN script does.\n\n\
          Writing and syncing a new file of the dataset's size (no codec; median of the same runs):\n\n";
    for (d, _, _, w) in rows {
        s += &format!(
            "- {}: disk {:.2} GB/s ({:.2} s), tmpfs {}\n",
            d.name,
            w.disk_gbps,
            d.bytes() as f64 / 1e9 / w.disk_gbps,
            w.tmpfs_gbps
                .map_or("-".to_string(), |g| format!("{g:.2} GB/s"))
        );
    }
    s += "\nThe fastest a whole-process decompress can be here, from the same runs: the in-process\n\
          codec's CPU time plus writing the output into the page cache (the tmpfs write, all CPU),\n\
          shared by the cores; on the disk, never faster than writing and syncing the output alone\n\
          (start-up, reading the input and unmapping left out):\n\n";
    for (d, _, results, w) in rows {
        let fl = floor(d, results, w, cores);
        let z = results[results.len() - 1].decompress_gbps;
        let reach = |g: f64| {
            if g >= z {
                "within reach"
            } else {
                "out of reach"
            }
        };
        s += &format!(
            "- {}: disk {:.2} GB/s, tmpfs {}; ZipNN decompresses at {z:.2} GB/s, so 1× ZipNN is {} on the disk{}\n",
            d.name,
            fl.disk_gbps,
            fl.tmpfs_gbps
                .map_or("-".to_string(), |g| format!("{g:.2} GB/s")),
            reach(fl.disk_gbps),
            fl.tmpfs_gbps
                .map_or(String::new(), |g| format!(" and {} on tmpfs", reach(g))),
        );
    }
    s += "\n\
          Targets (huffman in-process and the whole-process CLI, each against ZipNN in-process, median\n\
          wall-clock): compress ≥ 2×, decompress ≥ 1×.\n\n";
    for (d, _, results, _) in rows {
        for (which, what) in judged(results) {
            let (c_ok, d_ok) = verdict(results, which);
            let (u, z) = (&results[which], &results[results.len() - 1]);
            s += &format!(
                "- {} ({what}): compress {:.2}× ZipNN ({}), decompress {:.2}× ZipNN ({})\n",
                d.name,
                u.compress_gbps / z.compress_gbps,
                if c_ok { "met" } else { "MISSED" },
                u.decompress_gbps / z.decompress_gbps,
                if d_ok { "met" } else { "MISSED" },
            );
        }
    }
    s
}

/// The commit the codec was built from, and whether the codec's sources differed from it.
fn built_from() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (no git)".into();
    };
    match git(&[
        "status",
        "--porcelain",
        "--",
        "runtime/src/codec",
        "runtime/src/bundle",
        "xtask/src/bench_codec.rs",
    ]) {
        Some(s) if s.is_empty() => head,
        Some(_) => format!("{head} with uncommitted codec changes"),
        None => format!("{head} (status unknown)"),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if h.is_empty() {
        "unknown-host".into()
    } else {
        h
    }
}

/// The 1/5/15-minute load averages.
fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
