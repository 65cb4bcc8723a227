# Sourced by bench/joins.sh, udf.sh, cluster.sh and delta.sh: `--rows N --runs N` (defaults ROWS=10000000,
# RUNS=3), the shared paths, the venv made by bench/run.sh, the guide's data generated if missing
# ($data), and a dev build of kiln ($KILN).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED_BENCH:-$(pwd)/../shared/bench}
ROWS=${ROWS:-10000000}
RUNS=${RUNS:-3}
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
BENCH_ROOT=${BENCH_ROOT:-/tmp/benchdata}
PY=${BENCH_VENV:-/tmp/benchvenv}/bin/python
[ -x "$PY" ] || { echo "run bench/run.sh once first (it creates the venv)" >&2; exit 2; }
cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
data=$BENCH_ROOT/rows_$ROWS
[ -f "$data/_GENERATED" ] || "$PY" "$SHARED/gen_data.py" --rows "$ROWS" --out "$data"
