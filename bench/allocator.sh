#!/usr/bin/env bash
# The global allocator trial (issue 21): each guide job built twice in release — with the
# system allocator (glibc malloc, what `kiln build` generates) and with mimalloc
# (`#[global_allocator] static GLOBAL: kiln::MiMalloc = kiln::MiMalloc;` added to the generated
# main) — and run alternately on the same data, RUNS times each. Reports median wall time and
# peak RSS of both and their ratio. The generated crates are restored (`kiln build`) at the end.
#
#   bench/allocator.sh --rows 10000000 --runs 3
#
# Results: bench/results/allocator-<rows>.md and .tsv.
source "$(dirname "$0")/common.sh"
JOBS=${JOBS:-"etl broadcast_join skew_join windows quality"}
out=$BENCH_ROOT/out/alloc_$ROWS
bins=$BENCH_ROOT/alloc_bins
mkdir -p "$bins/system" "$bins/mimalloc"
for job in $JOBS; do
  cp "$("$KILN" build "specs/$job.toml" --release | tail -n 1)" "$bins/system/$job"
  main=generated/$job/src/main.rs
  sed -i 's|^use kiln::prelude::\*;|use kiln::prelude::*;\n#[global_allocator]\nstatic GLOBAL: kiln::MiMalloc = kiln::MiMalloc;|' "$main"
  pkg=$(sed -n 's/^name = "\(.*\)"/\1/p' "generated/$job/Cargo.toml" | head -n 1)
  bin=$(sed -n '/\[\[bin\]\]/,/path/s/^name = "\(.*\)"/\1/p' "generated/$job/Cargo.toml")
  cargo build -q --release -p "$pkg"
  cp "$CARGO_TARGET_DIR/release/$bin" "$bins/mimalloc/$job"
  "$KILN" build "specs/$job.toml" --release > /dev/null  # back to the generated main
done

tsv=bench/results/allocator-$ROWS.tsv
printf 'job\tallocator\trun\twall_s\tmax_rss_kb\n' > "$tsv"
for job in $JOBS; do
  for run in $(seq 1 "$RUNS"); do
    for alloc in system mimalloc; do
      if [ "$job" = etl ]; then io=(--param "input=$data/transactions.csv" --param "output=$out/$alloc/$job/customer_category.parquet")
      else io=(--param "data=$data" --param "output=$out/$alloc/$job"); fi
      /usr/bin/time -f '%e %M' -o /tmp/kiln-alloc-time "$bins/$alloc/$job" run "${io[@]}" > /dev/null
      read -r wall rss < /tmp/kiln-alloc-time
      printf '%s\t%s\t%s\t%s\t%s\n' "$job" "$alloc" "$run" "$wall" "$rss" >> "$tsv"
      echo "$job $alloc run $run: ${wall}s, $((rss / 1024)) MB" >&2
    done
  done
done
"$PY" - "$tsv" "$ROWS" > "${tsv%.tsv}.md" <<'EOF'
import csv, statistics, sys
tsv, rows = sys.argv[1:]
runs = list(csv.DictReader(open(tsv), delimiter="\t"))
med = lambda job, alloc, key: statistics.median(float(r[key]) for r in runs if r["job"] == job and r["allocator"] == alloc)
print(f"### Global allocator, {int(rows):,} rows (median of {max(int(r['run']) for r in runs)} runs, release, 2 threads)\n")
print("| job | system wall s | mimalloc wall s | wall ratio | system RSS MB | mimalloc RSS MB | RSS ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for job in dict.fromkeys(r["job"] for r in runs):
    sw, mw = med(job, "system", "wall_s"), med(job, "mimalloc", "wall_s")
    sr, mr = med(job, "system", "max_rss_kb") / 1024, med(job, "mimalloc", "max_rss_kb") / 1024
    print(f"| {job} | {sw:.2f} | {mw:.2f} | {mw / sw:.2f}x | {sr:.0f} | {mr:.0f} | {mr / sr:.2f}x |")
EOF
cat "${tsv%.tsv}.md"
