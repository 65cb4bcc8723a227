#!/usr/bin/env bash
# Streaming from a broker (issue 17): ROWS click events (default 1M in 20 files, the generator
# of bench/streaming.sh) are produced to a Kafka topic on tansu (memory storage), then the same
# tumbling-window count runs three ways in one session: Kiln reading the topic (500,000 records
# per batch), Kiln reading the files (10 files = 500,000 lines per batch), and PySpark Structured
# Streaming reading the files (maxFilesPerTrigger = 10, availableNow). The three outputs are
# checked equal. Spark does not read the topic here: its Kafka source is a Maven package
# (spark-sql-kafka) that these machines cannot download.
#
#   bench/streaming_broker.sh                      # 1M events, 3 runs
#   bench/streaming_broker.sh --rows 2000000 --files 40 --runs 1
#
# Needs the venv of bench/streaming.sh plus confluent-kafka (`pip install confluent-kafka`),
# and tansu (`.ci/run` installs it into ~/.cache/kiln/tools/bin).
# Results: bench/results/streaming-broker-<rows>.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=1000000
FILES=20
RUNS=3
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
TANSU=${KILN_TANSU:-$HOME/.cache/kiln/tools/bin/tansu}
"$PY" -c 'import pyspark, duckdb, confluent_kafka' 2>/dev/null || { echo "needs $PY with pyspark, duckdb and confluent-kafka" >&2; exit 2; }
[ -x "$TANSU" ] || { echo "needs tansu at $TANSU (.ci/run installs it)" >&2; exit 2; }
events=$BENCH_ROOT/stream_events_$ROWS
[ -f "$events/_GENERATED" ] || "$PY" bench/streaming/gen_events.py "$events" "$ROWS" "$FILES"
cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
BROKER_BIN=$("$KILN" build bench/specs/stream_counts_kafka.toml --release | tail -n 1)
FILES_BIN=$("$KILN" build bench/specs/stream_counts.toml --release | tail -n 1)

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers=127.0.0.1:$port
"$TANSU" broker --storage-engine memory://tansu/ --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" > /tmp/kiln-bench-tansu.log 2>&1 &
tansu=$!
trap 'kill $tansu 2>/dev/null || true' EXIT
"$PY" - "$brokers" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for _ in range(100):
    try:
        admin.list_topics(timeout=1)
        break
    except Exception:
        time.sleep(0.2)
for f in admin.create_topics([NewTopic("clicks", 1, 1)]).values():
    f.result()
PY
start=$(date +%s.%N)
produced=$("$PY" bench/streaming/produce.py "$brokers" clicks "$events")
produce_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "produced $produced records to tansu in ${produce_s}s (not part of any figure below)" >&2

out=$BENCH_ROOT/out/streaming_broker_$ROWS
tsv=bench/results/streaming-broker-$ROWS.tsv
mkdir -p bench/results
printf 'engine\trun\twall_s\tmax_rss_kb\tbatches\tmedian_batch_s\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for engine in kiln-broker kiln-files spark; do
    rm -rf "$out/$engine" "$out/$engine-checkpoint"
    mkdir -p "$out"
    case $engine in
      kiln-broker) cmd=("$BROKER_BIN" run --quiet --param "brokers=$brokers" --param "topic=clicks" --param "output=$out/$engine" --param "checkpoints=$out/$engine-checkpoint" --metrics "$out/$engine-metrics.json") ;;
      kiln-files) cmd=("$FILES_BIN" run --quiet --param "events=$events" --param "output=$out/$engine" --param "checkpoints=$out/$engine-checkpoint" --metrics "$out/$engine-metrics.json") ;;
      spark) cmd=("$PY" bench/streaming/spark_counts.py "$events" "$out/spark" "$out/spark-checkpoint") ;;
    esac
    /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${cmd[@]}" > /tmp/kiln-bench-out 2>/tmp/kiln-bench-err || { tail -20 /tmp/kiln-bench-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-bench-time
    if [ "$engine" = spark ]; then
      read -r batches median < <("$PY" -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(r["batches"], r["median_batch_ms"]/1000)' /tmp/kiln-bench-out)
    else
      read -r batches median < <("$PY" -c 'import json,statistics,sys; b=json.load(open(sys.argv[1]))["batches"]; print(len(b), statistics.median(x["seconds"] for x in b))' "$out/$engine-metrics.json")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$engine" "$run" "$wall" "$rss" "$batches" "$median" >> "$tsv"
    echo "streaming-broker rows=$ROWS $engine run $run: ${wall}s, $((rss / 1024)) MB, $batches batches, median batch ${median}s" >&2
  done
done
same_broker=$("$PY" bench/streaming/same_output.py "$out/kiln-broker" "$out/spark") || { echo "$same_broker"; echo "OUTPUTS DISAGREE (broker)" >&2; exit 1; }
same_files=$("$PY" bench/streaming/same_output.py "$out/kiln-files" "$out/spark") || { echo "$same_files"; echo "OUTPUTS DISAGREE (files)" >&2; exit 1; }
"$PY" - "$tsv" "$ROWS" "$same_broker" "$produce_s" > "${tsv%.tsv}.md" <<'PY'
import csv, statistics, sys
tsv, rows, same, produce_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
runs = list(csv.DictReader(open(tsv), delimiter="\t"))
def med(engine, key):
    return statistics.median(float(r[key]) for r in runs if r["engine"] == engine)
print(f"# Streaming from a broker: 1-minute windows per page over {rows:,} JSON events (500,000 per batch, availableNow)\n")
print("| engine | reads | wall s (median) | events/s | peak RSS MB | batches | median batch s |")
print("|---|---|---|---|---|---|---|")
for e, reads in (("kiln-broker", "Kafka topic (tansu)"), ("kiln-files", "JSON files"), ("spark", "JSON files")):
    w = med(e, "wall_s")
    b = [r for r in runs if r["engine"] == e][0]["batches"]
    print(f"| {e} | {reads} | {w:.2f} | {rows / w:,.0f} | {med(e, 'max_rss_kb') / 1024:.0f} | {b} | {med(e, 'median_batch_s'):.3f} |")
print("\nSpark's peak RSS is its Python driver's (GNU time follows the process it started, not the JVM it spawns).")
kb, kf, s = med("kiln-broker", "wall_s"), med("kiln-files", "wall_s"), med("spark", "wall_s")
print(f"\nKiln from the broker / Kiln from files: {kb / kf:.2f}x; Kiln from the broker / Spark from files: {kb / s:.2f}x; "
      f"Kiln from files / Spark: {kf / s:.2f}x. Outputs: {same} (each Kiln output against Spark's). "
      f"Producing the records to tansu (one per request) took {produce_s:.0f} s, outside every figure.")
PY
cat "${tsv%.tsv}.md"
