#!/usr/bin/env bash
# The cost of per-node metrics and of the progress line (issue 19): each guide job's
# release binary on the same data plain, with `--metrics m.json --report r.html`, and with
# the progress line (`KILN_PROGRESS=always`, redrawn every 250 ms), runs interleaved;
# reports the ratio of median wall times to plain (target <= 1.03x) and checks that every
# variant wrote the same output (../shared/bench/check.py, DuckDB's output as reference).
#
#   bench/metrics.sh --rows 10000000 --runs 3 --jobs "etl windows"
#
# Needs the bench data and venv (bench/run.sh makes them). Results: bench/results/metrics-<rows>.md/.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=10000000
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
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
SHARED=${SHARED_BENCH:-$(pwd)/../shared/bench}
data=${BENCH_ROOT:-/tmp/benchdata}/rows_$ROWS
[ -f "$data/_GENERATED" ] || "$PY" "$SHARED/gen_data.py" --rows "$ROWS" --out "$data"
work=/tmp/kiln-bench-metrics
rm -rf "$work" && mkdir -p "$work"
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
for job in $JOBS; do "$PY" "$SHARED/duckdb_jobs.py" --job "$job" --data "$data" --out "$work/duckdb" >/dev/null; done

tsv=bench/results/metrics-$ROWS.tsv
printf 'job\tvariant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for job in $JOBS; do
    for variant in plain metrics progress; do
      out=$work/$variant
      extra=()
      [ "$variant" = metrics ] && extra=(--metrics "$work/$job.json" --report "$work/$job.html")
      if [ "$variant" = progress ]; then export KILN_PROGRESS=always; else unset KILN_PROGRESS; fi
      if [ "$job" = etl ]; then
        args=(--param "input=$data/transactions.csv" --param "output=$out/$job/customer_category.parquet")
      else
        args=(--param "data=$data" --param "output=$out/$job")
      fi
      /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${BIN[$job]}" run "${args[@]}" "${extra[@]}" >/dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
      read -r wall rss < /tmp/kiln-bench-time
      printf '%s\t%s\t%s\t%s\t%s\n' "$job" "$variant" "$run" "$wall" "$rss" >> "$tsv"
      echo "$job $variant run $run: ${wall}s" >&2
    done
  done
done
unset KILN_PROGRESS
for variant in plain metrics progress; do
  mkdir -p "$work/check-$variant" && ln -sfn "$work/duckdb" "$work/check-$variant/duckdb" && ln -sfn "$work/$variant" "$work/check-$variant/kiln"
  "$PY" "$SHARED/check.py" --root "$work/check-$variant" --engines duckdb,kiln --ref duckdb --jobs "$(echo $JOBS | tr ' ' ',')" >/dev/null \
    || { echo "$variant outputs disagree with DuckDB's" >&2; exit 1; }
done
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'PYEOF'
import csv, statistics, sys
runs = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter='\t'):
    runs.setdefault((r['job'], r['variant']), []).append(float(r['wall_s']))
print(f"# Cost of --metrics/--report and of the progress line, {int(sys.argv[2]):,} rows (release build, 2 cores)\n")
print("Every variant's outputs equal DuckDB's (../shared/bench/check.py).\n")
print("| job | plain s | --metrics --report s | ratio | progress line s | ratio |\n|---|---:|---:|---:|---:|---:|")
ratios = {'metrics': [], 'progress': []}
for job in dict.fromkeys(j for j, _ in runs):
    a, b, c = (statistics.median(runs[(job, v)]) for v in ('plain', 'metrics', 'progress'))
    ratios['metrics'].append(b / a)
    ratios['progress'].append(c / a)
    print(f"| {job} | {a:.2f} | {b:.2f} | {b / a:.3f}x | {c:.2f} | {c / a:.3f}x |")
print(f"\nGeometric mean of the ratios: --metrics --report {statistics.geometric_mean(ratios['metrics']):.3f}x, progress {statistics.geometric_mean(ratios['progress']):.3f}x")
PYEOF
cat "${tsv%.tsv}.md"
