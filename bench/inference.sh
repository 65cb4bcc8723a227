#!/usr/bin/env bash
# Batch inference throughput: a 16 -> 32 -> 1 MLP (relu, sigmoid) over 1M rows at batch
# sizes 1, 32, 128, 1024, 8192 — Kiln's `predict` (candle, through DataFusion as in a
# pipeline, runtime/examples/predict_throughput.rs) vs numpy on the same features and
# weights, alternating, median of RUNS runs. Batch sizes below 1024 time the first
# SMALL rows (rows/s is what is compared).
#
#   bench/inference.sh [--runs 3] [--rows 1000000] [--small 100000]
#
# Writes bench/results/inference-<rows>.md and .tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3; ROWS=1000000; SMALL=100000; SIZES=1,32,128,1024,8192
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --small) SMALL=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
VENV=${BENCH_VENV:-/tmp/benchvenv}
PY=$VENV/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import numpy, pyarrow' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy pyarrow
fi
DATA=${BENCH_ROOT:-/tmp/benchdata}/inference_$ROWS
[ -f "$DATA/features.parquet" ] || "$PY" bench/inference_data.py "$ROWS" "$DATA"
cargo build -q --release -p kiln --example predict_throughput
KILN=$CARGO_TARGET_DIR/release/examples/predict_throughput

mkdir -p bench/results
tsv=bench/results/inference-$ROWS.tsv
printf 'engine\trun\tbatch_size\trows\tseconds\trows_per_s\n' > "$tsv"
for run in $(seq 1 "$RUNS"); do
  for p in 2 1; do
    PARTITIONS=$p "$KILN" "$DATA/features.parquet" "$DATA/mlp_16_32_1.safetensors" 16,32,1 "$SIZES" "$SMALL" \
      | awk -v r="$run" -v e="kiln_$p" -F'\t' '{print e "\t" r "\t" $1 "\t" $2 "\t" $3 "\t" $4}' >> "$tsv"
  done
  "$PY" bench/inference_numpy.py "$DATA/features.parquet" "$DATA/mlp_16_32_1.safetensors" "$SIZES" "$SMALL" \
    | awk -v r="$run" -F'\t' '{print "numpy\t" r "\t" $1 "\t" $2 "\t" $3 "\t" $4}' >> "$tsv"
done
"$PY" - "$tsv" "$ROWS" > "bench/results/inference-$ROWS.md" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for e in ("kiln_2", "kiln_1", "numpy"):
    for b in sorted({int(r["batch_size"]) for r in rows}):
        med[e, b] = statistics.median(float(r["rows_per_s"]) for r in rows if r["engine"] == e and int(r["batch_size"]) == b)
print(f"# Batch inference: MLP 16 -> 32 -> 1 over {int(sys.argv[2]):,} rows (median of {len(rows) // 15} runs)\n")
print("Kiln: `predict` through DataFusion with 2 partitions (both cores) and with 1 (runtime/examples/predict_throughput.rs);")
print("numpy: float32 batches, `x @ W.T + b` per layer. Same features, same weights. Produced by bench/inference.sh.\n")
print("| batch size | Kiln rows/s (2 partitions) | Kiln rows/s (1 partition) | numpy rows/s | Kiln / numpy | Kiln 1 partition / numpy |")
print("|---:|---:|---:|---:|---:|---:|")
for b in sorted({b for _, b in med}):
    k2, k1, n = med['kiln_2', b], med['kiln_1', b], med['numpy', b]
    print(f"| {b} | {k2:,.0f} | {k1:,.0f} | {n:,.0f} | {k2 / n:.2f}x | {k1 / n:.2f}x |")
PYEOF
cat "bench/results/inference-$ROWS.md"
