//! Sources and sinks beyond CSV and Parquet, run in-process through the same
//! `kiln::run::run` the binaries call: Avro and JSON both ways, hive-partitioned
//! sources with pruning, CSV schema inference, CSV `on_error`, and run-time
//! schema drift.

use std::path::Path;

use kiln_tests::{Cell, f, i, node_rows, pipeline, read_parquet_rows, row, s, sorted};

fn run(p: &kiln::plan::Pipeline, params: &[(&str, String)]) -> kiln::Result<kiln::run::Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = kiln::run::RunOptions { params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), ..Default::default() };
    rt.block_on(kiln::run::run(p, &opts))
}

fn explain(p: &kiln::plan::Pipeline) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(kiln::run::explain(p, &Default::default())).unwrap()
}

const PEOPLE: &str = r#"
[pipeline]
name = "people"

[params.out]
default = "out"

[sources.people]
format = "inline"
schema = { id = "int64", name = "string", score = "float64", year = "int32" }
rows = [
  { id = 1, name = "ada", score = 1.5, year = 2023 },
  { id = 2, name = "bob", year = 2024 },
  { id = 3, name = "cy", score = -2.25, year = 2024 },
]
"#;

fn people() -> Vec<kiln_tests::Row> {
    let r = |id, name: &str, score: Cell, year| row(&[("id", i(id)), ("name", s(name)), ("score", score), ("year", i(year))]);
    sorted(vec![r(1, "ada", f(1.5), 2023), r(2, "bob", Cell::Null, 2024), r(3, "cy", f(-2.25), 2024)])
}

/// Writes PEOPLE in `format` to DIR/people.FORMAT.
fn write_people(dir: &Path, format: &str, extra: &str) {
    let p = pipeline(&format!("{PEOPLE}\n[sinks.w]\ninput = \"people\"\nformat = \"{format}\"\npath = \"${{params.out}}/people.{format}\"\n{extra}\n"));
    run(&p, &[("out", dir.display().to_string())]).unwrap();
}

#[test]
fn avro_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_people(dir.path(), "avro", "compression = \"snappy\"");
    assert!(std::fs::read_dir(dir.path().join("people.avro")).unwrap().count() >= 1);
    // The schema comes from the Avro files at compile time.
    let p = pipeline(&format!(
        "[pipeline]\nname = \"r\"\n[sources.back]\nformat = \"avro\"\npath = \"{}/people.avro\"\n[sinks.out]\ninput = \"back\"\nformat = \"console\"\n",
        dir.path().display()
    ));
    assert_eq!(sorted(node_rows(&p, "back", &[])), people());
}

#[test]
fn json_round_trip_with_and_without_inference() {
    let dir = tempfile::tempdir().unwrap();
    write_people(dir.path(), "json", "");
    let declared = pipeline(&format!(
        "[pipeline]\nname = \"r\"\n[sources.back]\nformat = \"json\"\npath = \"{}/people.json\"\nschema = {{ id = \"int64\", name = \"string\", score = \"float64\", year = \"int32\" }}\n[sinks.out]\ninput = \"back\"\nformat = \"console\"\n",
        dir.path().display()
    ));
    assert_eq!(sorted(node_rows(&declared, "back", &[])), people());
    let inferred = pipeline(&format!(
        "[pipeline]\nname = \"r\"\n[sources.back]\nformat = \"json\"\npath = \"{}/people.json\"\ninfer_schema = true\n[sinks.out]\ninput = \"back\"\nformat = \"console\"\n",
        dir.path().display()
    ));
    let kiln::plan::Op::Source(src) = &inferred.nodes[0].op else { panic!() };
    let types: Vec<String> = src.schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    assert_eq!(types, ["id Int64", "name Utf8", "score Float64", "year Int64"]);
    assert_eq!(sorted(node_rows(&inferred, "back", &[])), people());
}

#[test]
fn csv_schema_inferred_at_compile_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "id,name,amount,ok\n1,ada,2.5,true\n2,bob,,false\n").unwrap();
    let p = pipeline(&format!(
        "[pipeline]\nname = \"c\"\n[sources.t]\nformat = \"csv\"\npath = \"{}/t.csv\"\ninfer_schema = true\n[sinks.out]\ninput = \"t\"\nformat = \"console\"\n",
        dir.path().display()
    ));
    let kiln::plan::Op::Source(src) = &p.nodes[0].op else { panic!() };
    let types: Vec<String> = src.schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    assert_eq!(types, ["id Int64", "name Utf8", "amount Float64", "ok Boolean"]);
    let rows = sorted(node_rows(&p, "t", &[]));
    assert_eq!(rows[1]["amount"], Cell::Null);
    assert_eq!(rows[0]["amount"], f(2.5));
}

#[test]
fn hive_partitions_are_columns_and_filters_prune_directories() {
    let dir = tempfile::tempdir().unwrap();
    write_people(dir.path(), "parquet", "partition_by = [\"year\"]");
    let p = pipeline(&format!(
        "[pipeline]\nname = \"h\"\n[sources.people]\nformat = \"parquet\"\npath = \"{}/people.parquet\"\npartitions = {{ year = \"int32\" }}\n[transforms.recent]\ntype = \"filter\"\ninput = \"people\"\npredicate = \"year = 2024\"\n[sinks.out]\ninput = \"recent\"\nformat = \"console\"\n",
        dir.path().display()
    ));
    let all = sorted(node_rows(&p, "people", &[]));
    assert_eq!(all, people());
    let recent = sorted(node_rows(&p, "recent", &[]));
    assert_eq!(recent, people().into_iter().filter(|r| r["year"] == i(2024)).collect::<Vec<_>>());
    // Only the year=2024 directory is scanned.
    let plan = explain(&p);
    let scan = plan.lines().find(|l| l.contains("DataSourceExec")).unwrap();
    assert!(scan.contains("year=2024") && !scan.contains("year=2023"), "{plan}");
}

const BAD_CSV: &str = "id,amount\n1,1.5\n2,oops\n3,2.5\n4\n5,\"7\"\n";

fn csv_spec(dir: &Path, on_error: &str) -> kiln::plan::Pipeline {
    std::fs::write(dir.join("in.csv"), BAD_CSV).unwrap();
    pipeline(&format!(
        "[pipeline]\nname = \"q\"\n[params.dir]\ndefault = \"{d}\"\n[sources.t]\nformat = \"csv\"\npath = \"${{params.dir}}/in.csv\"\nschema = {{ id = \"int64\", amount = \"float64\" }}\n{on_error}\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"${{params.dir}}/out\"\n",
        d = dir.display()
    ))
}

#[test]
fn csv_on_error_skip_and_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let good = || sorted(vec![row(&[("id", i(1)), ("amount", f(1.5))]), row(&[("id", i(3)), ("amount", f(2.5))]), row(&[("id", i(5)), ("amount", f(7.0))])]);

    let p = csv_spec(dir.path(), "on_error = \"skip\"");
    run(&p, &[]).unwrap();
    assert_eq!(sorted(read_parquet_rows(&dir.path().join("out"))), good());

    let p = csv_spec(dir.path(), "on_error = \"quarantine\"\nquarantine = \"${params.dir}/bad/rows.csv\"");
    run(&p, &[]).unwrap();
    assert_eq!(sorted(read_parquet_rows(&dir.path().join("out"))), good());
    let file = dir.path().join("in.csv").display().to_string();
    let quarantined = std::fs::read_to_string(dir.path().join("bad/rows.csv")).unwrap();
    assert_eq!(
        quarantined,
        format!("file,line,error,raw_line\n{file},3,cannot read `oops` as Float64 (column `amount`),\"2,oops\"\n{file},5,\"expected 2 fields, found 1\",4\n")
    );

    // The default fails, naming the file and line (Arrow reports the short row
    // first: it checks field counts before values), and writes nothing.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let p = csv_spec(dir.path(), "");
    let err = run(&p, &[]).unwrap_err().to_string();
    assert!(err.contains("in.csv:5") && err.contains("expected 2 fields"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn schema_drift_fails_before_writing_naming_file_column_and_types() {
    let dir = tempfile::tempdir().unwrap();
    write_people(dir.path(), "parquet", "");
    let spec = format!(
        "[pipeline]\nname = \"d\"\n[sources.people]\nformat = \"parquet\"\npath = \"{d}/people.parquet\"\n[sinks.out]\ninput = \"people\"\nformat = \"parquet\"\npath = \"{d}/copy\"\n",
        d = dir.path().display()
    );
    let p = pipeline(&spec);
    run(&p, &[]).unwrap();
    let before = kiln_tests::snapshot_tree(&dir.path().join("copy"));
    // A new file arrives where `score` is a string.
    let drifted = pipeline(&format!(
        "{PEOPLE}\n[transforms.x]\ntype = \"cast\"\ninput = \"people\"\ncolumns.score = \"string\"\n[sinks.w]\ninput = \"x\"\nformat = \"parquet\"\npath = \"${{params.out}}/people.parquet\"\nmode = \"append\"\n"
    ));
    run(&drifted, &[("out", dir.path().display().to_string())]).unwrap();
    let err = run(&p, &[]).unwrap_err().to_string();
    assert!(err.contains("people.parquet/") && err.contains("`score` is Utf8") && err.contains("says Float64"), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&dir.path().join("copy")), before, "the previous output is untouched");
}

/// A directory source holding a symlink back to itself is read once per file,
/// or fails naming the loop — it never hangs or aborts.
#[test]
fn a_symlink_cycle_in_a_directory_source_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("t.csv"), "a,g\n1,x\n2,y\n").unwrap();
    std::os::unix::fs::symlink(&data, data.join("again")).unwrap();
    let p = kiln_tests::pipeline(&format!(
        "[pipeline]\nname = \"p\"\n[sources.t]\nformat = \"csv\"\npath = \"{}\"\nschema = {{ a = \"int64\", g = \"string\" }}\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"{}\"\n",
        data.display(),
        dir.path().join("out").display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcome = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), kiln::run::run(&p, &Default::default())).await });
    match outcome.expect("the run hung on a symlink cycle") {
        Ok(report) => assert!(report.sinks[0].rows.is_some_and(|r| r >= 2), "{report:?}"),
        Err(e) => assert!(e.to_string().contains("loop") || e.to_string().contains("again"), "{e}"),
    }
}

/// A run killed while cleaning a tolerant CSV source leaves its work directory
/// (`kiln-clean-PID-…` in the spill directory); the next run removes the ones
/// whose process is gone, and its own when it ends.
#[test]
fn work_directories_of_killed_runs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    // A pid that cannot be running (above the kernel's pid_max).
    let dead = spill.join("kiln-clean-4194305-1");
    std::fs::create_dir_all(dead.join("t")).unwrap();
    std::fs::write(dead.join("t/clean.csv"), "x\n").unwrap();
    std::fs::write(dir.path().join("t.csv"), "a,g\n1,x\nbad,y\n").unwrap();
    let p = kiln_tests::pipeline(&format!(
        "[pipeline]\nname = \"p\"\n[runtime]\nspill_dir = \"{}\"\n[sources.t]\nformat = \"csv\"\npath = \"{}\"\non_error = \"skip\"\nschema = {{ a = \"int64\", g = \"string\" }}\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"{}\"\n",
        spill.display(),
        dir.path().join("t.csv").display(),
        dir.path().join("out").display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = rt.block_on(kiln::run::run(&p, &Default::default())).unwrap();
    assert_eq!(report.sinks[0].rows, Some(1));
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// ORC both ways (issue 18): Kiln writes ORC files that pyarrow reads back, reads
/// a directory tree of them (hive partition columns are a check error: datafusion-orc
/// fills no partition values), and a file whose column changed type fails the run
/// before anything is written.
#[test]
fn orc_round_trip_read_by_pyarrow_and_drift() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    // One directory per year, the year in the path only (as Spark's partitioned writes).
    let writer = pipeline(&format!(
        "{PEOPLE}\n[transforms.y2023]\ntype = \"sql\"\ninputs = [\"people\"]\nquery = \"SELECT id, name, score FROM people WHERE year = 2023\"\n\
         [transforms.y2024]\ntype = \"sql\"\ninputs = [\"people\"]\nquery = \"SELECT id, name, score FROM people WHERE year = 2024\"\n\
         [sinks.a]\ninput = \"y2023\"\nformat = \"orc\"\npath = \"${{params.out}}/people.orc/year=2023\"\n\
         [sinks.b]\ninput = \"y2024\"\nformat = \"orc\"\npath = \"${{params.out}}/people.orc/year=2024\"\ncompression = \"zlib\"\n"
    ));
    run(&writer, &[("out", out.clone())]).unwrap();
    // pyarrow, not Kiln, reads what Kiln wrote.
    let script = "import glob, json, sys, pyarrow.orc as orc\n\
                  rows = []\n\
                  for f in sorted(glob.glob(sys.argv[1] + '/people.orc/year=*/*.orc')):\n    rows += orc.read_table(f).to_pylist()\n\
                  print(json.dumps(sorted(rows, key=lambda r: r['id'])))";
    let py = std::process::Command::new("python3").arg("-c").arg(script).arg(&out).output().expect("python3 (with pyarrow) is needed: .ci/run installs it");
    assert!(py.status.success(), "pyarrow could not read Kiln's ORC output: {}", String::from_utf8_lossy(&py.stderr));
    let read: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        read,
        serde_json::json!([{"id": 1, "name": "ada", "score": 1.5}, {"id": 2, "name": "bob", "score": null}, {"id": 3, "name": "cy", "score": -2.25}])
    );
    // Kiln reads the directory tree back; partition columns it refuses, saying so.
    let spec = format!(
        "[pipeline]\nname = \"r\"\n[sources.people]\nformat = \"orc\"\npath = \"{out}/people.orc\"\n\
         [transforms.high]\ntype = \"filter\"\ninput = \"people\"\npredicate = \"id > 1\"\n[sinks.out]\ninput = \"high\"\nformat = \"parquet\"\npath = \"{out}/copy\"\n"
    );
    let reader = pipeline(&spec);
    let without_year: Vec<_> = people().into_iter().map(|mut r| { r.remove("year"); r }).collect();
    assert_eq!(sorted(node_rows(&reader, "people", &[])), sorted(without_year));
    let partitioned = kiln_compiler::check_text(Path::new("t.toml"), &spec.replace("people.orc\"\n", "people.orc\"\npartitions = [\"year\"]\n"), &kiln_tests::repo_root());
    assert!(partitioned.has_errors() && partitioned.render(false).contains("hive partition columns of ORC sources"), "{}", partitioned.render(false));
    run(&reader, &[]).unwrap();
    let before = kiln_tests::snapshot_tree(&dir.path().join("copy"));
    // A new file where `score` is a string: the run fails naming it, before any write.
    let drifted = pipeline(&format!(
        "{PEOPLE}\n[transforms.x]\ntype = \"sql\"\ninputs = [\"people\"]\nquery = \"SELECT id, name, CAST(score AS VARCHAR) AS score FROM people\"\n\
         [sinks.w]\ninput = \"x\"\nformat = \"orc\"\npath = \"${{params.out}}/people.orc/year=2024\"\nmode = \"append\"\n"
    ));
    run(&drifted, &[("out", out.clone())]).unwrap();
    let err = run(&reader, &[]).unwrap_err().to_string();
    assert!(err.contains("year=2024/part-") && err.contains("`score` is Utf8") && err.contains("says Float64"), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&dir.path().join("copy")), before, "the previous output is untouched");
}
