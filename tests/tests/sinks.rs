//! Sink formats and write modes, run in-process through `kiln::run::run`.

use std::path::Path;

use kiln::run::{RunOptions, run};
use kiln_tests::{i, pipeline, read_parquet_rows, row, s, sorted, snapshot_tree};

fn spec(out: &Path, sink: &str) -> kiln::plan::Pipeline {
    pipeline(&format!(
        r#"
[pipeline]
name = "sinks"

[params.out]
default = "{}"

[sources.people]
format = "inline"
rows = [ {{ name = "ada", age = 36 }}, {{ name = "bob", age = 17 }} ]

[sinks.out]
input = "people"
path = "${{params.out}}"
{sink}
"#,
        out.display()
    ))
}

fn go(p: &kiln::plan::Pipeline) -> kiln::Result<kiln::run::Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(run(p, &RunOptions::default()))
}

fn people() -> Vec<kiln_tests::Row> {
    sorted(vec![row(&[("name", s("ada")), ("age", i(36))]), row(&[("name", s("bob")), ("age", i(17))])])
}

#[test]
fn parquet_overwrite_append_and_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("people");
    let p = spec(&out, "format = \"parquet\"");
    assert_eq!(go(&p).unwrap().sinks[0].rows, Some(2));
    go(&p).unwrap();
    assert_eq!(sorted(read_parquet_rows(&out)), people(), "overwrite replaces");

    let p = spec(&out, "format = \"parquet\"\nmode = \"append\"");
    go(&p).unwrap();
    assert_eq!(read_parquet_rows(&out).len(), 4, "append adds part files");

    let file = dir.path().join("one.parquet");
    let p = spec(&file, "format = \"parquet\"\nsingle_file = true");
    go(&p).unwrap();
    assert!(file.is_file());
    assert_eq!(sorted(read_parquet_rows(&file)), people());
}

#[test]
fn error_if_exists_and_ignore_leave_existing_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("people");
    go(&spec(&out, "format = \"parquet\"")).unwrap();
    let before = snapshot_tree(&out);

    let err = go(&spec(&out, "format = \"parquet\"\nmode = \"error_if_exists\"")).unwrap_err();
    assert!(matches!(err, kiln::Error::SinkExists { .. }), "{err}");
    assert_eq!(snapshot_tree(&out), before);

    let report = go(&spec(&out, "format = \"parquet\"\nmode = \"ignore\"")).unwrap();
    assert_eq!(report.sinks[0].rows, None);
    assert_eq!(snapshot_tree(&out), before);

    let fresh = dir.path().join("fresh");
    assert_eq!(go(&spec(&fresh, "format = \"parquet\"\nmode = \"error_if_exists\"")).unwrap().sinks[0].rows, Some(2));
}

#[test]
fn csv_has_a_header_and_json_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    go(&spec(&csv, "format = \"csv\"\nsingle_file = true")).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "name,age");
    lines.sort();
    assert_eq!(lines, ["ada,36", "bob,17"]);

    let json = dir.path().join("people.json");
    go(&spec(&json, "format = \"json\"\nsingle_file = true")).unwrap();
    let mut objects: Vec<serde_json::Value> =
        std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    objects.sort_by_key(|o| o["name"].as_str().unwrap().to_string());
    assert_eq!(objects, [serde_json::json!({"name": "ada", "age": 36}), serde_json::json!({"name": "bob", "age": 17})]);
}

#[test]
fn partition_values_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("by_city");
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "parts"
[sources.people]
format = "inline"
schema = {{ name = "string", city = "string" }}
rows = [ {{ name = "ada", city = "london" }}, {{ name = "bob" }} ]
[sinks.out]
input = "people"
format = "parquet"
path = "{}"
partition_by = ["city"]
"#,
        out.display()
    ));
    go(&p).unwrap();
    assert!(out.join("city=london").is_dir());
    assert!(out.join("city=__HIVE_DEFAULT_PARTITION__").is_dir());
    assert_eq!(
        sorted(read_parquet_rows(&out)),
        sorted(vec![row(&[("name", s("ada")), ("city", s("london"))]), row(&[("name", s("bob")), ("city", s("__HIVE_DEFAULT_PARTITION__"))])])
    );
}

/// Two runs writing one target: the second fails at once, naming the target and
/// the run holding it, and touches nothing; once the first is done, it runs.
#[test]
fn a_second_run_on_a_locked_target_fails_clearly_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let p = kiln_tests::pipeline(&format!(
        "[pipeline]\nname = \"p\"\n[sources.t]\nformat = \"inline\"\nrows = [ {{ x = 1 }} ]\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"{}\"\n",
        target.display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(kiln::run::run(&p, &Default::default())).unwrap();
    let before = kiln_tests::snapshot_tree(&target);
    // Another run holds the target (the lock it takes for its whole run).
    let held = kiln::sinks::lock("out", &target).unwrap();
    // A leftover of that live run's staging must survive the second run.
    let staging = dir.path().join(".out.kiln-staging-live");
    std::fs::create_dir_all(&staging).unwrap();
    let err = rt.block_on(kiln::run::run(&p, &Default::default())).unwrap_err().to_string();
    assert!(err.contains("another run is writing") && err.contains(&target.display().to_string()), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before);
    assert!(staging.exists(), "the live run's staging was removed");
    drop(held);
    rt.block_on(kiln::run::run(&p, &Default::default())).unwrap();
    assert!(!staging.exists(), "a dead run's staging is cleaned up");
}

/// A run killed between the two renames of an overwrite left the old output
/// aside and no target: the next run puts it back *before* deciding
/// `error_if_exists`, so it refuses to replace output it must not touch.
#[test]
fn an_interrupted_overwrite_is_restored_before_error_if_exists_decides() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let spec = |mode: &str| {
        kiln_tests::pipeline(&format!(
            "[pipeline]\nname = \"p\"\n[sources.t]\nformat = \"inline\"\nrows = [ {{ x = 1 }} ]\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\nmode = \"{mode}\"\npath = \"{}\"\n",
            target.display()
        ))
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(kiln::run::run(&spec("overwrite"), &Default::default())).unwrap();
    let before = kiln_tests::snapshot_tree(&target);
    // The state a kill between "move the old output aside" and "move the new one in" leaves.
    std::fs::rename(&target, dir.path().join(".out.kiln-old-killed")).unwrap();
    let err = rt.block_on(kiln::run::run(&spec("error_if_exists"), &Default::default())).unwrap_err();
    assert!(matches!(err, kiln::Error::SinkExists { .. }), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before);
}

/// `mode = "overwrite_partitions"` (SPEC §6a): only the partitions present in
/// the new data are replaced; the others, and files outside partitions, stay.
#[test]
fn overwrite_partitions_replaces_only_the_new_datas_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("by_day");
    let spec = |rows: &str, mode: &str| {
        pipeline(&format!(
            "[pipeline]\nname = \"days\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ {rows} ]\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"{}\"\npartition_by = [\"day\"]\nmode = \"{mode}\"\n",
            out.display()
        ))
    };
    go(&spec(r#"{ day = "d1", n = 1 }, { day = "d2", n = 2 }, { day = "d3", n = 3 }"#, "overwrite")).unwrap();
    go(&spec(r#"{ day = "d2", n = 20 }, { day = "d4", n = 40 }"#, "overwrite_partitions")).unwrap();
    let got = sorted(read_parquet_rows(&out));
    let want = sorted(vec![
        row(&[("day", s("d1")), ("n", i(1))]),
        row(&[("day", s("d2")), ("n", i(20))]),
        row(&[("day", s("d3")), ("n", i(3))]),
        row(&[("day", s("d4")), ("n", i(40))]),
    ]);
    assert_eq!(got, want);
    // A failed run (a new partition written, then an error) changes nothing.
    let before = snapshot_tree(&out);
    let failing = pipeline(&format!(
        "[pipeline]\nname = \"days\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ {{ day = \"d1\", n = 0 }} ]\n\n[transforms.boom]\ntype = \"with_columns\"\ninput = \"t\"\ncolumns.n = \"CAST('x' AS BIGINT) + n\"\n\n[sinks.out]\ninput = \"boom\"\nformat = \"parquet\"\npath = \"{}\"\npartition_by = [\"day\"]\nmode = \"overwrite_partitions\"\n",
        out.display()
    ));
    assert!(go(&failing).is_err());
    assert_eq!(snapshot_tree(&out), before);

    let err = kiln_compiler::check_text(Path::new("x.toml"), "[pipeline]\nname = \"x\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ { n = 1 } ]\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"o\"\nmode = \"overwrite_partitions\"\n", Path::new("."));
    assert!(err.render(false).contains("this sink has no `partition_by`"), "{}", err.render(false));
}

/// `overwrite_partitions` for CSV and JSON sinks, read back from the files
/// themselves (the partition value from the directory name, `n` from each line).
#[test]
fn overwrite_partitions_works_for_csv_and_json() {
    for format in ["csv", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("by_day");
        let spec = |rows: &str, mode: &str| {
            pipeline(&format!(
                "[pipeline]\nname = \"days\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ {rows} ]\n\n[sinks.out]\ninput = \"t\"\nformat = \"{format}\"\npath = \"{}\"\npartition_by = [\"day\"]\nmode = \"{mode}\"\n",
                out.display()
            ))
        };
        go(&spec(r#"{ day = "d1", n = 1 }, { day = "d2", n = 2 }, { day = "d3", n = 3 }"#, "overwrite")).unwrap();
        go(&spec(r#"{ day = "d2", n = 20 }, { day = "d2", n = 21 }, { day = "d4", n = 40 }"#, "overwrite_partitions")).unwrap();
        let mut got = Vec::new();
        for day in std::fs::read_dir(&out).unwrap().flatten() {
            let day_name = day.file_name().to_string_lossy().into_owned();
            let Some(value) = day_name.strip_prefix("day=") else { continue };
            for file in std::fs::read_dir(day.path()).unwrap().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with(['.', '_']) {
                    continue;
                }
                let text = std::fs::read_to_string(file.path()).unwrap();
                let mut lines = text.lines();
                if format == "csv" {
                    assert_eq!(lines.next(), Some("n"), "{name}: a header of the columns, not the partition column");
                }
                for line in lines.filter(|l| !l.is_empty()) {
                    let n = if format == "csv" { line.parse::<i64>().unwrap() } else { serde_json::from_str::<serde_json::Value>(line).unwrap()["n"].as_i64().unwrap() };
                    got.push((value.to_string(), n));
                }
            }
        }
        got.sort();
        let want: Vec<(String, i64)> = [("d1", 1), ("d2", 20), ("d2", 21), ("d3", 3), ("d4", 40)].iter().map(|(d, n)| (d.to_string(), *n)).collect();
        assert_eq!(got, want, "{format}");
    }
}
