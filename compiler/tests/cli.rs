//! The `kiln` binary's exit codes and output (SPEC.md §10): 0 ok, 1 spec errors, 2 usage errors.

use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().unwrap()
}

#[test]
fn check_ok() {
    let out = kiln(&["check", "specs/etl.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("specs/etl.toml: ok"));
}

#[test]
fn check_reports_every_error_with_its_location() {
    let out = kiln(&["check", "specs/etl.toml", "tests/diagnostics/many_errors.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for location in ["many_errors.toml:4:1", "many_errors.toml:14:14", "many_errors.toml:23:9"] {
        assert!(err.contains(location), "missing {location} in:\n{err}");
    }
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(kiln(&["check", "no/such/spec.toml"]).status.code(), Some(2));
    assert_eq!(kiln(&["check"]).status.code(), Some(2));
    assert_eq!(kiln(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn new_writes_a_spec_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln")).args(["new", "starter"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success());
    let check = Command::new(env!("CARGO_BIN_EXE_kiln")).args(["check", "starter.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let again = Command::new(env!("CARGO_BIN_EXE_kiln")).args(["new", "starter"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite");
}

#[test]
fn test_runs_every_specs_tests_without_building() {
    let specs = ["specs/etl.toml", "specs/broadcast_join.toml", "specs/skew_join.toml", "specs/windows.toml", "specs/quality.toml"];
    let mut args = vec!["test"];
    args.extend(specs);
    let out = kiln(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches(" ... ok").count(), 10, "{stdout}");
}

#[test]
fn a_failing_test_prints_a_row_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("t.toml");
    std::fs::write(
        &spec,
        r#"[pipeline]
name = "t"

[sources.orders]
format = "inline"
schema = { id = "string", amount = "float64", city = "string" }
rows = []

[transforms.big]
type = "filter"
input = "orders"
predicate = "amount > 10"

[sinks.out]
input = "big"
format = "console"

[[tests]]
name = "keeps big orders"
inputs.orders.rows = [
  { id = "o1", amount = 50.0, city = "paris" },
  { id = "o2", amount = 5.0, city = "rome" },
  { id = "o3", amount = 20.0, city = "oslo" },
]
expect.big.rows = [
  { id = "o1", amount = 55.0, city = "paris" },
  { id = "o2", amount = 5.0, city = "rome" },
]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln")).args(["test", "t.toml"]).current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        "test keeps big orders ... FAILED",
        "node `big`: 1 row(s) missing, 1 extra, 1 changed",
        "missing: {id: \"o2\", amount: 5, city: \"rome\"}",
        "extra:   {id: \"o3\", amount: 20, city: \"oslo\"}",
        "changed: {id: \"o1\", city: \"paris\"} amount: expected 55, got 50",
        "0 passed, 1 failed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}
