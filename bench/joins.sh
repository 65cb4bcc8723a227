#!/usr/bin/env bash
# Join strategies on the guide's join jobs, in one run: skew_join (90% of orders on one key) salted
# vs shuffle vs Kiln's automatic choice vs DuckDB vs Polars, and broadcast_join with broadcast vs
# shuffle. Median of N runs, wall time and peak RSS; every Kiln output checked against DuckDB's.
#
#   bench/joins.sh                      # 10M rows, 3 runs
#   bench/joins.sh --rows 1000000 --runs 5
source "$(dirname "$0")/common.sh"
out=$BENCH_ROOT/out/joins_$ROWS
declare -A BIN
for spec in specs/skew_join.toml specs/broadcast_join.toml bench/specs/*.toml; do
  name=$(basename "$spec" .toml)
  BIN[$name]=$("$KILN" build "$spec" --release | tail -n 1)
done
tsv=bench/results/joins-$ROWS.tsv
printf 'job\tvariant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
time_it() { # job variant cmd...
  local job=$1 variant=$2; shift 2
  for run in $(seq 1 "$RUNS"); do
    /usr/bin/time -f '%e %M' -o /tmp/kiln-joins-time "$@" > /dev/null 2>/tmp/kiln-joins-err || { cat /tmp/kiln-joins-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-joins-time
    printf '%s\t%s\t%s\t%s\t%s\n' "$job" "$variant" "$run" "$wall" "$rss" >> "$tsv"
    echo "$job $variant run $run: ${wall}s, $((rss / 1024)) MB" >&2
  done
}
for job in skew_join broadcast_join; do
  case $job in
    skew_join) variants="skew_join_salted_declared:salted-declared skew_join_salted:salted-detect skew_join_shuffle:shuffle skew_join:auto" ;;
    broadcast_join) variants="broadcast_join:broadcast broadcast_join_shuffle:shuffle" ;;
  esac
  for v in $variants; do
    bin=${BIN[${v%%:*}]}
    rm -rf "$out/kiln"
    time_it "$job" "kiln ${v#*:}" "$bin" run --param "data=$data" --param "output=$out/kiln/$job"
    "$PY" "$SHARED/check.py" --root "$out" --engines duckdb,kiln --ref duckdb --jobs "$job" > /tmp/kiln-joins-check 2>&1 \
      || { [ -d "$out/duckdb/$job" ] || "$PY" "$SHARED/duckdb_jobs.py" --job "$job" --data "$data" --out "$out/duckdb" > /dev/null; \
           "$PY" "$SHARED/check.py" --root "$out" --engines duckdb,kiln --ref duckdb --jobs "$job" || { echo "kiln ${v#*:} disagrees with DuckDB" >&2; exit 1; }; }
  done
  time_it "$job" duckdb "$PY" "$SHARED/duckdb_jobs.py" --job "$job" --data "$data" --out "$out/duckdb"
  time_it "$job" polars env POLARS_MAX_THREADS=2 "$PY" "$SHARED/polars_jobs.py" --job "$job" --data "$data" --out "$out/polars"
done
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cells = {}
for r in rows:
    cells.setdefault((r["job"], r["variant"]), []).append((float(r["wall_s"]), int(r["max_rss_kb"])))
print(f"### Join strategies, {int(sys.argv[2]):,} rows (median of runs, 2 cores; every Kiln output equals DuckDB's)\n")
print("| job | variant | wall s | peak RSS MB | wall vs DuckDB |")
print("|---|---|---:|---:|---:|")
for (job, variant), v in cells.items():
    wall = statistics.median(w for w, _ in v); rss = statistics.median(m for _, m in v) / 1024
    duck = statistics.median(w for w, _ in cells[(job, "duckdb")])
    print(f"| {job} | {variant} | {wall:.2f} | {rss:.0f} | {wall / duck:.2f}x |")
PYEOF
cat "${tsv%.tsv}.md"
