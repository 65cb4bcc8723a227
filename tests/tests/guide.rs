//! The PySpark guide's jobs (specs/*.toml) end to end: each binary runs on the
//! sample data in specs/data, and every output must equal what the DuckDB
//! implementation of ../shared/bench computes on the same data
//! (tests/fixtures/guide/make_expected.py), compared as ../shared/bench/check.py
//! does: columns by name, integers as int64, doubles within 1e-9 relative,
//! hive partition values as columns (`__HIVE_DEFAULT_PARTITION__` is NULL),
//! rows as a multiset.

use std::path::Path;
use std::process::Command;

use kiln_tests::{Cell, Row, build_job, read_expected_csv, read_parquet_rows, repo_root, sorted};

fn canonical(rows: Vec<Row>) -> Vec<Row> {
    let rows = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|(k, v)| match v {
                    Cell::Str(s) if s == "__HIVE_DEFAULT_PARTITION__" => (k, Cell::Null),
                    v => (k, v),
                })
                .collect()
        })
        .collect();
    sorted(rows)
}

/// Runs `specs/JOB.toml` on specs/data and compares every output with DuckDB's.
fn check_job(job: &str) {
    let binary = build_job(&format!("specs/{job}.toml"));
    let root = repo_root();
    let out = tempfile::tempdir().unwrap();
    // etl reads one CSV file; the others a directory of Parquet files.
    let data = match job {
        "etl" => format!("input={}", root.join("specs/data/transactions.csv").display()),
        _ => format!("data={}", root.join("specs/data").display()),
    };
    let status = Command::new(&binary)
        .args(["run", "--param"])
        .arg(data)
        .arg("--param")
        .arg(format!("output={}", out.path().display()))
        .status()
        .unwrap();
    assert!(status.success(), "{job} failed");
    let expected_dir = root.join("tests/fixtures/guide").join(job);
    let mut names: Vec<_> = std::fs::read_dir(&expected_dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(!names.is_empty());
    for expected_path in names {
        let name = expected_path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = canonical(read_expected_csv(&expected_path));
        let got = canonical(read_parquet_rows(&output_path(out.path(), &name)));
        assert_eq!(got.len(), expected.len(), "{job}/{name}: row count");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.keys().collect::<Vec<_>>(), e.keys().collect::<Vec<_>>(), "{job}/{name}: columns");
            assert_eq!(g, e, "{job}/{name}: first differing row");
        }
    }
}

/// The etl spec writes one directory; the others one `NAME.parquet` each.
fn output_path(out: &Path, name: &str) -> std::path::PathBuf {
    let p = out.join(format!("{name}.parquet"));
    if p.exists() { p } else { out.to_path_buf() }
}

#[test]
fn broadcast_join_matches_duckdb() {
    check_job("broadcast_join");
}

#[test]
fn skew_join_matches_duckdb() {
    check_job("skew_join");
}

#[test]
fn windows_match_duckdb() {
    check_job("windows");
}

#[test]
fn quality_matches_duckdb() {
    check_job("quality");
}

#[test]
fn etl_matches_duckdb() {
    check_job("etl");
}

/// `NAME test` runs the spec's [[tests]] inside the binary; `--metrics` writes
/// the run's figures, the data-quality summary included.
#[test]
fn the_binary_runs_its_tests_and_writes_metrics() {
    let binary = build_job("specs/quality.toml");
    let out = Command::new(&binary).arg("test").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");

    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.json");
    let status = Command::new(&binary)
        .args(["run", "--param"])
        .arg(format!("data={}", root.join("specs/data").display()))
        .arg("--param")
        .arg(format!("output={}", dir.path().join("out").display()))
        .arg("--metrics")
        .arg(&metrics)
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let quality = &json["quality"][0];
    assert_eq!(quality["node"], "checked");
    assert_eq!(quality["rows"], 1000);
    let has_customer = quality["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "has_customer").unwrap();
    // specs/data/transactions.parquet has 9 rows without a customer (tests/fixtures/guide/quality/null_counts.csv).
    assert_eq!(has_customer["failed"], 9);
    assert_eq!(json["sinks"].as_array().unwrap().len(), 2);
}

/// `--skew-report` counts each join side's keys before the run: partition sizes,
/// top keys, and a warning that suggests salting when one key dominates.
#[test]
fn skew_report_names_the_hot_key() {
    let binary = build_job("specs/skew_join.toml");
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&binary)
        .args(["run", "--skew-report", "--param"])
        .arg(format!("data={}", root.join("specs/data").display()))
        .arg("--param")
        .arg(format!("output={}", dir.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // specs/data/orders_skewed.parquet: 1000 orders, 885 of them WHALE's (gen_data.py draws 90%).
    assert!(stderr.contains("skew: join `orders_customers`, side `orders`: 1000 rows;"), "{stderr}");
    assert!(stderr.contains("top keys: WHALE 88.5%"), "{stderr}");
    assert!(
        stderr.contains("warning: join `orders_customers`: key \"WHALE\" holds 88% of `orders`'s rows; consider strategy = \"salted\" with salt = { hot_keys = [\"WHALE\"] }"),
        "{stderr}"
    );
    // Unique customer ids: no warning for that side.
    assert!(!stderr.contains("of `customers`'s rows"), "{stderr}");
}

/// Under a memory limit a run names, before anything runs, each sink whose plan
/// holds an input whole (here the join's hash table of the customers), and still
/// writes its rows; without a limit it says nothing of the kind.
#[test]
fn a_memory_limit_names_what_cannot_spill_before_the_run() {
    let binary = build_job("specs/skew_join.toml");
    let root = repo_root();
    let run = |limit: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&binary)
            .arg("run")
            .args(limit)
            .args(["--param", &format!("data={}", root.join("specs/data").display()), "--param", &format!("output={}", dir.path().display())])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(dir.path().join("region.parquet").exists(), "{stderr}");
        stderr
    };
    let limited = run(&["--memory-limit", "64MB"]);
    let note = "note: memory limit 64 MB: sink `region_parquet` runs a hash join (its build side whole";
    let (at_note, at_sink) = (limited.find(note), limited.find("sink `region_parquet`: "));
    assert!(limited.contains("which cannot spill; past the limit it fails with \"Resources exhausted\""), "{limited}");
    assert!(at_note.is_some() && at_note < at_sink, "the note comes before the run's output: {limited}");
    assert!(!run(&[]).contains("cannot spill"));
}
