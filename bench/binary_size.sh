#!/usr/bin/env bash
# Release binary sizes of the guide's jobs (issue 20/21): each spec built with
# `kiln build --release`, a stripped copy measured, and for the first one what its
# size is made of: ELF sections (`size -A`) and symbols summed by crate (`nm -S -C`,
# the first path segment of each demangled name; generic code instantiated from core
# and alloc counts as theirs).
#
#   bench/binary_size.sh                       # the guide's five jobs + clickstream, a Delta and a Kafka job
#   bench/binary_size.sh specs/etl.toml
#
# Results: bench/results/binary-size.md
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
specs=("$@")
# The guide's jobs, then one with Delta tables and one with a Kafka source: a job links the
# runtime's optional parts (features `delta`, `kafka`) only when its spec uses them.
[ ${#specs[@]} -gt 0 ] || specs=(specs/etl.toml specs/broadcast_join.toml specs/skew_join.toml specs/windows.toml specs/quality.toml specs/clickstream.toml tests/delta/cluster.toml tests/streaming/kafka_clicks.toml)
cargo build -q -p kiln-compiler
# Jobs build against this checkout's runtime even when debug/kiln came from another
# checkout sharing the target directory (cargo then keeps that build, and kiln would
# build in its home from the runtime it carries).
export KILN_WORKSPACE=$PWD
KILN=$CARGO_TARGET_DIR/debug/kiln
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=bench/results/binary-size.md
{
  echo "# Release binary sizes ($(date -u +%Y-%m-%d), rustc $(rustc --version | cut -d' ' -f2), kiln $(git rev-parse --short HEAD))"
  echo
  echo "| job | runtime features | binary MiB | stripped MiB |"
  echo "|---|---|---:|---:|"
} > "$out"
first=
for spec in "${specs[@]}"; do
  bin=$("$KILN" build --release "$spec" 2>/dev/null | tail -n 1)
  name=$(basename "$bin")
  cp "$bin" "$tmp/$name"
  strip "$tmp/$name"
  features=$(grep -o 'features = \[[^]]*\]' "generated/$name/Cargo.toml" | sed 's/features = \[//; s/\]//; s/"//g' || true)
  printf '| %s | %s | %.1f | %.1f |\n' "$name" "${features:-none}" "$(echo "$(stat -c %s "$bin") / 1048576" | bc -l)" "$(echo "$(stat -c %s "$tmp/$name") / 1048576" | bc -l)" >> "$out"
  [ -n "$first" ] || first=$bin
done
{
  echo
  echo "## What $(basename "$first") is made of"
  echo
  echo "Sections over 1 MiB (\`size -A\`):"
  echo
  echo "| section | MiB |"
  echo "|---|---:|"
  size -A "$first" | awk '$1 ~ /^\./ && $2 > 1048576 { printf "| %s | %.1f |\n", $1, $2 / 1048576 }'
  echo
  echo "Code and data by crate (\`nm -S -C\`, symbols summed by the first path segment; top 15):"
  echo
  echo "| crate | MiB |"
  echo "|---|---:|"
  nm -S -C --size-sort "$first" 2>/dev/null | python3 -c '
import collections, re, sys
sizes = collections.Counter()
for line in sys.stdin:
    parts = line.split(None, 3)
    if len(parts) < 4:
        continue
    name = parts[3].strip()
    # <T as Trait>::f and <T>::f: the implementing type decides.
    name = re.sub(r"^<(impl )?", "", name)
    name = name.lstrip("&*").replace("dyn ", "").replace("mut ", "")
    crate = re.split(r"::|<| |\(", name, 1)[0] or "?"
    sizes[crate] += int(parts[1], 16)
for crate, n in sizes.most_common(15):
    print(f"| {crate} | {n / 1048576:.1f} |")
'
} >> "$out"
cat "$out"
