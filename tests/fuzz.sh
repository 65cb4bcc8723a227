#!/usr/bin/env bash
# A long fuzzing campaign of `kiln check` (compiler/tests/fuzz.rs): mutants of every known spec
# through the whole pass chain and code generation; any panic or abort fails.
#   tests/fuzz.sh [ITERATIONS] [SEED]     (default 20000 mutants, seed 1; `cargo test` runs 400)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}"
KILN_FUZZ_ITERS="${1:-20000}" KILN_FUZZ_SEED="${2:-1}" \
  cargo test -p kiln-compiler --test fuzz -- mutants_of_every_known_spec_never_panic --nocapture
