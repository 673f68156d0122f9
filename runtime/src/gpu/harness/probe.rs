//! Per-CTA timeline of an rmm launch, for a diagnostic build: with `UNWEIGHT_PROBE=1` the rmm
//! kernels are compiled with `-DUNWEIGHT_PROBE` (`unweight_codegen::nvrtc::PROBE_ENV`), and each
//! CTA records `%globaltimer` at the points of templates/rmm.cu.tera's `ProbePoint`. `unweight
//! bench` reads them back after each rmm row (the last timed launch's) into the report's `probes`.
//! Where a launch's time goes — start, first data, the drain after the last stage lands, the
//! stream-K fix-up — is then read per CTA instead of guessed from whole-launch averages.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use unweight_codegen::variant::Variant;

use crate::gpu::device::GpuDevice;
use crate::gpu::jit::registry;

/// The points, in the order of the template's `ProbePoint`.
pub const POINTS: [&str; 8] = [
    "entry",
    "first_issue",
    "records",
    "first_landed",
    "last_issue",
    "last_landed",
    "computed",
    "end",
];

/// CTAs the template records (`PROBE_CTAS`); later ones record nothing.
const PROBE_CTAS: usize = 4096;
/// Words per CTA (`PROBE_WORDS`): the points, then the SM id.
const PROBE_WORDS: usize = POINTS.len() + 1;

/// Whether this process builds and reads the probe.
pub fn enabled() -> bool {
    unweight_codegen::nvrtc::probing()
}

/// One rmm row's timeline: ns from the earliest CTA's entry, per CTA and point.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProbeRow {
    pub shape: String,
    pub orientation: String,
    pub m: usize,
    pub pipeline: String,
    pub variant: String,
    pub ctas: u32,
    /// Per point ([`POINTS`]): min, median and max over the CTAs, ns.
    pub summary: Vec<PointSummary>,
    /// `ns[cta][point]`.
    pub ns: Vec<Vec<i64>>,
    /// The SM each CTA ran on (`%smid` at entry).
    #[serde(default)]
    pub sm: Vec<u32>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PointSummary {
    pub point: String,
    pub min: i64,
    pub median: i64,
    pub max: i64,
}

/// One launch's per-CTA times ([`ProbeRow::ns`]), SMs and their summary.
pub struct Timeline {
    pub ns: Vec<Vec<i64>>,
    pub sm: Vec<u32>,
    pub summary: Vec<PointSummary>,
}

/// The timeline `variant`'s kernel left from its last launch on `ctas` CTAs; `None` for a row
/// without an rmm or a kernel built without the probe.
pub fn read(
    dev: &GpuDevice,
    stream: &Arc<CudaStream>,
    variant: &str,
    ctas: u32,
) -> anyhow::Result<Option<Timeline>> {
    let Some(e) = registry::find(variant) else {
        return Ok(None);
    };
    if !matches!(e.variant, Variant::Rmm(_)) {
        return Ok(None);
    }
    let Some(words) = dev.kernels.get_entry(e)?.read_probe(stream)? else {
        return Ok(None);
    };
    let n = (ctas as usize).min(PROBE_CTAS);
    let raw: Vec<&[u64]> = words.chunks_exact(PROBE_WORDS).take(n).collect();
    let Some(t0) = raw.iter().map(|r| r[0]).min() else {
        return Ok(None);
    };
    let ns: Vec<Vec<i64>> = raw
        .iter()
        .map(|r| {
            r[..POINTS.len()]
                .iter()
                .map(|&t| t as i64 - t0 as i64)
                .collect()
        })
        .collect();
    let sm = raw.iter().map(|r| r[POINTS.len()] as u32).collect();
    let summary = summarize(&ns);
    Ok(Some(Timeline { ns, sm, summary }))
}

/// Min, median and max of each point over the CTAs.
pub fn summarize(ns: &[Vec<i64>]) -> Vec<PointSummary> {
    POINTS
        .iter()
        .enumerate()
        .map(|(p, name)| {
            let mut v: Vec<i64> = ns.iter().map(|r| r[p]).collect();
            v.sort_unstable();
            PointSummary {
                point: name.to_string(),
                min: v.first().copied().unwrap_or(0),
                median: v.get(v.len() / 2).copied().unwrap_or(0),
                max: v.last().copied().unwrap_or(0),
            }
        })
        .collect()
}

/// One line: each point's median / max in µs from the first entry.
pub fn summary_line(s: &[PointSummary]) -> String {
    s.iter()
        .map(|p| {
            format!(
                "{} {:.2}/{:.2}",
                p.point,
                p.median as f64 / 1e3,
                p.max as f64 / 1e3
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_min_median_and_max_per_point() {
        let ns: Vec<Vec<i64>> = (0..5)
            .map(|c| (0..8).map(|p| (c * 10 + p) as i64).collect())
            .collect();
        let s = summarize(&ns);
        assert_eq!(s.len(), POINTS.len());
        assert_eq!((s[3].min, s[3].median, s[3].max), (3, 23, 43));
        assert!(summary_line(&s).starts_with("entry 0.02/0.04"));
    }
}
