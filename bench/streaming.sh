#!/usr/bin/env bash
# Structured streaming (issue 17): a tumbling-window count over JSON events, Kiln against
# PySpark Structured Streaming (file source, maxFilesPerTrigger = 10, availableNow, the same
# 1-minute windows and 30-second watermark) on the same files in one run; both outputs are
# checked equal (bench/streaming/same_output.py). Reports events/s, the median batch time
# (end-to-end latency of a batch: files in, windows committed) and the ratios.
#
#   bench/streaming.sh                      # 10M events in 200 files
#   bench/streaming.sh --rows 1000000 --runs 1
#
# Needs the venv of bench/run.sh with pyspark (`pip install "pyspark>=4,<5"`; Java 17).
# Results: bench/results/streaming-<rows>.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=10000000
RUNS=3
FILES=200
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
BENCH_ROOT=${BENCH_ROOT:-/tmp/benchdata}
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
"$PY" -c 'import pyspark, duckdb' 2>/dev/null || { echo "needs $PY with pyspark and duckdb (see bench/run.sh)" >&2; exit 2; }
events=$BENCH_ROOT/stream_events_$ROWS
[ -f "$events/_GENERATED" ] || "$PY" bench/streaming/gen_events.py "$events" "$ROWS" "$FILES"
cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
BIN=$("$CARGO_TARGET_DIR/debug/kiln" build bench/specs/stream_counts.toml --release | tail -n 1)
out=$BENCH_ROOT/out/streaming_$ROWS
tsv=bench/results/streaming-$ROWS.tsv
mkdir -p bench/results
printf 'engine\trun\twall_s\tmax_rss_kb\tbatches\tmedian_batch_s\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for engine in kiln spark; do
    rm -rf "$out/$engine" "$out/$engine-checkpoint"
    mkdir -p "$out"
    case $engine in
      kiln) cmd=("$BIN" run --quiet --param "events=$events" --param "output=$out/kiln" --param "checkpoints=$out/kiln-checkpoint" --metrics "$out/kiln-metrics.json") ;;
      spark) cmd=("$PY" bench/streaming/spark_counts.py "$events" "$out/spark" "$out/spark-checkpoint") ;;
    esac
    /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${cmd[@]}" > /tmp/kiln-bench-out 2>/tmp/kiln-bench-err || { tail -20 /tmp/kiln-bench-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-bench-time
    if [ "$engine" = kiln ]; then
      read -r batches median < <("$PY" -c 'import json,statistics,sys; b=json.load(open(sys.argv[1]))["batches"]; print(len(b), statistics.median(x["seconds"] for x in b))' "$out/kiln-metrics.json")
    else
      read -r batches median < <("$PY" -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(r["batches"], r["median_batch_ms"]/1000)' /tmp/kiln-bench-out)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$engine" "$run" "$wall" "$rss" "$batches" "$median" >> "$tsv"
    echo "streaming rows=$ROWS $engine run $run: ${wall}s, $((rss / 1024)) MB, $batches batches, median batch ${median}s" >&2
  done
done
same=$("$PY" bench/streaming/same_output.py "$out/kiln" "$out/spark") || { echo "$same"; echo "OUTPUTS DISAGREE" >&2; exit 1; }
"$PY" - "$tsv" "$ROWS" "$same" > "${tsv%.tsv}.md" <<'PY'
import csv, statistics, sys
tsv, rows, same = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = list(csv.DictReader(open(tsv), delimiter="\t"))
def med(engine, key):
    return statistics.median(float(r[key]) for r in runs if r["engine"] == engine)
k, s = med("kiln", "wall_s"), med("spark", "wall_s")
print(f"# Streaming: 1-minute windows per page over {rows:,} JSON events (10 files per batch, availableNow)\n")
print("| engine | wall s (median) | events/s | peak RSS MB | batches | median batch s |")
print("|---|---|---|---|---|---|")
for e in ("kiln", "spark"):
    w = med(e, "wall_s")
    b = [r for r in runs if r["engine"] == e][0]["batches"]
    print(f"| {e} | {w:.2f} | {rows / w:,.0f} | {med(e, 'max_rss_kb') / 1024:.0f} | {b} | {med(e, 'median_batch_s'):.3f} |")
print("\nSpark's peak RSS is its Python driver's (GNU time follows the process it started, not the JVM it spawns); Spark also counts no no-data batch in `batches`.")
print(f"\nKiln / Spark wall time: {k / s:.2f}x; median batch time: {med('kiln', 'median_batch_s') / med('spark', 'median_batch_s'):.2f}x. Outputs: {same}.")
PY
cat "${tsv%.tsv}.md"
