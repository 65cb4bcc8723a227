#!/usr/bin/env bash
# Delta next to Parquet on the guide's etl job (issue 15), one run, same data: the etl transforms
# over the generator's transactions writing a Delta table vs Parquet (both partitioned by
# category), and reading the transactions as a Delta table (written by the deltalake Python
# package from the generator's Parquet) vs as Parquet. Every output is checked: row count and
# sum(total_spent) equal DuckDB's etl job on the same data (Delta outputs read by the deltalake
# Python package).
#
#   bench/delta.sh --rows 10000000 --runs 3
#
# Needs the bench data and venv (bench/run.sh makes them) and the deltalake Python package
# (.ci/run installs it into ~/.cache/kiln/tools/pydelta). Results: bench/results/delta-<rows>.md/.tsv.
source "$(dirname "$0")/common.sh"
PYDELTA=${PYDELTA:-$HOME/.cache/kiln/tools/pydelta}
[ -d "$data/transactions_delta/_delta_log" ] || PYTHONPATH=$PYDELTA python3 -c "
import pyarrow.parquet as pq
from deltalake import write_deltalake
write_deltalake('$data/transactions_delta', pq.read_table('$data/transactions.parquet'))"
work=/tmp/kiln-bench-delta
rm -rf "$work" && mkdir -p "$work"

"$PY" "$SHARED/duckdb_jobs.py" --job etl --data "$data" --out "$work/duckdb" >/dev/null
expected=$("$PY" -c "import duckdb; print(' '.join(str(x) for x in duckdb.sql(\"SELECT count(*), round(sum(total_spent), 2) FROM read_parquet('$work/duckdb/etl/**/*.parquet')\").fetchall()[0]))")

VARIANTS="parquet_to_parquet_by_category parquet_to_delta delta_to_parquet"
declare -A BIN
for v in $VARIANTS; do
  # `kiln check` reads the source's schema at the param's default: point it at the data.
  sed "s|default = \"data/transactions.parquet\"|default = \"$data/transactions.parquet\"|; s|default = \"data/transactions_delta\"|default = \"$data/transactions_delta\"|" "bench/specs/etl_$v.toml" > "$work/etl_$v.toml"
  BIN[$v]=$("$KILN" build "$work/etl_$v.toml" --release | tail -n 1)
done

check() { # dir format
  got=$(PYTHONPATH=$PYDELTA python3 -c "
import duckdb, pyarrow.dataset as ds
if '$2' == 'delta':
    from deltalake import DeltaTable
    t = DeltaTable('$1').to_pyarrow_table()
else:
    t = ds.dataset('$1', format='parquet', partitioning='hive').to_table()
print(' '.join(str(x) for x in duckdb.sql('SELECT count(*), round(sum(total_spent), 2) FROM t').fetchall()[0]))")
  [ "$got" = "$expected" ] || { echo "$1: $got, DuckDB's etl has $expected" >&2; exit 1; }
}

tsv=bench/results/delta-$ROWS.tsv
printf 'variant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for v in $VARIANTS; do
    case $v in
      delta_to_parquet) input=$data/transactions_delta ;;
      *) input=$data/transactions.parquet ;;
    esac
    out=$work/out/$v
    rm -rf "$out"
    /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${BIN[$v]}" run --param "input=$input" --param "output=$out" >/dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-bench-time
    case $v in *_to_delta) check "$out" delta ;; *) check "$out" parquet ;; esac
    printf '%s\t%s\t%s\t%s\n' "$v" "$run" "$wall" "$rss" >> "$tsv"
    echo "$v run $run: ${wall}s, $((rss / 1024)) MB" >&2
  done
done

"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'PYEOF'
import csv, statistics, sys
tsv, rows = sys.argv[1], int(sys.argv[2])
runs = {}
for r in csv.DictReader(open(tsv), delimiter='\t'):
    runs.setdefault(r['variant'], []).append((float(r['wall_s']), int(r['max_rss_kb'])))
base = statistics.median(w for w, _ in runs['parquet_to_parquet_by_category'])
print(f"# Delta vs Parquet on the etl job, {rows:,} rows (release build, 2 cores)\n")
print("Both sinks partitioned by category; the Delta source is the generator's Parquet rewritten by the deltalake "
      "Python package. Every output's row count and sum(total_spent) equal DuckDB's etl job on the same data "
      "(Delta outputs read back by the deltalake Python package).\n")
print("| variant | median wall s | vs Parquet → Parquet | median peak RSS MB |")
print("|---|---:|---:|---:|")
names = {'parquet_to_parquet_by_category': 'read Parquet, write Parquet', 'parquet_to_delta': 'read Parquet, write Delta', 'delta_to_parquet': 'read Delta, write Parquet'}
for v, label in names.items():
    w = statistics.median(x for x, _ in runs[v]); m = statistics.median(x for _, x in runs[v]) / 1024
    print(f"| {label} | {w:.2f} | {w / base:.2f}x | {m:.0f} |")
PYEOF
cat "${tsv%.tsv}.md"
