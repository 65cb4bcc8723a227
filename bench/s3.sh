#!/usr/bin/env bash
# The etl job with its input and output on an S3 server (s3s-fs on loopback, over a directory on
# the same disk) next to the same binary on local files, in one run; both outputs are compared
# row for row (DuckDB), and DuckDB's own etl job is timed beside them for scale.
#
#   bench/s3.sh --rows 10000000 --runs 3
#
# What it measures: the object-store path (HTTP range reads of the CSV, multipart uploads of the
# parts, the manifest commit's server-side copies) against plain file IO. s3s-fs is a local
# server, so network latency is not in the figures; a real bucket adds it.
# Results: bench/results/s3-<rows>.md and .tsv.
source "$(dirname "$0")/common.sh"
S3S=${KILN_S3S_FS:-$HOME/.cache/kiln/tools/bin/s3s-fs}
[ -x "$S3S" ] || CARGO_TARGET_DIR="$HOME/.cache/kiln/tools-target" cargo install s3s-fs@0.14.1 --features binary --locked --root "$HOME/.cache/kiln/tools"
BIN=$("$KILN" build specs/etl.toml --release | tail -n 1)

root=$BENCH_ROOT/s3root
rm -rf "$root" && mkdir -p "$root/bench/in"
cp "$data/transactions.csv" "$root/bench/in/transactions.csv"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$S3S" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$root" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ALLOW_HTTP=true

out=$BENCH_ROOT/out/s3_$ROWS
rm -rf "$out" && mkdir -p "$out"
tsv=bench/results/s3-$ROWS.tsv
printf 'variant\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for variant in local s3 duckdb; do
    case $variant in
      local) cmd=("$BIN" run --param "input=$data/transactions.csv" --param "output=$out/local") ;;
      s3) cmd=("$BIN" run --param "input=s3://bench/in/transactions.csv" --param "output=s3://bench/out") ;;
      duckdb) cmd=("$PY" "$SHARED/duckdb_jobs.py" --job etl --data "$data" --out "$out/duckdb") ;;
    esac
    /usr/bin/time -f '%e %M' -o /tmp/kiln-bench-time "${cmd[@]}" > /dev/null 2>/tmp/kiln-bench-err || { cat /tmp/kiln-bench-err >&2; exit 1; }
    read -r wall rss < /tmp/kiln-bench-time
    printf '%s\t%s\t%s\t%s\n' "$variant" "$run" "$wall" "$rss" >> "$tsv"
    echo "rows=$ROWS $variant run $run: ${wall}s, $((rss / 1024)) MB" >&2
  done
done
# The committed S3 output (the files its manifest names) must equal the local one: the same
# (customer, category) groups and counts, sums within 1e-9 relative (float sums add in another order).
"$PY" - "$out/local" "$root/bench/out" <<'EOF'
import duckdb, json, sys
local, s3 = sys.argv[1], sys.argv[2]
files = [f"{s3}/{f}" for f in json.load(open(f"{s3}/_kiln_manifest.json"))["files"]]
con = duckdb.connect()
con.execute(f"CREATE VIEW l AS SELECT * FROM read_parquet('{local}/**/*.parquet', hive_partitioning=1)")
con.execute(f"CREATE VIEW r AS SELECT * FROM read_parquet({files}, hive_partitioning=1)")
n_l, n_r = con.execute("SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM r)").fetchone()
# (A null category is a group of its own: its rows join with IS NOT DISTINCT FROM.)
same = con.execute("""SELECT count(*) FROM l JOIN r ON l.customer_id = r.customer_id AND l.category IS NOT DISTINCT FROM r.category
  WHERE l.transaction_count = r.transaction_count
    AND abs(l.total_spent - r.total_spent) <= 1e-9 * greatest(abs(l.total_spent), 1)
    AND abs(l.avg_transaction - r.avg_transaction) <= 1e-9 * greatest(abs(l.avg_transaction), 1)""").fetchone()[0]
bad = n_l - same
assert n_l == n_r and bad == 0, f"outputs differ: {n_l} vs {n_r} rows, {bad} groups differ"
print(f"outputs agree: {n_r} rows")
EOF
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'EOF'
import csv, statistics, sys
runs = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs.setdefault(r["variant"], []).append((float(r["wall_s"]), int(r["max_rss_kb"])))
base = statistics.median(w for w, _ in runs["local"])
print(f"# etl, {int(sys.argv[2]):,} rows: local files vs S3 (s3s-fs on loopback)\n")
print("| variant | median wall s | median peak RSS MB | vs kiln local |\n|---|---:|---:|---:|")
for v, rs in runs.items():
    w = statistics.median(x for x, _ in rs)
    m = statistics.median(x for _, x in rs) / 1024
    print(f"| {v} | {w:.2f} | {m:.0f} | {w / base:.2f}x |")
EOF
cat "${tsv%.tsv}.md"
