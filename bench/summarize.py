#!/usr/bin/env python3
"""bench/run.sh's TSV of runs -> a markdown table of medians and Kiln's ratios to DuckDB and Polars."""
import csv
import statistics
import sys

tsv, rows, check = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = {}
for r in csv.DictReader(open(tsv), delimiter="\t"):
    runs.setdefault((r["job"], r["engine"]), []).append((float(r["wall_s"]), int(r["max_rss_kb"])))

print(f"### {rows:,} rows (median of {max(len(v) for v in runs.values())} runs, 2 threads each)\n")
print("| job | engine | wall s | peak RSS MB | wall vs DuckDB | wall vs Polars | RSS vs DuckDB |")
print("|---|---|---:|---:|---:|---:|---:|")
for job in sorted({j for j, _ in runs}):
    med = {e: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for (j, e), v in runs.items() if j == job}
    for engine in ("kiln", "duckdb", "polars"):
        if engine not in med:
            continue
        wall, rss = med[engine]
        ratio = lambda other, i: f"{med[engine][i] / med[other][i]:.2f}x" if other in med else "-"
        print(f"| {job} | {engine} | {wall:.2f} | {rss / 1024:.0f} | {ratio('duckdb', 0)} | {ratio('polars', 0)} | {ratio('duckdb', 1)} |")
print("\nOutputs checked with ../shared/bench/check.py (reference: DuckDB):\n")
print("```\n" + check.strip() + "\n```")
