//! A run's commit is all-or-nothing across a crash (sinks::journal): the job
//! binary is killed (SIGABRT through `KILN_FAULT`) at every step of committing
//! three sinks (overwrite, overwrite, append); after each kill, the next run
//! finds every target holding exactly its previous output, or — killed after
//! the commit point — exactly the new one, never a mix, and never an append
//! written twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every value of every output, per sink (sorted): what a reader sees.
fn outputs(out: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut seen = BTreeMap::new();
    for sink in ["a", "b", "c"] {
        let mut values = Vec::new();
        for (file, _) in kiln_tests::part_files(&out.join(sink)) {
            let name = file.to_string_lossy().into_owned();
            if name.ends_with(".parquet") {
                values.extend(kiln_tests::read_parquet_rows(&file).iter().map(|r| match r["v"] {
                    kiln_tests::Cell::Int(v) => v,
                    _ => -1,
                }));
            } else {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines().filter(|l| !l.is_empty() && *l != "v") {
                    let digits: String = line.chars().filter(|c| c.is_ascii_digit()).collect();
                    values.push(digits.parse().unwrap());
                }
            }
        }
        values.sort();
        seen.insert(sink.to_string(), values);
    }
    seen
}

fn leftovers(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.') && !p.to_string_lossy().ends_with(".kiln-lock")).collect()
}

#[test]
fn a_commit_killed_at_any_step_leaves_old_or_new_never_a_mix() {
    let binary = kiln_tests::build_job("tests/fixtures/commits/commits.toml");
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.csv"), dir.path().join("out"));
    let run = |version: i64, fault: Option<&str>| {
        let rows: String = (0..version).map(|_| format!("{version}\n")).collect();
        std::fs::write(&input, format!("v\n{rows}")).unwrap();
        let mut cmd = Command::new(&binary);
        cmd.args(["run", "--param"]).arg(format!("input={}", input.display())).arg("--param").arg(format!("out={}", out.display()));
        match fault {
            Some(f) => cmd.env("KILN_FAULT", f),
            None => cmd.env_remove("KILN_FAULT"),
        };
        cmd.output().unwrap()
    };
    // Version 1 everywhere.
    assert!(run(1, None).status.success());
    let mut expected = BTreeMap::from([("a".to_string(), vec![1]), ("b".to_string(), vec![1]), ("c".to_string(), vec![1])]);
    assert_eq!(outputs(&out), expected);
    let mut version = 1;
    for fault in ["before-journal", "after-journal", "after-commit-1", "after-commit-2", "after-commit-3", "after-done"] {
        version += 1;
        let killed = run(version, Some(fault));
        assert!(!killed.status.success(), "{fault}: the run was not killed");
        // The next run settles the killed one first, then is killed itself before its own
        // journal: the targets show what the killed run left them, settled.
        let probe = run(version, Some("before-journal"));
        assert!(!probe.status.success());
        if fault == "after-done" {
            // Past the commit point: the killed run's output is the output.
            for (sink, values) in expected.iter_mut() {
                if sink == "c" {
                    values.extend(std::iter::repeat_n(version, version as usize));
                } else {
                    *values = vec![version; version as usize];
                }
                values.sort();
            }
        }
        assert_eq!(outputs(&out), expected, "after a kill at {fault}:\n{}", String::from_utf8_lossy(&probe.stderr));
        // A clean run then writes this version once.
        assert!(run(version, None).status.success(), "{fault}");
        for (sink, values) in expected.iter_mut() {
            if sink == "c" {
                values.extend(std::iter::repeat_n(version, version as usize));
            } else {
                *values = vec![version; version as usize];
            }
            values.sort();
        }
        assert_eq!(outputs(&out), expected, "after the clean run following {fault}");
        assert!(leftovers(&out).is_empty(), "{fault}: {:?}", leftovers(&out));
    }
}
