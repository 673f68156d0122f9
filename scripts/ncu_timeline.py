#!/usr/bin/env python3
"""Nsight Compute PM-sampling timeline of one launch, from the raw page exported with
`--print-metric-instances values` (scripts/gpu-run.sh ncu writes it as <kernel>.inst.csv).

One row per sample (about 1.5 us on the H200) while the SMs are active: DRAM read and write,
instructions and the ALU and tensor pipes (% of peak), SM active cycles in the sample. Shows where a
kernel ramps, dips and drains, which the whole-launch averages hide.

Usage: ncu_timeline.py KERNEL.inst.csv   (standard library only: the GPU machine has no extras)
"""
import csv
import sys

COLUMNS = [
    ("dram_rd%", "dramc__read_throughput.avg.pct"),
    ("dram_wr%", "dramc__write_throughput.avg.pct"),
    ("inst%", "sm__inst_executed_realtime.avg.pct"),
    ("alu%", "pipe_alu_realtime.avg.pct"),
    ("tensor%", "pipe_tensor_cycles_active_realtime.avg.pct"),
    ("active_cyc", "sm__cycles_active.avg"),
]


def samples(value):
    """The per-sample list inside a metric's '(a; b; ...)' instance field, or None."""
    if "(" not in value:
        return None
    body = value[value.index("(") + 1 : value.rindex(")")]
    return [x.strip().replace(",", "") for x in body.split(";")]


def main(path):
    rows = list(csv.reader(open(path, newline="")))
    if len(rows) < 3:
        sys.exit(f"{path}: no metric rows (was the report exported with --print-metric-instances values?)")
    header, values = rows[0], rows[2]
    series = {}
    for name, key in COLUMNS:
        for h, v in zip(header, values):
            if key in h:
                s = samples(v)
                if s:
                    series[name] = s
                    break
    if "active_cyc" not in series:
        sys.exit(f"{path}: no PM sampling metrics (profile with --set full)")
    active = [i for i, x in enumerate(series["active_cyc"]) if float(x or 0) > 0]
    print("sample " + " ".join(f"{n:>10s}" for n, _ in COLUMNS))
    for i in range(active[0], active[-1] + 1):
        cells = [series[n][i] if n in series and i < len(series[n]) else "-" for n, _ in COLUMNS]
        print(f"{i - active[0]:6d} " + " ".join(f"{c:>10s}" for c in cells))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
