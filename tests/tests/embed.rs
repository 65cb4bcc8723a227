//! Pipelines embedded in a Rust program (SPEC.md §9), through both paths:
//! tests/embed is a crate that depends on `kiln` alone (plus the compiler as a
//! build-dependency), includes specs/etl.toml with `kiln::include_pipeline!` and
//! specs/risk.toml (with its #[kiln::udf] file) through build.rs. Its outputs
//! must equal DuckDB's. A bad spec in `include_pipeline!` must fail the build
//! with the spec's file, line and column.

use std::path::Path;
use std::process::Command;

use kiln_tests::{Cell, read_expected_csv, read_parquet_rows, repo_root, sorted};

/// Held by each test that runs cargo: the compile-fail test adds a crate to the
/// workspace's `generated/*` and removes it, and a cargo run meanwhile fails to
/// load the half-written (or half-removed) member (CI saw it).
static CARGO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    // Not this test's package variables: ring's build script watches CARGO_MANIFEST_DIR,
    // and a change rebuilds it and DataFusion above it (see `kiln_compiler::job`).
    for (key, _) in std::env::vars_os() {
        if kiln_compiler::job::inherited_package_var(&key.to_string_lossy()) {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

fn canonical(rows: Vec<kiln_tests::Row>) -> Vec<kiln_tests::Row> {
    sorted(
        rows.into_iter()
            .map(|r| r.into_iter().map(|(k, v)| if v == Cell::Str("__HIVE_DEFAULT_PARTITION__".into()) { (k, Cell::Null) } else { (k, v) }).collect())
            .collect(),
    )
}

#[test]
fn embedded_pipelines_match_duckdb() {
    let _cargo = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    let status = cargo().args(["build", "-p", "kiln-example-embed"]).status().unwrap();
    assert!(status.success(), "the example crate builds");
    let out = tempfile::tempdir().unwrap();
    let root = repo_root();
    let output = Command::new(target_dir().join("debug/kiln-example-embed")).arg(root.join("specs/data")).arg(out.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // build(): every node of etl planned on the program's own session.
    assert!(stdout.contains("etl nodes: cleaned, customer_category, deduped, transactions, valid"), "{stdout}");

    let compare = |got: &Path, expected: &Path| {
        let got = canonical(read_parquet_rows(got));
        let want = canonical(read_expected_csv(expected));
        assert_eq!(got.len(), want.len(), "{}", expected.display());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{}", expected.display());
        }
    };
    compare(&out.path().join("etl"), &root.join("tests/fixtures/guide/etl/customer_category.csv"));
    compare(&out.path().join("risk/bands.parquet"), &root.join("tests/fixtures/risk/bands.csv"));
}

#[test]
fn a_bad_spec_in_include_pipeline_fails_the_build_at_its_line() {
    let _cargo = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    // A crate of generated/ (a workspace member, git-ignored), so it shares the target directory.
    let dir = repo_root().join("generated/compile_fail_include");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "# Written by tests/tests/embed.rs.\n[package]\nname = \"kiln-compile-fail-include\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\nkiln = { path = \"../../runtime/facade\" }\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "kiln::include_pipeline!(\"bad.toml\");\n\nfn main() {}\n").unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        "[pipeline]\nname = \"bad\"\n\n[sources.people]\nformat = \"inline\"\nrows = [ { name = \"ada\", age = 36 } ]\n\n[transforms.adults]\ntype = \"filter\"\ninput = \"people\"\npredicate = \"agee >= 18\"\n\n[sinks.out]\ninput = \"adults\"\nformat = \"console\"\n",
    )
    .unwrap();
    let output = cargo().args(["build", "-p", "kiln-compile-fail-include"]).output().unwrap();
    // A crate that cannot build would break `cargo build --workspace` for whoever comes next.
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the build must fail");
    assert!(stderr.contains("kiln: bad.toml does not check"), "{stderr}");
    assert!(stderr.contains("bad.toml:11:14: unknown column `agee`"), "{stderr}");
    assert!(stderr.contains("did you mean `age`?"), "{stderr}");
}

#[test]
fn the_build_script_builder_reports_spec_errors_and_writes_modules() {
    let out = tempfile::tempdir().unwrap();
    let root = repo_root();
    let written = kiln_compiler::Build::new().spec(root.join("specs/risk.toml")).out_dir(out.path()).try_compile().unwrap();
    assert_eq!(written, vec![out.path().join("risk.rs")]);
    let text = std::fs::read_to_string(&written[0]).unwrap();
    for item in ["pub mod risk", "pub fn pipeline()", "pub async fn build(", "pub async fn run(", "risk_band_udf()"] {
        assert!(text.contains(item), "{item} in\n{text}");
    }
    let err = kiln_compiler::Build::new().spec(root.join("tests/diagnostics/unknown_column.toml")).out_dir(out.path()).try_compile().unwrap_err();
    assert!(err.contains("unknown_column.toml:") && err.contains("unknown column"), "{err}");
}
