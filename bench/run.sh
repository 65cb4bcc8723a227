#!/usr/bin/env bash
# Times Kiln's generated binaries against ../shared/bench's DuckDB and Polars jobs on the
# same generated data, in one run, and checks that all outputs agree (../shared/bench/check.py).
#
#   bench/run.sh                         # every guide job at 1M and 10M rows, 3 runs each
#   bench/run.sh --rows 1000000 --runs 5 --jobs "etl windows"
#
# Env: BENCH_ROOT (data and outputs, default /tmp/benchdata), BENCH_VENV (python venv with
# duckdb, polars, pyarrow, numpy; created if missing, default /tmp/benchvenv),
# CARGO_TARGET_DIR (default $HOME/.cache/kiln/target).
# Results: bench/results/<jobs>-<rows>.md (table of medians and ratios) and .tsv (every run).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
ROWS="1000000 10000000"
RUNS=3
JOBS="etl broadcast_join skew_join windows quality"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
BENCH_ROOT=${BENCH_ROOT:-/tmp/benchdata}
VENV=${BENCH_VENV:-/tmp/benchvenv}
PY=$VENV/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import duckdb, polars, pyarrow, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q duckdb polars pyarrow numpy "pandas<3"
fi
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

# kiln itself in dev (it only generates code); the job binaries in release.
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

mkdir -p bench/results
for rows in $ROWS; do
  data=$BENCH_ROOT/rows_$rows
  out=$BENCH_ROOT/out/rows_$rows
  [ -f "$data/_GENERATED" ] || "$PY" "$SHARED/gen_data.py" --rows "$rows" --out "$data"
  tsv=bench/results/$(echo $JOBS | tr ' ' '+')-$rows.tsv
  printf 'job\tengine\trun\twall_s\tmax_rss_kb\n' > "$tsv"
  for job in $JOBS; do
    for run in $(seq 1 "$RUNS"); do
      for engine in kiln duckdb polars; do
        case $engine in
          kiln) if [ "$job" = etl ]; then
                  cmd=("${BIN[$job]}" run --param "input=$data/transactions.csv" --param "output=$out/kiln/$job/customer_category.parquet")
                else
                  cmd=("${BIN[$job]}" run --param "data=$data" --param "output=$out/kiln/$job")
                fi ;;
          duckdb) cmd=("$PY" "$SHARED/duckdb_jobs.py" --job "$job" --data "$data" --out "$out/duckdb") ;;
          polars) cmd=(env POLARS_MAX_THREADS=2 "$PY" "$SHARED/polars_jobs.py" --job "$job" --data "$data" --out "$out/polars") ;;
        esac
        /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${cmd[@]}" > /dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
        read -r wall rss < /tmp/kiln-bench-time
        printf '%s\t%s\t%s\t%s\t%s\n' "$job" "$engine" "$run" "$wall" "$rss" >> "$tsv"
        echo "rows=$rows $job $engine run $run: ${wall}s, $((rss / 1024)) MB" >&2
      done
    done
  done
  check=$("$PY" "$SHARED/check.py" --root "$out" --engines duckdb,polars,kiln --ref duckdb --jobs "$(echo $JOBS | tr ' ' ',')" 2>&1) || { echo "$check"; echo "OUTPUTS DISAGREE" >&2; exit 1; }
  "$PY" bench/summarize.py "$tsv" "$rows" "$check" > "${tsv%.tsv}.md"
  cat "${tsv%.tsv}.md"
done
