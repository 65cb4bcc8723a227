//! specs/etl.toml end to end: `kiln build` the binary, run it on a fixture,
//! and compare its output with rows computed independently by DuckDB
//! (tests/fixtures/etl/make_expected.py; the fixture is small enough to check by hand).

use std::path::Path;
use std::process::Command;

use kiln_tests::{build_job, read_expected_csv, read_parquet_rows, repo_root, snapshot_tree, sorted};

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures/etl").join(name)
}

fn run(binary: &Path, input: &Path, output: &Path) -> std::process::Output {
    Command::new(binary)
        .arg("run")
        .arg("--param")
        .arg(format!("input={}", input.display()))
        .arg("--param")
        .arg(format!("output={}", output.display()))
        .output()
        .unwrap()
}

#[test]
fn etl_output_matches_duckdb() {
    let binary = build_job("specs/etl.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("customer_category");
    let result = run(&binary, &fixture("transactions.csv"), &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stderr).contains("7 rows"));

    let actual = sorted(read_parquet_rows(&out));
    let expected = sorted(read_expected_csv(&fixture("expected.csv")));
    assert_eq!(actual, expected);
    // Hive-style layout: one directory per category, nulls under Spark's name.
    let mut dirs: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    dirs.sort();
    assert_eq!(dirs, ["category=A", "category=B", "category=C", "category=D", "category=E", "category=__HIVE_DEFAULT_PARTITION__"]);
    // Nothing but the output beside it: the staging directory is gone.
    let siblings: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(siblings, [std::ffi::OsString::from("customer_category")]);
}

/// The etl binary, a temp dir, and a successful run's output in it (path and files).
fn with_previous_output() -> (std::path::PathBuf, tempfile::TempDir, std::path::PathBuf, std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>) {
    let binary = build_job("specs/etl.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("customer_category");
    let good = run(&binary, &fixture("transactions.csv"), &out);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let before = snapshot_tree(&out);
    assert!(!before.is_empty());
    (binary, dir, out, before)
}

#[test]
fn failed_run_leaves_previous_output_untouched() {
    let (binary, dir, out, before) = with_previous_output();

    // Same data plus one row whose date does not parse: to_date fails part-way through the run.
    let bad = dir.path().join("bad.csv");
    let mut text = std::fs::read_to_string(fixture("transactions.csv")).unwrap();
    text.push_str("T99,C9,10.00,2024-02-30,A\n");
    std::fs::write(&bad, text).unwrap();
    let failed = run(&binary, &bad, &out);
    assert_eq!(failed.status.code(), Some(1), "{}", String::from_utf8_lossy(&failed.stderr));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("2024-02-30"), "the error names the bad value: {stderr}");

    assert_eq!(snapshot_tree(&out), before, "the previous output changed");
    let mut siblings: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    siblings.sort();
    assert_eq!(siblings, [std::ffi::OsString::from("bad.csv"), std::ffi::OsString::from("customer_category")], "no staging left behind");
}

#[test]
fn version_names_the_spec_hash() {
    let binary = build_job("specs/etl.toml");
    let out = Command::new(&binary).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let spec = std::fs::read_to_string(repo_root().join("specs/etl.toml")).unwrap();
    assert!(text.contains(&kiln_compiler::spec_hash(&spec)), "{text}");
    assert!(text.starts_with("etl (kiln "), "{text}");
}

#[test]
fn explain_shows_the_plan() {
    let binary = build_job("specs/etl.toml");
    let out = Command::new(&binary)
        .args(["explain", "--param"])
        .arg(format!("input={}", fixture("transactions.csv").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("== sink `by_category`"), "{text}");
    assert!(text.contains("deduped: dedupe <- cleaned"), "{text}");
    assert!(text.contains("customer_category: aggregate <- deduped\n    (customer_id Utf8, category Utf8, total_spent Float64, avg_transaction Float64, transaction_count Int64)"), "{text}");
    assert!(text.contains("AggregateExec"), "{text}");
    assert!(text.contains("transactions.csv"), "{text}");
}

#[test]
fn bad_params_are_usage_errors() {
    let binary = build_job("specs/etl.toml");
    let out = Command::new(&binary).args(["run", "--param", "nope=1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown parameter `nope`"));
}

#[test]
fn a_bad_row_is_named_by_file_and_line() {
    let binary = build_job("specs/etl.toml");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    let mut text = std::fs::read_to_string(fixture("transactions.csv")).unwrap();
    text.push_str("T98,C9,12.00,2024-02-03,A\nT99,C9,twelve,2024-02-03,A\n");
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("out");
    let failed = run(&binary, &bad, &out);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    // The header is line 1 and the fixture has 18 rows, so the bad row is line 21.
    assert!(stderr.contains(&format!("{}:21: bad row in source `transactions`", bad.display())), "{stderr}");
    assert!(stderr.contains("`twelve`") && stderr.contains("`amount`"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn killed_run_leaves_previous_output_untouched() {
    use std::io::Write;
    let (binary, dir, out, before) = with_previous_output();

    // Enough rows that the (dev-profile) run is still writing when it is killed.
    let big = dir.path().join("big.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    writeln!(w, "transaction_id,customer_id,amount,date,category").unwrap();
    for i in 0..400_000u32 {
        writeln!(w, "T{i:09},C{:05},{}.{:02},2024-{:02}-{:02},{}", i % 5000, i % 997, i % 100, 1 + i % 12, 1 + i % 28, ["A", "B", "C"][(i % 3) as usize]).unwrap();
    }
    drop(w);
    let mut child = Command::new(&binary)
        .arg("run")
        .arg("--param")
        .arg(format!("input={}", big.display()))
        .arg("--param")
        .arg(format!("output={}", out.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run is writing (its staging directory exists), then SIGKILL it.
    let staging = || {
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("kiln-staging"))
    };
    let started = std::time::Instant::now();
    while !staging() {
        assert!(child.try_wait().unwrap().is_none(), "the run finished before it could be killed; make the input bigger");
        assert!(started.elapsed().as_secs() < 60, "the run never started writing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(snapshot_tree(&out), before, "the previous output changed");
    // The next run cleans up what the killed one left beside the target.
    let again = run(&binary, &fixture("transactions.csv"), &out);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!staging(), "stale staging directory left behind");
    assert_eq!(snapshot_tree(&out).len(), before.len());
}
