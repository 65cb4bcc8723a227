#!/usr/bin/env bash
# Overhead of distributed runs: etl and broadcast_join at ROWS rows — the release binary run
# locally, with `run --standalone` (in-process Ballista), and submitted to a scheduler plus two
# executors (separate processes on this machine, one slot each... and then two). Median of RUNS,
# wall time of the client; outputs checked against the local run's.
#
#   bench/cluster.sh [--rows 10000000] [--runs 3]
source "$(dirname "$0")/common.sh"
out=$BENCH_ROOT/out/cluster_$ROWS
mkdir -p bench/results
tsv=bench/results/cluster-$ROWS.tsv
printf 'job\tmode\trun\twall_s\n' > "$tsv"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
port=51000
for job in etl broadcast_join; do
  bin=$("$KILN" build "specs/$job.toml" --release | tail -n 1)
  if [ $job = etl ]; then input=(--param "input=$data/transactions.csv"); else input=(--param "data=$data"); fi
  # A scheduler and two executors (each with the machine's cores as slots) for this job's binary.
  port=$((port + 10))
  "$bin" scheduler --bind 127.0.0.1:$port >/dev/null 2>&1 & PIDS+=($!)
  sleep 1
  "$bin" executor --scheduler 127.0.0.1:$port --bind 127.0.0.1:$((port + 1)) >/dev/null 2>&1 & PIDS+=($!)
  "$bin" executor --scheduler 127.0.0.1:$port --bind 127.0.0.1:$((port + 3)) >/dev/null 2>&1 & PIDS+=($!)
  sleep 2
  for run in $(seq 1 "$RUNS"); do
    for mode in local standalone cluster; do
      dest=$out/$mode/$job
      rm -rf "$dest"
      case $mode in
        local) cmd=("$bin" run) ;;
        standalone) cmd=("$bin" run --standalone) ;;
        cluster) cmd=("$bin" submit --scheduler 127.0.0.1:$port) ;;
      esac
      [ $job = etl ] && o="output=$dest/customer_category" || o="output=$dest"
      start=$(date +%s.%N)
      "${cmd[@]}" "${input[@]}" --param "$o" >/dev/null 2>&1
      end=$(date +%s.%N)
      printf '%s\t%s\t%s\t%.3f\n' "$job" "$mode" "$run" "$(echo "$end - $start" | bc)" >> "$tsv"
    done
  done
  cleanup; PIDS=()
done
# Outputs agree with the local run's (rows as multisets, doubles within 1e-9 relative).
"$PY" - "$out" <<'PYEOF'
import sys, duckdb
root = sys.argv[1]
for job in ("etl", "broadcast_join"):
    rows = {}
    for mode in ("local", "standalone", "cluster"):
        got = duckdb.sql(f"SELECT * FROM read_parquet('{root}/{mode}/{job}/**/*.parquet', hive_partitioning = true)").fetchall()
        # Sort by the non-float cells: sums may differ in the last bits (addition order).
        rows[mode] = sorted(got, key=lambda r: tuple(str(v) for v in r if not isinstance(v, float)))
    for mode in ("standalone", "cluster"):
        a, b = rows["local"], rows[mode]
        same = len(a) == len(b) and all(
            all((abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1)) if isinstance(x, float) and isinstance(y, float) else x == y for x, y in zip(r, s))
            for r, s in zip(a, b))
        assert same, f"{job}: {mode} differs from local"
    print(f"{job}: local, standalone and cluster outputs agree ({len(rows['local'])} rows)")
PYEOF
"$PY" - "$tsv" "$ROWS" > "bench/results/cluster-$ROWS.md" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print(f"# Distributed overhead at {int(sys.argv[2]):,} rows (median of {len(rows) // 6} runs)\n")
print("Release binaries; `cluster` = a scheduler and two executors as separate processes on this 2-core")
print("machine (each executor offers all cores as slots), the binary as client. Produced by bench/cluster.sh;")
print("outputs checked equal to the local run's.\n")
print("| job | local s | standalone s | cluster s | standalone / local | cluster / local |\n|---|---:|---:|---:|---:|---:|")
for job in ("etl", "broadcast_join"):
    m = {mode: statistics.median(float(r["wall_s"]) for r in rows if r["job"] == job and r["mode"] == mode) for mode in ("local", "standalone", "cluster")}
    print(f"| {job} | {m['local']:.2f} | {m['standalone']:.2f} | {m['cluster']:.2f} | {m['standalone'] / m['local']:.2f}x | {m['cluster'] / m['local']:.2f}x |")
PYEOF
cat "bench/results/cluster-$ROWS.md"
