#!/usr/bin/env bash
# The running total (issue 21): the windows job (release) with Kiln's `kiln_running_sum` for
# `sum(amount) OVER (… ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)` and with DataFusion's
# aggregate form (`KILN_RUNNING_SUM=off`), next to DuckDB's windows job, run alternately RUNS
# times on the same data. Reports median wall time, CPU time (user + system: steadier than wall
# on this machine) and peak RSS, and checks both Kiln outputs against DuckDB's (check.py).
#
#   bench/running_sum.sh --rows 10000000 --runs 5
#
# Results: bench/results/running_sum-<rows>.md and .tsv.
source "$(dirname "$0")/common.sh"
out=$BENCH_ROOT/out/running_sum_$ROWS
bin=$("$KILN" build specs/windows.toml --release | tail -n 1)
tsv=bench/results/running_sum-$ROWS.tsv
printf 'engine\trun\twall_s\tcpu_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for engine in kiln kiln_df_sum duckdb; do
    rm -rf "${out:?}/$engine"
    case $engine in
      kiln) cmd=(env KILN_RUNNING_SUM=on "$bin" run --param "data=$data" --param "output=$out/$engine/windows") ;;
      kiln_df_sum) cmd=(env KILN_RUNNING_SUM=off "$bin" run --param "data=$data" --param "output=$out/$engine/windows") ;;
      duckdb) cmd=("$PY" "$SHARED/duckdb_jobs.py" --job windows --data "$data" --out "$out/$engine") ;;
    esac
    /usr/bin/time -f '%e %U %S %M' -o /tmp/kiln-rsum-time "${cmd[@]}" > /dev/null 2>&1
    read -r wall user sys rss < /tmp/kiln-rsum-time
    printf '%s\t%s\t%s\t%s\t%s\n' "$engine" "$run" "$wall" "$(echo "$user + $sys" | bc)" "$rss" >> "$tsv"
    echo "$engine run $run: ${wall}s wall, $((rss / 1024)) MB" >&2
  done
done
check=$("$PY" "$SHARED/check.py" --root "$out" --engines duckdb,kiln,kiln_df_sum --ref duckdb --jobs windows 2>&1) \
  || { echo "$check"; echo "OUTPUTS DISAGREE" >&2; exit 1; }
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'EOF'
import csv, statistics, sys
tsv, rows = sys.argv[1:]
runs = list(csv.DictReader(open(tsv), delimiter="\t"))
med = lambda e, key: statistics.median(float(r[key]) for r in runs if r["engine"] == e)
print(f"### Running total, windows job, {int(rows):,} rows (median of {max(int(r['run']) for r in runs)} alternating runs, release, 2 cores)\n")
print("Outputs of both Kiln variants checked against DuckDB's (check.py). Produced by bench/running_sum.sh.\n")
print("| engine | wall s | CPU s | peak RSS MB | wall / DuckDB |")
print("|---|---:|---:|---:|---:|")
names = {"kiln": "Kiln, kiln_running_sum", "kiln_df_sum": "Kiln, DataFusion's sum (KILN_RUNNING_SUM=off)", "duckdb": "DuckDB"}
for e in ["kiln", "kiln_df_sum", "duckdb"]:
    print(f"| {names[e]} | {med(e, 'wall_s'):.2f} | {med(e, 'cpu_s'):.2f} | {med(e, 'max_rss_kb') / 1024:.0f} | {med(e, 'wall_s') / med('duckdb', 'wall_s'):.2f}x |")
EOF
cat "${tsv%.tsv}.md"
