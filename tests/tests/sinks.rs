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
