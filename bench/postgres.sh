#!/usr/bin/env bash
# PostgreSQL in and out (issue 18), one run, same machine, same table:
#   read:  Kiln (binary COPY on 4 connections, and on 1) → Parquet, next to
#          psql's binary COPY to /dev/null (the server's and the wire's floor) and
#          psql's CSV COPY + DuckDB CSV → Parquet (what a script would do without Kiln);
#   write: Kiln (Parquet → TRUNCATE + binary COPY in one transaction) next to
#          psql's CSV COPY FROM a file.
# Every Kiln output is checked: row count and sum(amount) equal the table's (DuckDB vs psql).
#
#   bench/postgres.sh --rows 10000000 --runs 3 [--dtp]
#
# --dtp adds datafusion-table-providers' PostgreSQL provider (bench/pg_dtp, the other
# route issue 18 named), built on first use into its own target directory (its own
# DataFusion: ~35 min cold on 2 cores).
#
# Needs Debian's postgresql (initdb, pg_ctl, psql) and the bench venv (bench/run.sh makes it).
# Results: bench/results/postgres-<rows>.md and .tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=10000000
RUNS=3
DTP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dtp) DTP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
[ -x "$PY" ] || PY=python3
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=/tmp/kiln-bench-pg
rm -rf "$work" && mkdir -p "$work"

# A fresh cluster on a free port (initdb refuses root: run it as postgres).
pgdir=$(mktemp -d /tmp/kiln-bench-pgdata.XXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$pgdir/data" -U postgres -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c shared_buffers=512MB" start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null; rm -rf "$pgdir"' EXIT
psql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
export KILN_BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
psql -c "CREATE TABLE bench_orders AS
  SELECT g::bigint AS id, (g % 100000)::int AS customer_id, ((g::bigint * 7919) % 100000 / 100.0)::numeric(12,2) AS amount,
         (ARRAY['open','done','cancelled'])[1 + g % 3] AS status,
         timestamptz '2024-01-01 00:00:00+00' + (g % 31536000) * interval '1 second' AS ts
  FROM generate_series(1, $ROWS) g" \
  -c "ALTER TABLE bench_orders ADD PRIMARY KEY (id)" -c "VACUUM ANALYZE bench_orders" -c "CREATE TABLE bench_copy (LIKE bench_orders)"
expected=$(psql -c "SELECT count(*) || ' ' || sum(amount) FROM bench_orders")

cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
READ=$("$KILN" build bench/specs/pg_read.toml --release | tail -n 1)
SERIAL=$("$KILN" build bench/specs/pg_read_serial.toml --release | tail -n 1)
TWO=$("$KILN" build bench/specs/pg_read_2.toml --release | tail -n 1)
if [ "$DTP" = 1 ]; then
  DTP_TARGET=${KILN_DTP_TARGET:-$HOME/.cache/kiln/pg-dtp-target}
  cargo build -q --release --manifest-path bench/pg_dtp/Cargo.toml --target-dir "$DTP_TARGET"
  DTP_BIN=$DTP_TARGET/release/kiln-bench-pg-dtp
fi
# The write job's source is the read job's output: build it once that exists.
"$READ" run --param "output=$work/read" >/dev/null 2>&1
WRITE=$("$KILN" build bench/specs/pg_write.toml --release | tail -n 1)

check_parquet() {
  got=$("$PY" -c "import duckdb,sys; print(' '.join(str(x) for x in duckdb.sql(\"SELECT count(*), sum(amount) FROM read_parquet('$1/**/*.parquet')\").fetchall()[0]))")
  [ "$got" = "$expected" ] || { echo "$1: $got, table has $expected" >&2; exit 1; }
}
tsv=bench/results/postgres-$ROWS.tsv
printf 'variant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
timed() {  # variant run cmd...
  local v=$1 r=$2; shift 2
  /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "$@" > /dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
  read -r wall rss < /tmp/kiln-bench-time
  printf '%s\t%s\t%s\t%s\n' "$v" "$r" "$wall" "$rss" >> "$tsv"
  echo "rows=$ROWS $v run $r: ${wall}s, $((rss / 1024)) MB" >&2
}
for run in $(seq 1 "$RUNS"); do
  timed "read: kiln, 4 ranges" "$run" "$READ" run --param "output=$work/read"
  check_parquet "$work/read"
  timed "read: kiln, 2 ranges" "$run" "$TWO" run --param "output=$work/read2"
  check_parquet "$work/read2"
  timed "read: kiln, 1 connection" "$run" "$SERIAL" run --param "output=$work/serial"
  check_parquet "$work/serial"
  if [ "$DTP" = 1 ]; then
    rm -rf "$work/dtp"
    timed "read: datafusion-table-providers 0.15 → Parquet" "$run" "$DTP_BIN" "$port" "$work/dtp"
    check_parquet "$work/dtp"
  fi
  timed "read: psql binary COPY to /dev/null" "$run" "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -c "\\copy bench_orders TO '/dev/null' (FORMAT binary)"
  timed "read: psql CSV COPY + DuckDB to Parquet" "$run" bash -c "'$PGBIN/psql' -X -q -h 127.0.0.1 -p $port -U postgres -c \"\\copy bench_orders TO '$work/orders.csv' (FORMAT csv, HEADER)\" && '$PY' -c \"import duckdb; duckdb.sql(\\\"COPY (SELECT * FROM read_csv('$work/orders.csv')) TO '$work/duck.parquet' (FORMAT parquet)\\\")\""
  timed "write: kiln, TRUNCATE + binary COPY" "$run" "$WRITE" run --param "input=$work/read"
  [ "$(psql -c "SELECT count(*) || ' ' || sum(amount) FROM bench_copy")" = "$expected" ] || { echo "bench_copy differs from bench_orders" >&2; exit 1; }
  timed "write: psql CSV COPY FROM a file" "$run" bash -c "'$PGBIN/psql' -X -q -h 127.0.0.1 -p $port -U postgres -c 'TRUNCATE bench_copy' -c \"\\copy bench_copy FROM '$work/orders.csv' (FORMAT csv, HEADER)\""
done
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'PYEOF'
import csv, statistics, sys
runs = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs.setdefault(r["variant"], []).append((float(r["wall_s"]), int(r["max_rss_kb"])))
print(f"# PostgreSQL in and out, {int(sys.argv[2]):,} rows (release build, 2 cores, server on the same machine)\n")
print("| variant | median wall s | median peak RSS MB | rows/s |\n|---|---:|---:|---:|")
for v, rs in runs.items():
    w = statistics.median(x for x, _ in rs)
    m = statistics.median(x for _, x in rs) / 1024
    print(f"| {v} | {w:.2f} | {m:.0f} | {int(sys.argv[2]) / w:,.0f} |")
PYEOF
cat "${tsv%.tsv}.md"
