#!/usr/bin/env bash
# ORC next to Parquet on the guide's etl job (issue 18), one run, same data:
#   specs/etl.toml's transforms over transactions converted by pyarrow from the
#   generator's Parquet to ORC (snappy), reading ORC vs Parquet (writing Parquet),
#   and writing ORC vs Parquet (reading Parquet). Every output is checked: row
#   count and the sum of total_spent equal DuckDB's etl result on the same data.
#
#   bench/orc.sh --rows 10000000 --runs 3
#
# Needs the bench data and venv (bench/run.sh makes them). Results: bench/results/orc-<rows>.md/.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=10000000
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
SHARED=${SHARED_BENCH:-$(pwd)/../shared/bench}
data=${BENCH_ROOT:-/tmp/benchdata}/rows_$ROWS
[ -f "$data/_GENERATED" ] || "$PY" "$SHARED/gen_data.py" --rows "$ROWS" --out "$data"
[ -f "$data/transactions.orc" ] || "$PY" -c "
import pyarrow.parquet as pq, pyarrow.orc as orc
orc.write_table(pq.read_table('$data/transactions.parquet'), '$data/transactions.orc', compression='snappy')"
work=/tmp/kiln-bench-orc
rm -rf "$work" && mkdir -p "$work"

# DuckDB's etl job on the same data is the reference.
"$PY" "$SHARED/duckdb_jobs.py" --job etl --data "$data" --out "$work/duckdb" >/dev/null
expected=$("$PY" -c "import duckdb; print(' '.join(str(x) for x in duckdb.sql(\"SELECT count(*), round(sum(total_spent), 2) FROM read_parquet('$work/duckdb/etl/**/*.parquet')\").fetchall()[0]))")

cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
declare -A BIN
for v in parquet_to_parquet orc_to_parquet parquet_to_orc; do
  src=${v%%_to_*}
  # `kiln check` reads the source's footer at the param's default: point it at the data.
  sed "s|default = \"data/transactions.$src\"|default = \"$data/transactions.$src\"|" "bench/specs/etl_$v.toml" > "$work/etl_$v.toml"
  BIN[$v]=$("$KILN" build "$work/etl_$v.toml" --release | tail -n 1)
done

check() { # dir format
  got=$("$PY" -c "
import duckdb, pyarrow.dataset as ds
t = ds.dataset('$1', format='$2').to_table()
print(' '.join(str(x) for x in duckdb.sql('SELECT count(*), round(sum(total_spent), 2) FROM t').fetchall()[0]))")
  [ "$got" = "$expected" ] || { echo "$1: $got, DuckDB's etl has $expected" >&2; exit 1; }
}

tsv=bench/results/orc-$ROWS.tsv
printf 'variant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for v in parquet_to_parquet orc_to_parquet parquet_to_orc; do
    src=${v%%_to_*}; sink=${v##*_to_}
    out=$work/out/$v
    /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${BIN[$v]}" run --param "input=$data/transactions.$src" --param "output=$out" >/dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-bench-time
    check "$out" "$sink"
    printf '%s\t%s\t%s\t%s\n' "$v" "$run" "$wall" "$rss" >> "$tsv"
    echo "$v run $run: ${wall}s, $((rss / 1024)) MB" >&2
  done
done

"$PY" - "$tsv" "$ROWS" "$(du -b "$data/transactions.parquet" | cut -f1)" "$(du -b "$data/transactions.orc" | cut -f1)" > "${tsv%.tsv}.md" <<'PYEOF'
import csv, statistics, sys
tsv, rows, pq_bytes, orc_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = {}
for r in csv.DictReader(open(tsv), delimiter='\t'):
    runs.setdefault(r['variant'], []).append((float(r['wall_s']), int(r['max_rss_kb'])))
base = statistics.median(w for w, _ in runs['parquet_to_parquet'])
print(f"# ORC vs Parquet on the etl job, {rows:,} rows (release build, 2 cores)\n")
print(f"Input: transactions as Parquet ({pq_bytes / 1e6:.0f} MB, the generator's) and as ORC ({orc_bytes / 1e6:.0f} MB, pyarrow, snappy). "
      "Every output's row count and sum(total_spent) equal DuckDB's etl job on the same data.\n")
print("| variant | median wall s | vs Parquet → Parquet | median peak RSS MB |")
print("|---|---:|---:|---:|")
names = {'parquet_to_parquet': 'read Parquet, write Parquet', 'orc_to_parquet': 'read ORC, write Parquet', 'parquet_to_orc': 'read Parquet, write ORC'}
for v, label in names.items():
    w = statistics.median(x for x, _ in runs[v]); m = statistics.median(x for _, x in runs[v]) / 1024
    print(f"| {label} | {w:.2f} | {w / base:.2f}x | {m:.0f} |")
PYEOF
cat "${tsv%.tsv}.md"
