//! `kiln init`: a starter pipeline in a new or existing repository (issue 20) —
//! a spec with tests, sample data, `.gitignore` entries, and a GitHub Actions
//! workflow that checks and tests every spec. Existing files are never
//! overwritten (an existing `.gitignore` gains the missing lines).

use std::path::{Path, PathBuf};

const SPEC: &str = r#"# A starter pipeline written by `kiln init`: read orders, keep the paid ones, total
# them per country, write one Parquet file.
#
#   kiln check pipelines/orders.toml     validate (every error at once, no data read)
#   kiln test pipelines/orders.toml      run the [[tests]] below, in-process
#   kiln run pipelines/orders.toml       build the binary (./target/kiln/orders) and run it here
#
# Relative paths are read from this file's directory (`kiln run` runs the binary there).

[pipeline]
name = "orders"
description = "Paid orders per country"

[params.input]
default = "data/orders.csv"
env = "ORDERS_INPUT"
description = "orders CSV (file, directory, glob, or an s3:// URL)"

[params.output]
default = "out/paid_by_country.parquet"
env = "ORDERS_OUTPUT"

[sources.orders]
format = "csv"
path = "${params.input}"
header = true
schema = { order_id = "int64", country = "string", amount = "float64", status = "string" }

[transforms.paid]
type = "filter"
input = "orders"
predicate = "status = 'paid' AND amount IS NOT NULL"

[transforms.by_country]
type = "aggregate"
input = "paid"
group_by = ["country"]
aggregates.orders = "count(*)"
aggregates.revenue = "sum(amount)"

[sinks.paid_by_country]
input = "by_country"
format = "parquet"
path = "${params.output}"
single_file = true

[[tests]]
name = "only paid orders with an amount count"
inputs.orders.rows = [
  { order_id = 1, country = "FR", amount = 10.0, status = "paid" },
  { order_id = 2, country = "FR", amount = 5.0, status = "refunded" },
  { order_id = 3, country = "FR", status = "paid" },
  { order_id = 4, country = "DE", amount = 2.5, status = "paid" },
]
expect.by_country.rows = [
  { country = "FR", orders = 1, revenue = 10.0 },
  { country = "DE", orders = 1, revenue = 2.5 },
]
"#;

const DATA: &str = "order_id,country,amount,status
1,FR,10.5,paid
2,FR,20.0,paid
3,DE,7.25,refunded
4,DE,30.0,paid
5,US,100.0,paid
6,US,,paid
7,FR,5.0,pending
8,US,50.0,paid
";

const WORKFLOW: &str = r#"# Written by `kiln init`: checks and tests every pipeline on each push and pull request.
name: pipelines
on: [push, pull_request]

env:
  # The Kiln that `cargo install` builds (a repository, or a mirror of it), and the commit
  # or tag of it (empty: its default branch). Pin KILN_REV to the Kiln you tested with:
  # the cache below is keyed by both, so changing either installs that Kiln afresh.
  KILN_GIT: KILN_GIT_URL
  KILN_REV: "KILN_GIT_REV"

jobs:
  check-and-test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      # kiln itself, and Kiln's home (~/.cache/kiln: the runtime and the shared target
      # directory its job builds use), so that later runs compile nothing.
      - uses: actions/cache@v4
        with:
          path: |
            ~/.cargo/bin/kiln
            ~/.cargo/registry
            ~/.cargo/git
            ~/.cache/kiln
            target
          key: kiln-${{ runner.os }}-${{ env.KILN_GIT }}-${{ env.KILN_REV }}-${{ hashFiles('pipelines/**') }}
          restore-keys: kiln-${{ runner.os }}-${{ env.KILN_GIT }}-${{ env.KILN_REV }}-
      - name: Install kiln
        run: command -v kiln || cargo install --locked --git "$KILN_GIT" ${KILN_REV:+--rev "$KILN_REV"} kiln-compiler
      - name: Check and test every pipeline
        run: |
          for spec in pipelines/*.toml; do
            kiln check "$spec"
            kiln test "$spec"
          done
"#;

/// Lines `.gitignore` needs: Kiln's binaries and the sample pipeline's output.
const IGNORE: &[&str] = &["/target/", "/pipelines/out/"];

/// Writes the starter files into `root`; returns what it wrote or changed.
pub fn init(root: &Path, kiln_git: &str, kiln_rev: &str) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let files = [
        ("pipelines/orders.toml", SPEC.to_string()),
        ("pipelines/data/orders.csv", DATA.to_string()),
        (".github/workflows/kiln.yml", WORKFLOW.replace("KILN_GIT_URL", kiln_git).replace("KILN_GIT_REV", kiln_rev)),
    ];
    for (rel, content) in files {
        let path = root.join(rel);
        if path.exists() {
            eprintln!("kept {} (it exists)", path.display());
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    let ignore = root.join(".gitignore");
    let have = std::fs::read_to_string(&ignore).unwrap_or_default();
    let missing: Vec<&str> = IGNORE.iter().copied().filter(|l| !have.lines().any(|h| h.trim() == *l)).collect();
    if !missing.is_empty() {
        let sep = if have.is_empty() || have.ends_with('\n') { "" } else { "\n" };
        let text = format!("{have}{sep}# Kiln: job binaries and the sample pipeline's output\n{}\n", missing.join("\n"));
        std::fs::write(&ignore, text).map_err(|e| format!("cannot write {}: {e}", ignore.display()))?;
        written.push(ignore);
    }
    Ok(written)
}

/// Where `cargo install --git` finds Kiln: the origin of the checkout kiln was
/// built from when others can reach it (`KILN_GIT_URL`), else the package's
/// `repository`.
pub fn default_git() -> &'static str {
    option_env!("KILN_GIT_URL").filter(|u| !u.is_empty()).unwrap_or(env!("CARGO_PKG_REPOSITORY"))
}

/// A note for `kiln init` and `kiln deploy` when the URL is the package's
/// `repository` rather than where this kiln came from (a `cargo install --git` of a
/// fork or a mirror pins a commit that URL may not have).
pub fn fallback_note(what: &str) -> Option<String> {
    option_env!("KILN_GIT_URL").filter(|u| !u.is_empty()).is_none().then(|| {
        format!("note: {what} installs Kiln from {} (this kiln's package repository); pass --kiln-git URL (and --kiln-rev) if it came from a fork or a mirror", default_git())
    })
}

/// The Kiln commit the workflow and the image install: the commit this kiln was
/// built from when `cargo install --git` built it (`KILN_GIT_REV`); empty (the
/// repository's default branch) for a build from a working tree, which may hold
/// changes no commit has.
pub fn default_rev() -> &'static str {
    option_env!("KILN_GIT_REV").unwrap_or("")
}
