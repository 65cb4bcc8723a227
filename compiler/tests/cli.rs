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
