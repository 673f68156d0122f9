//! The `bench-mlp` plot: speed against resident MLP bytes, one line per batch size M, as a PNG
//! beside the JSON and markdown. Drawn on the CPU from an [`MlpReport`] (so `unweight plot-mlp`
//! redraws it from a committed JSON), by plotters' bitmap backend with an embedded font: no
//! system font or library is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::gpu::harness::bench_mlp::MlpReport;

/// DejaVu Sans Mono (Bitstream Vera license, assets/DejaVu-LICENSE): the labels' font.
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "unweight-sans";

fn register_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    if !*OK.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
    {
        bail!("the embedded font does not parse");
    }
    Ok(())
}

/// One line of the plot: `(resident GB, speed vs cuBLAS)` per layout, fastest row of each,
/// in byte order.
pub fn lines(r: &MlpReport) -> BTreeMap<usize, Vec<(f64, f64)>> {
    let mut best: BTreeMap<(usize, String), (f64, f64)> = BTreeMap::new();
    for row in &r.rows {
        let speed = 1.0 / row.ratio_to_cublas;
        let p = (row.resident_bytes as f64 / 1e9, speed);
        let e = best.entry((row.m, row.layout.clone())).or_insert(p);
        if speed > e.1 {
            *e = p;
        }
    }
    let mut out: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for ((m, _), p) in best {
        out.entry(m).or_default().push(p);
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draws `r` to `png`, written whole or not at all (a temporary file renamed into place).
pub fn draw(r: &MlpReport, png: &Path) -> Result<()> {
    let lines = lines(r);
    let all: Vec<(f64, f64)> = lines.values().flatten().copied().collect();
    if all.is_empty() {
        bail!("the report has no rows to plot");
    }
    if let Some(p) = all
        .iter()
        .find(|p| !(p.0.is_finite() && p.1.is_finite() && p.1 > 0.0))
    {
        bail!(
            "a row has no finite speed or size ({:.3} GB, {:.3})",
            p.0,
            p.1
        );
    }
    register_font()?;
    let (x0, x1) = span(all.iter().map(|p| p.0));
    let (_, y1) = span(all.iter().map(|p| p.1));
    let dir = png
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".plot-")
        .suffix(".png")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    {
        let root = BitMapBackend::new(tmp.path(), (1100, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "MLP stack: {} layers {} on {} ({})",
                    r.layers, r.shape, r.device, r.date
                ),
                (FAMILY, 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0.0..y1)?;
        chart
            .configure_mesh()
            .x_desc("resident MLP bytes (GB): weights + preprocess slots")
            .y_desc("speed vs cuBLAS on BF16 (cuBLAS time / time)")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        for (i, (m, pts)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(format!("M = {m}"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
    }
    tmp.persist(png)
        .with_context(|| format!("writing {}", png.display()))?;
    Ok(())
}

/// The axis range of `v` with a margin of 5% on each side (and room for a single value).
fn span(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// The PNG path beside a report's JSON: the same stem.
pub fn png_beside(json: &Path) -> PathBuf {
    json.with_extension("png")
}

/// Reads a `bench-mlp` JSON and draws its plot to `png` (default: beside it); errors name the
/// file.
pub fn redraw(json: &Path, png: Option<&Path>) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let report: MlpReport = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a bench-mlp report", json.display()))?;
    let out = png.map_or_else(|| png_beside(json), Path::to_path_buf);
    draw(&report, &out).with_context(|| format!("plotting {}", json.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_json() -> String {
        let row = |m: usize, layout: &str, bytes: usize, ratio: f64| {
            format!(
                r#"{{"m":{m},"layout":"{layout}","kinds":"","resident_bytes":{bytes},"saving_vs_bf16":0.0,"us":10.0,"us_one_stream":10.0,"sum_layers_us":10.0,"decode_us":0.0,"hidden_fraction":null,"ratio_to_cublas":{ratio},"decode_sms":0}}"#
            )
        };
        let rows = [
            row(1, "cublas bf16", 11_000_000_000, 1.0),
            row(1, "all easy", 8_500_000_000, 1.25),
            row(1, "all hard", 7_800_000_000, 2.0),
            row(1, "all hard", 7_800_000_000, 1.6),
            row(64, "cublas bf16", 11_000_000_000, 1.0),
            row(64, "all easy", 8_500_000_000, 1.1),
        ];
        format!(
            r#"{{"device":"Test GPU","date":"2026-12-02","command":"x","layers":32,"shape":"4096->14336->4096","bf16_bytes":11000000000,"rows":[{}]}}"#,
            rows.join(",")
        )
    }

    #[test]
    fn a_small_report_draws_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r-mlp.json");
        std::fs::write(&json, report_json()).unwrap();
        let png = redraw(&json, None).unwrap();
        assert_eq!(png, dir.path().join("r-mlp.png"));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 2, "no temporary file left behind");
    }

    #[test]
    fn lines_keep_the_fastest_row_per_layout_in_byte_order() {
        let r: MlpReport = serde_json::from_str(&report_json()).unwrap();
        let l = lines(&r);
        assert_eq!(l.keys().copied().collect::<Vec<_>>(), [1, 64]);
        assert_eq!(l[&1], [(7.8, 0.625), (8.5, 0.8), (11.0, 1.0)]);
    }

    #[test]
    fn malformed_or_empty_reports_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bad.json");
        std::fs::write(&json, r#"{"device": "x", "rows": [ {"m": 1 "#).unwrap();
        let e = format!("{:#}", redraw(&json, None).unwrap_err());
        assert!(e.contains("bad.json: not a bench-mlp report"), "{e}");
        let empty =
            report_json().replace(&report_json()[report_json().find("[{").unwrap()..], "[]}");
        std::fs::write(&json, empty).unwrap();
        let e = format!("{:#}", redraw(&json, None).unwrap_err());
        assert!(e.contains("plotting") && e.contains("no rows"), "{e}");
        let e = format!(
            "{:#}",
            redraw(&dir.path().join("none.json"), None).unwrap_err()
        );
        assert!(e.contains("reading") && e.contains("none.json"), "{e}");
        assert!(!dir.path().join("bad.png").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
