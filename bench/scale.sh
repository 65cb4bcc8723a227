#!/usr/bin/env bash
# Out of core (issue 21): the guide's etl, windows and quality jobs on data that does not fit
# in the memory they are given. Kiln's release binaries run with `--memory-limit` and a spill
# directory on disk; DuckDB with `SET memory_limit` (and its temp directory); Polars on its
# streaming engine (it has no memory limit setting). One run each, same data, same session;
# outputs checked against DuckDB's (bench/scale_check.py: out of core, check.py's tolerance).
#
#   bench/scale.sh                                  # 100M rows, 1GB
#   bench/scale.sh --rows 20000000 --memory 1GB --jobs "etl windows"
#
# Reported per engine and job: wall time, peak RSS, bytes spilled (Kiln: from --metrics;
# DuckDB and Polars do not report theirs, so the spill directory's peak size, sampled every
# 0.5 s, stands for all three), and whether it finished (a job killed by the kernel's OOM killer
# or past --timeout is a failure, not a missing row). Needs ~4x the CSV's size free on disk for
# 100M rows (data ~16 GB, spill, outputs).
# Results: bench/results/scale-<rows>.md and .tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
ROWS=100000000
MEMORY=1GB
JOBS="etl windows quality"
ENGINES="kiln duckdb polars"
TIMEOUT=3600
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --engines) ENGINES=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
BENCH_ROOT=${BENCH_ROOT:-/tmp/benchdata}
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
[ -x "$PY" ] || { echo "run bench/run.sh once first (it creates the venv)" >&2; exit 2; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
declare -A BIN
for job in $JOBS; do
  BIN[$job]=$("$KILN" build "specs/$job.toml" --release | tail -n 1)
done

data=$BENCH_ROOT/rows_$ROWS
out=$BENCH_ROOT/out/scale_$ROWS
spill=$BENCH_ROOT/spill
# gen_data.py with its string columns built 10M rows at a time (pyarrow refuses them whole at 100M rows).
[ -f "$data/_GENERATED" ] || SHARED_BENCH=$SHARED "$PY" bench/gen_scale.py --rows "$ROWS" --out "$data"
mkdir -p bench/results
tsv=bench/results/scale-$ROWS.tsv
printf 'job\tengine\tstatus\twall_s\tmax_rss_kb\tspilled_bytes\tspill_dir_peak_bytes\n' > "$tsv"

for job in $JOBS; do
  for engine in $ENGINES; do
    rm -rf "$spill" "$out/$engine/$job" && mkdir -p "$spill" "$out/$engine"
    metrics=$out/kiln-$job-metrics.json
    case $engine in
      kiln) if [ "$job" = etl ]; then io=(--param "input=$data/transactions.csv" --param "output=$out/kiln/$job/customer_category.parquet")
            else io=(--param "data=$data" --param "output=$out/kiln/$job"); fi
            cmd=("${BIN[$job]}" run "${io[@]}" --memory-limit "$MEMORY" --metrics "$metrics")
            # No spill_dir in the specs: DataFusion's disk manager takes the OS temp directory.
            export TMPDIR=$spill ;;
      duckdb) cmd=(env DUCKDB_TMP="$spill" "$PY" bench/scale_engines.py duckdb --memory "$MEMORY" --job "$job" --data "$data" --out "$out/duckdb") ;;
      polars) cmd=(env POLARS_MAX_THREADS=2 POLARS_TEMP_DIR="$spill" "$PY" bench/scale_engines.py polars --job "$job" --data "$data" --out "$out/polars") ;;
    esac
    # The spill directory's peak size, sampled while the job runs.
    ( peak=0; while sleep 0.5; do s=$(du -sb "$spill" 2>/dev/null | cut -f1); [ "${s:-0}" -gt "$peak" ] && peak=$s && echo "$peak" > /tmp/kiln-scale-peak; done ) &
    sampler=$!
    echo 0 > /tmp/kiln-scale-peak
    status=ok
    timeout "$TIMEOUT" /usr/bin/time -f '%e %M' -o /tmp/kiln-scale-time "${cmd[@]}" > /dev/null 2>/tmp/kiln-scale-err || status=failed
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    unset TMPDIR
    read -r wall rss < <(tail -n 1 /tmp/kiln-scale-time) || { wall=NA; rss=0; }
    [ "$status" = ok ] || { grep -qi "killed\|signal 9" /tmp/kiln-scale-time /tmp/kiln-scale-err && status=oom-killed; tail -n 3 /tmp/kiln-scale-err >&2; }
    spilled=NA
    [ "$engine" = kiln ] && [ -f "$metrics" ] && spilled=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(n.get("spill_bytes", 0) for n in m.get("nodes", {}).values()))' "$metrics")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$engine" "$status" "$wall" "$rss" "$spilled" "$(cat /tmp/kiln-scale-peak)" >> "$tsv"
    echo "rows=$ROWS $job $engine: $status ${wall}s, $((rss / 1024)) MB, spilled $spilled, spill dir peak $(cat /tmp/kiln-scale-peak)" >&2
  done
done
rm -rf "$spill"
# check.py loads outputs whole (100M rows of windows/running_total took it past 23 GB): DuckDB
# compares them out of core instead (bench/scale_check.py), every output of every job.
check=$("$PY" bench/scale_check.py --root "$out" --engines "$(echo $ENGINES | tr ' ' ',')" --ref duckdb --jobs "$(echo $JOBS | tr ' ' ',')" 2>&1) || true
"$PY" - "$tsv" "$ROWS" "$MEMORY" "$check" > "${tsv%.tsv}.md" <<'EOF'
import csv, sys
tsv, rows, memory, check = sys.argv[1:]
runs = list(csv.DictReader(open(tsv), delimiter="\t"))
print(f"### {int(rows):,} rows, memory limit {memory} (one run each, 2 threads each)\n")
print("| job | engine | status | wall s | peak RSS MB | spilled (metrics) MB | spill dir peak MB | wall vs DuckDB |")
print("|---|---|---|---:|---:|---:|---:|---:|")
duck = {r["job"]: r for r in runs if r["engine"] == "duckdb" and r["status"] == "ok"}
mb = lambda b: "n/a" if b in ("NA", "") else f"{int(b) / 1048576:.0f}"
for r in runs:
    d = duck.get(r["job"])
    ratio = f'{float(r["wall_s"]) / float(d["wall_s"]):.2f}x' if d and r["status"] == "ok" else "-"
    wall = r["wall_s"] if r["status"] == "ok" else f'({r["wall_s"]})'
    print(f'| {r["job"]} | {r["engine"]} | {r["status"]} | {wall} | {int(r["max_rss_kb"]) // 1024} | {mb(r["spilled_bytes"])} | {mb(r["spill_dir_peak_bytes"])} | {ratio} |')
print("\nOutputs checked with bench/scale_check.py (reference: DuckDB; every output joined on its key, doubles within 1e-9 relative):\n\n```\n" + check.strip() + "\n```")
EOF
cat "${tsv%.tsv}.md"
