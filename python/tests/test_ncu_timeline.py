"""scripts/ncu_timeline.py, which scripts/gpu-run.sh runs on the GPU machine after each Nsight
profile: the per-sample timeline from a raw page exported with --print-metric-instances values."""

import csv
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "ncu_timeline.py"


def write_raw(path, metrics):
    """A raw page as ncu writes it: names, units, then one launch's values."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", *metrics])
        w.writerow(["", *["" for _ in metrics]])
        w.writerow(["0", *metrics.values()])


def run(path):
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)


def test_rows_span_the_active_samples(tmp_path):
    raw = tmp_path / "k.inst.csv"
    write_raw(
        raw,
        {
            "FBSP.TriageCompute.dramc__read_throughput.avg.pct_of_peak_sustained_elapsed": "(0; 0; 91.5; 40.2; 1,2; 0)",
            "TPC.TriageCompute.sm__inst_executed_realtime.avg.pct_of_peak_sustained_elapsed": "33.1 (0; 5; 22; 60; 9; 0)",
            "TPC.TriageCompute.sm__cycles_active.avg": "48,655.15 (0; 898.5; 2,966; 2,700; 300; 0)",
        },
    )
    out = run(raw)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["sample", "dram_rd%", "dram_wr%"]
    # Samples 1..4 are the active ones; renumbered from 0; a metric the page lacks prints "-".
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert rows[1][1:4] == ["91.5", "-", "22"]
    assert rows[2][-1] == "2700"


def test_a_page_without_instances_is_refused_by_name(tmp_path):
    raw = tmp_path / "k.raw.csv"
    write_raw(raw, {"TPC.TriageCompute.sm__cycles_active.avg": "48,655.15"})
    out = run(raw)
    assert out.returncode != 0
    assert "k.raw.csv" in out.stderr and "no PM sampling metrics" in out.stderr
