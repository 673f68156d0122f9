//! The "done when" ratios of issues 8 and 9, read from a bench report: per shape, the worst
//! measured ratio of each criterion against its limit, so the markdown says met or missed.

use std::fmt::Write as _;

use unweight_codegen::variant::HuffRefill;

use super::bench::Report;

/// One criterion on one weight: the worst ratio over the rows it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub issue: u32,
    pub shape: String,
    pub orientation: String,
    pub criterion: String,
    /// Worst (largest) ratio and the row it came from (`m=…` or the decode kernel).
    pub worst: f64,
    pub at: String,
    pub limit: f64,
}

impl Check {
    pub fn met(&self) -> bool {
        self.worst <= self.limit
    }
}

/// Which model a shape belongs to: the limits of issue 8 differ for the 70B shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Llama8b,
    Llama70b,
}

fn model(shape: &str) -> Option<Model> {
    match shape {
        "14336x4096" | "4096x14336" => Some(Model::Llama8b),
        "28672x8192" | "8192x28672" => Some(Model::Llama70b),
        _ => None,
    }
}

/// Issue 8's limits on direct palette / cuBLAS time: (batches, 8B limit, 70B limit).
const DIRECT_PALETTE: [(&[usize], f64, f64); 4] = [
    (&[1, 4, 16], 0.80, 0.85),
    (&[64], 0.85, 0.90),
    (&[256], 1.00, 1.00),
    (&[512, 1024, 2048], 1.10, 1.10),
];

/// Issue 9's limits on decode time / floor, at all CTAs, for the 8B shapes: of the kernel the
/// pipelines run (`huff_<output>_<default refill>`).
const DECODE: [(&str, f64); 3] = [
    ("huff_palette", 2.0),
    ("huff_exponent", 2.0),
    ("huff_bf16", 1.6),
];

/// Issue 9's limits on pipeline / cuBLAS time at m = 1, for the 8B shapes.
const PIPELINE_M1: [(&str, f64); 2] = [("palette_transcode", 1.7), ("full_decode", 3.5)];

/// Every criterion whose rows `r` holds, in shape order.
pub fn checks(r: &Report) -> Vec<Check> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in &r.rows {
        let key = (row.shape.clone(), row.orientation.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut out = Vec::new();
    for (shape, orientation) in keys {
        let Some(model) = model(&shape) else { continue };
        let rows = || {
            r.rows
                .iter()
                .filter(|x| x.shape == shape && x.orientation == orientation && x.cublas_us > 0.0)
        };
        let mut push = |issue, criterion: String, ratios: Vec<(f64, String)>, limit| {
            if let Some((worst, at)) = ratios.into_iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
                out.push(Check {
                    issue,
                    shape: shape.clone(),
                    orientation: orientation.clone(),
                    criterion,
                    worst,
                    at,
                    limit,
                });
            }
        };
        for (ms, l8, l70) in DIRECT_PALETTE {
            // Per m, the faster of the direct palette's forms (SS on tiled blocks, RS and its
            // pairs on fragment blocks: the default upload; an engine picks the layout).
            let ratios = ms
                .iter()
                .filter_map(|&m| {
                    rows()
                        .filter(|x| x.pipeline.starts_with("direct_palette") && x.m == m)
                        .map(|x| (x.us / x.cublas_us, format!("m={m} ({})", x.pipeline)))
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                })
                .collect();
            let list: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
            let limit = if model == Model::Llama8b { l8 } else { l70 };
            let what = format!(
                "direct_palette (faster form) t/cuBLAS, m ∈ {{{}}}",
                list.join(", ")
            );
            push(8, what, ratios, limit);
        }
        let raw = rows()
            .filter(|x| x.pipeline == "raw")
            .map(|x| (x.us / x.cublas_us, format!("m={}", x.m)))
            .collect();
        push(8, "raw t/cuBLAS, every m".into(), raw, 1.05);
        if model != Model::Llama8b {
            continue;
        }
        for (output, limit) in DECODE {
            let kernel = format!("{output}_{}", HuffRefill::DEFAULT.as_str());
            let ratios = r
                .decode
                .iter()
                .filter(|d| {
                    d.shape == shape
                        && d.orientation == orientation
                        && d.kernel == kernel
                        && d.share == "all"
                        && d.floor_us > 0.0
                })
                .map(|d| (d.us / d.floor_us, format!("S=all, {} CTAs", d.ctas)))
                .collect();
            push(9, format!("{kernel} t/floor"), ratios, limit);
        }
        for (pipeline, limit) in PIPELINE_M1 {
            let ratios = rows()
                .filter(|x| x.pipeline == pipeline && x.m == 1)
                .map(|x| (x.us / x.cublas_us, "m=1".to_string()))
                .collect();
            push(9, format!("{pipeline} t/cuBLAS, m = 1"), ratios, limit);
        }
    }
    out
}

/// The checks as a markdown table (empty when there are none).
pub fn markdown(checks: &[Check]) -> String {
    let mut s = String::new();
    if checks.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "| issue | shape | orientation | done-when criterion | worst | at | limit | |"
    );
    let _ = writeln!(s, "|---:|---|---|---|---:|---|---:|---|");
    for c in checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {} | {:.2} | {} |",
            c.issue,
            c.shape,
            c.orientation,
            c.criterion,
            c.worst,
            c.at,
            c.limit,
            if c.met() { "met" } else { "**missed**" }
        );
    }
    s
}
