#!/usr/bin/env bash
# A derived column by a #[kiln::udf] vs the same logic as SQL: specs/risk.toml (risk_band and
# after_fee in specs/udfs/risk.rs) vs bench/specs/risk_case.toml (CASE and arithmetic), on the
# same transactions.parquet, release binaries, alternating, median of RUNS. Outputs must agree.
#
#   bench/udf.sh [--rows 10000000] [--runs 3]
source "$(dirname "$0")/common.sh"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
out=$BENCH_ROOT/out/udf_$ROWS
UDF=$("$KILN" build specs/risk.toml --release | tail -n 1)
CASE=$("$KILN" build bench/specs/risk_case.toml --release | tail -n 1)
mkdir -p bench/results
tsv=bench/results/udf-$ROWS.tsv
printf 'variant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for variant in udf case; do
    bin=$UDF; [ $variant = case ] && bin=$CASE
    rm -rf "$out/$variant"
    /usr/bin/time -f '%e\t%M' -o /tmp/udf_time "$bin" run --param "data=$data" --param "output=$out/$variant" >/dev/null 2>&1
    printf '%s\t%s\t%s\n' "$variant" "$run" "$(cat /tmp/udf_time)" >> "$tsv"
  done
done
# Same bands, counts and sums (doubles within 1e-9 relative).
"$PY" - "$out" <<'PYEOF'
import sys, duckdb
a = duckdb.sql(f"SELECT * FROM '{sys.argv[1]}/udf/bands.parquet' ORDER BY band NULLS LAST").fetchall()
b = duckdb.sql(f"SELECT * FROM '{sys.argv[1]}/case/bands.parquet' ORDER BY band NULLS LAST").fetchall()
assert len(a) == len(b) and all(x[0] == y[0] and x[1] == y[1] and all(abs(p - q) <= 1e-9 * max(abs(p), abs(q), 1) for p, q in zip(x[2:], y[2:]) if p is not None) for x, y in zip(a, b)), (a, b)
print("outputs agree:", a)
PYEOF
"$PY" - "$tsv" "$ROWS" > "bench/results/udf-$ROWS.md" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
m = {v: (statistics.median(float(r["wall_s"]) for r in rows if r["variant"] == v),
         statistics.median(int(r["max_rss_kb"]) for r in rows if r["variant"] == v) / 1024) for v in ("udf", "case")}
print(f"# #[kiln::udf] vs SQL CASE: risk bands over {int(sys.argv[2]):,} transactions (median of {len(rows) // 2})\n")
print("specs/risk.toml (risk_band + after_fee as #[kiln::udf]) vs bench/specs/risk_case.toml (the same as CASE")
print("and arithmetic), release binaries, same data; produced by bench/udf.sh; outputs checked equal.\n")
print("| variant | wall s | peak RSS MB |\n|---|---:|---:|")
for v, label in (("udf", "#[kiln::udf]"), ("case", "SQL CASE")):
    print(f"| {label} | {m[v][0]:.2f} | {m[v][1]:.0f} |")
print(f"\nudf / CASE wall time: **{m['udf'][0] / m['case'][0]:.2f}x**")
PYEOF
cat "bench/results/udf-$ROWS.md"
