//! Delta Lake sources and sinks (SPEC §3, §6a; issue 15), checked against the
//! `deltalake` Python package (tests/delta/oracle.py): every table Kiln writes
//! is read back by it, every table it writes is read by Kiln, and the expected
//! rows are written out by hand below. `.ci/run` installs the package into
//! `~/.cache/kiln/tools/pydelta`; a test that cannot find it installs it there.

use std::path::Path;

use kiln::run::{RunOptions, run};
use serde_json::{Value, json};

use kiln_tests::delta_oracle as oracle;

/// The table's rows as the Python package reads them (at `version`), sorted by `id`.
fn rows(table: &Path, version: Option<u64>) -> Vec<Value> {
    let v = version.map(|v| v.to_string());
    let mut args = vec!["rows", table.to_str().unwrap()];
    if let Some(v) = &v {
        args.push(v);
    }
    let mut rows: Vec<Value> = oracle(&args).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    rows.sort_by_key(|r| r["id"].as_i64());
    rows
}

fn info(table: &Path) -> Value {
    serde_json::from_str(&oracle(&["info", table.to_str().unwrap()])).unwrap()
}

fn version(table: &Path) -> u64 {
    info(table)["version"].as_u64().unwrap()
}

/// `{id, day, amount}` rows, sorted by id.
fn expected(rows: &[(i64, &str, f64)]) -> Vec<Value> {
    let mut out: Vec<Value> = rows.iter().map(|(id, day, amount)| json!({"id": id, "day": day, "amount": amount})).collect();
    out.sort_by_key(|r| r["id"].as_i64());
    out
}

/// Inline rows for a spec.
fn inline(rows: &[(i64, &str, f64)]) -> String {
    let cells: Vec<String> = rows.iter().map(|(id, day, amount)| format!("{{ id = {id}, day = \"{day}\", amount = {amount:?} }}")).collect();
    format!("[ {} ]", cells.join(", "))
}

/// A spec writing `rows` to the Delta table at `table` with the sink keys `sink`.
fn write_spec(table: &Path, rows: &[(i64, &str, f64)], sink: &str) -> String {
    format!(
        "[pipeline]\nname = \"delta_write\"\n\n[sources.batch]\nformat = \"inline\"\nschema = {{ id = \"int64\", day = \"string\", amount = \"float64\" }}\nrows = {}\n\n[sinks.table]\ninput = \"batch\"\nformat = \"delta\"\npath = \"{}\"\n{sink}\n",
        inline(rows),
        table.display()
    )
}

fn go(text: &str) -> kiln::Result<kiln::run::Report> {
    let pipeline = kiln_tests::pipeline(text);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(&pipeline, &RunOptions::default()))
}

fn write(table: &Path, rows: &[(i64, &str, f64)], sink: &str) -> kiln::Result<kiln::run::Report> {
    go(&write_spec(table, rows, sink))
}

const A: &[(i64, &str, f64)] = &[(1, "2024-05-01", 10.0), (2, "2024-05-01", 20.5), (3, "2024-05-02", 30.0), (4, "2024-05-02", 40.25)];
const B: &[(i64, &str, f64)] = &[(5, "2024-05-03", 50.0), (6, "2024-05-01", 60.0)];

#[test]
fn every_sink_mode_is_one_delta_commit_the_python_package_reads() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("orders");

    // overwrite creates the table, partitioned as the spec says.
    let report = write(&table, A, "mode = \"overwrite\"\npartition_by = [\"day\"]").unwrap();
    assert_eq!(report.sinks[0].rows, Some(4));
    assert_eq!(rows(&table, None), expected(A));
    let meta = info(&table);
    assert_eq!(meta["version"], 0);
    assert_eq!(meta["partitions"], json!(["day"]));
    assert!(table.join("day=2024-05-01").is_dir(), "hive-style partition directories");

    // append adds a version.
    let report = write(&table, B, "mode = \"append\"").unwrap();
    assert_eq!(report.sinks[0].rows, Some(2));
    assert_eq!(version(&table), 1);
    let a_and_b: Vec<(i64, &str, f64)> = A.iter().chain(B).copied().collect();
    assert_eq!(rows(&table, None), expected(&a_and_b));

    // merge on `id`: id 2 and 5 are updated, 7 inserted, the others kept.
    let upsert = [(2, "2024-05-01", 22.0), (5, "2024-05-03", 55.0), (7, "2024-05-02", 70.0)];
    let report = write(&table, &upsert, "mode = \"merge\"\nkeys = [\"id\"]").unwrap();
    assert_eq!(report.sinks[0].rows, Some(3), "a merge reports its source rows");
    assert_eq!(version(&table), 2);
    let merged = [
        (1, "2024-05-01", 10.0),
        (2, "2024-05-01", 22.0),
        (3, "2024-05-02", 30.0),
        (4, "2024-05-02", 40.25),
        (5, "2024-05-03", 55.0),
        (6, "2024-05-01", 60.0),
        (7, "2024-05-02", 70.0),
    ];
    assert_eq!(rows(&table, None), expected(&merged));
    // Two new rows matching one row of the table: an error (as Spark's MERGE), nothing committed.
    let err = write(&table, &[(1, "2024-05-01", 1.0), (1, "2024-05-01", 2.0)], "mode = \"merge\"\nkeys = [\"id\"]").unwrap_err().to_string();
    assert!(err.contains("multiple source rows"), "{err}");
    assert_eq!(version(&table), 2);
    assert_eq!(rows(&table, None), expected(&merged));

    // replace_where: only 2024-05-02 is replaced.
    let day2 = [(8, "2024-05-02", 80.0)];
    write(&table, &day2, "mode = \"overwrite\"\nreplace_where = \"day = '2024-05-02'\"").unwrap();
    assert_eq!(version(&table), 3);
    let replaced = [(1, "2024-05-01", 10.0), (2, "2024-05-01", 22.0), (5, "2024-05-03", 55.0), (6, "2024-05-01", 60.0), (8, "2024-05-02", 80.0)];
    assert_eq!(rows(&table, None), expected(&replaced));

    // New rows outside the predicate are an error, and nothing is committed.
    let err = write(&table, &[(9, "2024-05-09", 1.0)], "mode = \"overwrite\"\nreplace_where = \"day = '2024-05-02'\"").unwrap_err().to_string();
    assert!(err.contains("do not satisfy `replace_where`") && err.contains("2024-05-09"), "{err}");
    assert_eq!(version(&table), 3);
    assert_eq!(rows(&table, None), expected(&replaced));

    // error_if_exists fails before running; ignore does nothing.
    let err = write(&table, A, "mode = \"error_if_exists\"").unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    let report = write(&table, A, "mode = \"ignore\"").unwrap();
    assert_eq!(report.sinks[0].rows, None);
    assert_eq!(version(&table), 3);

    // A plain overwrite replaces everything; earlier versions stay readable.
    write(&table, B, "mode = \"overwrite\"").unwrap();
    assert_eq!(version(&table), 4);
    assert_eq!(rows(&table, None), expected(B));
    assert_eq!(rows(&table, Some(2)), expected(&merged));
}

#[test]
fn a_new_column_needs_schema_mode_merge_and_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    write(&table, A, "mode = \"overwrite\"").unwrap();
    let wider = format!(
        "[pipeline]\nname = \"wider\"\n\n[sources.batch]\nformat = \"inline\"\nrows = [ {{ id = 10, day = \"2024-06-01\", amount = 1.5, channel = \"web\" }} ]\n\n[sinks.table]\ninput = \"batch\"\nformat = \"delta\"\npath = \"{}\"\nmode = \"append\"\n",
        table.display()
    );
    let err = go(&wider).unwrap_err().to_string();
    assert!(err.contains("`channel` (Utf8)") && err.contains("schema_mode = \"merge\""), "{err}");
    assert_eq!(version(&table), 0, "a refused schema change commits nothing");
    assert_eq!(rows(&table, None), expected(A));

    // Other changes are refused with schema_mode = "merge" too: a column's type, a missing column.
    let retyped = wider.replace("amount = 1.5, channel = \"web\"", "amount = \"1.5\"");
    let err = go(&format!("{retyped}schema_mode = \"merge\"\n")).unwrap_err().to_string();
    assert!(err.contains("column `amount` is Float64 in the table but Utf8"), "{err}");
    let narrower = wider.replace(", amount = 1.5, channel = \"web\"", "");
    let err = go(&format!("{narrower}schema_mode = \"merge\"\n")).unwrap_err().to_string();
    assert!(err.contains("column(s) the new data lacks: amount"), "{err}");
    assert_eq!(version(&table), 0);

    go(&format!("{wider}schema_mode = \"merge\"\n")).unwrap();
    let meta = info(&table);
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["columns"], json!(["id", "day", "amount", "channel"]));
    let got = rows(&table, None);
    assert_eq!(got.len(), 5);
    assert_eq!(got[0]["channel"], Value::Null, "old rows read the new column as null");
    assert_eq!(got[4], json!({"id": 10, "day": "2024-06-01", "amount": 1.5, "channel": "web"}));
}

#[test]
fn a_failing_run_adds_nothing_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    write(&table, A, "mode = \"overwrite\"").unwrap();
    // The Delta sink's files are written; the other sink's plan fails: the gate refuses the commit.
    let text = format!(
        "[pipeline]\nname = \"two\"\n\n[sources.batch]\nformat = \"inline\"\nrows = {}\n\n[transforms.boom]\ntype = \"with_columns\"\ninput = \"batch\"\ncolumns.n = \"CAST('x' AS BIGINT) + id\"\n\n[sinks.table]\ninput = \"batch\"\nformat = \"delta\"\npath = \"{}\"\nmode = \"append\"\n\n[sinks.other]\ninput = \"boom\"\nformat = \"parquet\"\npath = \"{}\"\n",
        inline(B),
        table.display(),
        dir.path().join("other").display()
    );
    let parquet_files = || kiln::sources::files_under(&table, Some("parquet")).len();
    let committed = parquet_files();
    let err = go(&text).unwrap_err().to_string();
    assert!(err.contains("sink `other`"), "{err}");
    assert_eq!(version(&table), 0);
    assert_eq!(rows(&table, None), expected(A));
    assert!(parquet_files() > committed, "the Delta sink wrote its files and was stopped at its commit");

    // A `fail` rule that trips: the same.
    let text = format!(
        "[pipeline]\nname = \"checked\"\n\n[sources.batch]\nformat = \"inline\"\nrows = {}\n\n[transforms.checked]\ntype = \"expect\"\ninput = \"batch\"\nrules.small = {{ check = \"amount < 55\", on_fail = \"fail\" }}\n\n[sinks.table]\ninput = \"checked\"\nformat = \"delta\"\npath = \"{}\"\nmode = \"append\"\n",
        inline(B),
        table.display()
    );
    let err = go(&text).unwrap_err().to_string();
    assert!(err.contains("small"), "{err}");
    assert_eq!(version(&table), 0);
    assert_eq!(rows(&table, None), expected(A));
}

#[test]
fn kiln_reads_what_the_python_package_wrote_at_any_version() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("py");
    let t = table.to_str().unwrap();
    let as_json = |rows: &[(i64, &str, f64)]| serde_json::to_string(&expected(rows)).unwrap();
    oracle(&["write", t, "overwrite", &as_json(A), "day"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    oracle(&["write", t, "append", &as_json(B), "day"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    oracle(&["write", t, "overwrite", &as_json(&[(9, "2024-07-01", 9.0)]), "day"]);

    // Each version, read by a Kiln source, equals the Python package's read of it.
    let times: Vec<Value> = oracle(&["times", t]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for v in 0..=2u64 {
        for travel in [format!("version = {v}"), format!("timestamp = \"{}\"", times[v as usize]["between"].as_str().unwrap())] {
            let spec = format!(
                "[pipeline]\nname = \"read\"\n\n[sources.orders]\nformat = \"delta\"\npath = \"{t}\"\n{travel}\n\n[sinks.out]\ninput = \"orders\"\nformat = \"json\"\npath = \"{}\"\nsingle_file = true\n",
                dir.path().join("out.json").display()
            );
            go(&spec).unwrap();
            let text = std::fs::read_to_string(dir.path().join("out.json")).unwrap();
            let mut got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            got.sort_by_key(|r| r["id"].as_i64());
            assert_eq!(got, rows(&table, Some(v)), "{travel}");
        }
    }
    // The latest version by default; a version that does not exist is refused at check time.
    let spec = |travel: &str| format!("[pipeline]\nname = \"read\"\n\n[sources.orders]\nformat = \"delta\"\npath = \"{t}\"\n{travel}\n\n[sinks.out]\ninput = \"orders\"\nformat = \"console\"\n");
    let checked = kiln_compiler::check_text(Path::new("read.toml"), &spec(""), &kiln_tests::repo_root());
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let checked = kiln_compiler::check_text(Path::new("read.toml"), &spec("version = 7"), &kiln_tests::repo_root());
    let text = checked.render(false);
    assert!(checked.has_errors() && text.contains("version 7") && text.contains("read.toml:6:"), "{text}");
}

#[test]
fn a_missing_table_and_a_changed_schema_are_clear_errors_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    let spec = |path: &Path| {
        format!(
            "[pipeline]\nname = \"read\"\n\n[sources.orders]\nformat = \"delta\"\npath = \"{}\"\n\n[sinks.out]\ninput = \"orders\"\nformat = \"parquet\"\npath = \"{}\"\n",
            path.display(),
            dir.path().join("out").display()
        )
    };
    // Not a table: `kiln check` says so at the path.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let checked = kiln_compiler::check_text(Path::new("read.toml"), &spec(&dir.path().join("empty")), &kiln_tests::repo_root());
    let text = checked.render(false);
    assert!(checked.has_errors() && text.contains("not a Delta table") && text.contains("read.toml:6:"), "{text}");

    // The producer changes a column's type after `kiln check` pinned the schema: the run
    // fails naming the table and the column, and writes nothing.
    let as_json = |rows: &[(i64, &str, f64)]| serde_json::to_string(&expected(rows)).unwrap();
    oracle(&["write", t.to_str().unwrap(), "overwrite", &as_json(A)]);
    let pipeline = kiln_tests::pipeline(&spec(&t));
    oracle(&["write", t.to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "2024-05-01", "amount": "ten"}]"#]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let err = rt.block_on(run(&pipeline, &RunOptions::default())).unwrap_err().to_string();
    assert!(err.contains(t.to_str().unwrap()) && err.contains("`amount`") && err.contains("kiln check"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing was written");
}

/// `delete_where` with `merge` (Spark's `whenMatchedDelete`, then
/// `whenNotMatchedInsert` on its negation): a table row matched by a new row
/// that satisfies it is deleted, the other matched rows are updated, and new
/// rows that satisfy it are not inserted — also when the merge creates the table.
#[test]
fn merge_with_delete_where_deletes_the_rows_it_selects() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("accounts");
    let merge = "mode = \"merge\"\nkeys = [\"id\"]\ndelete_where = \"amount < 0\"";
    // A negative amount is a tombstone: id 2 is not inserted into the new table.
    write(&table, &[(1, "d1", 10.0), (2, "d1", -1.0), (3, "d2", 30.0)], merge).unwrap();
    assert_eq!(rows(&table, None), expected(&[(1, "d1", 10.0), (3, "d2", 30.0)]));
    // 1 deleted, 3 updated, 4 (a tombstone for a row that is not there) ignored, 5 inserted.
    write(&table, &[(1, "d1", -5.0), (3, "d2", 33.0), (4, "d2", -2.0), (5, "d3", 50.0)], merge).unwrap();
    assert_eq!(rows(&table, None), expected(&[(3, "d2", 33.0), (5, "d3", 50.0)]));
    assert_eq!(rows(&table, Some(0)), expected(&[(1, "d1", 10.0), (3, "d2", 30.0)]));
    assert_eq!(version(&table), 1);

    // Only with merge; and it is a condition on the new data's columns.
    let checked = kiln_compiler::check_text(Path::new("t.toml"), &write_spec(&table, A, "mode = \"append\"\ndelete_where = \"amount < 0\""), Path::new("."));
    assert!(checked.render(false).contains("`delete_where` goes with mode = \"merge\""), "{}", checked.render(false));
    let checked = kiln_compiler::check_text(Path::new("t.toml"), &write_spec(&table, A, &format!("{merge}\n").replace("amount < 0", "missing < 0")), Path::new("."));
    assert!(checked.has_errors() && checked.render(false).contains("missing"), "{}", checked.render(false));
}

/// Writers running at once on one table (issue 15: "two concurrent writers
/// conflict cleanly"). Appends never conflict: each lands as its own version,
/// as delta-rs retries a blind append past the versions others took.
/// Overwrites never mix: the table holds exactly one writer's rows at every
/// version, and a writer whose read was overtaken is refused with a conflict,
/// its rows in no version.
#[test]
fn concurrent_writers_conflict_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    write(&table, A, "mode = \"overwrite\"").unwrap();

    let at_once = |batches: &[Vec<(i64, &'static str, f64)>], sink: &str| -> Vec<Result<Option<u64>, String>> {
        let barrier = std::sync::Barrier::new(batches.len());
        std::thread::scope(|scope| {
            let handles: Vec<_> = batches
                .iter()
                .map(|b| {
                    let (barrier, table) = (&barrier, &table);
                    scope.spawn(move || {
                        barrier.wait();
                        write(table, b, sink).map(|r| r.sinks[0].rows).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };

    let appends: Vec<Vec<(i64, &str, f64)>> = (0..4).map(|k| vec![(100 + k, "2024-06-01", k as f64)]).collect();
    for r in at_once(&appends, "mode = \"append\"") {
        assert_eq!(r, Ok(Some(1)));
    }
    assert_eq!(version(&table), 4, "one version per append");
    let all: Vec<(i64, &str, f64)> = A.iter().copied().chain(appends.iter().flatten().copied()).collect();
    assert_eq!(rows(&table, None), expected(&all));

    let x = vec![(200, "2024-07-01", 1.0), (201, "2024-07-01", 2.0)];
    let y = vec![(300, "2024-07-02", 3.0)];
    let results = at_once(&[x.clone(), y.clone()], "mode = \"overwrite\"");
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert!(won >= 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            let e = e.to_lowercase();
            assert!(e.contains("concurrent") || e.contains("conflict"), "a lost overwrite says why: {e}");
        }
    }
    assert_eq!(version(&table), 4 + won as u64, "one version per winner, none for a loser");
    let (x, y) = (expected(&x), expected(&y));
    // Every version after the appends is one writer's rows, never a mix.
    for v in 5..=version(&table) {
        let got = rows(&table, Some(v));
        assert!(got == x || got == y, "version {v} mixes writers: {got:?}");
    }
    if won == 1 {
        let winner = if results[0].is_ok() { &x } else { &y };
        assert_eq!(&rows(&table, None), winner);
    }
}

/// A job whose runtime lacks the `delta` feature (`kiln build` switches it on for every
/// spec with a Delta table; a Rust-API build can turn it off) refuses the table before the
/// run reads or writes anything, and says which feature is missing.
#[test]
fn a_job_built_without_the_delta_feature_refuses_delta_tables_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let spec = dir.path().join("delta_feature_off.toml");
    std::fs::write(&spec, write_spec(&table, A, "").replace("name = \"delta_write\"", "name = \"delta_feature_off\"")).unwrap();
    let checked = kiln_compiler::check_file(&spec).unwrap();
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let pipeline = checked.pipeline.unwrap();
    let ws = kiln_compiler::job::locate(Some(&kiln_tests::repo_root())).unwrap();
    let _held = ws.lock(&pipeline.name).unwrap();
    let manifest = ws.write_crate(&pipeline, "delta_feature_off.toml", &checked.rust).unwrap().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(r#"default-features = false, features = ["delta"] }"#), "{text}");
    std::fs::write(&manifest, text.replace(r#", features = ["delta"]"#, "")).unwrap();
    let binary = ws.cargo_build(&pipeline.name, false).unwrap();
    let out = std::process::Command::new(&binary).arg("run").current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("the Delta table {} needs Kiln's `delta` runtime feature", table.display())), "{stderr}");
    assert!(!table.exists(), "nothing written");
}

/// A run killed after its Delta sinks wrote their data files, before any commit
/// (`KILN_FAULT=staged` aborts the process there, as a kill would), adds nothing to
/// any table's log: each keeps its version and rows, and the files it wrote are named
/// by no commit. The next run commits each table once (SPEC §6a: "a failed or killed
/// run adds nothing to the log").
#[test]
fn a_run_killed_after_writing_delta_files_adds_nothing_to_the_log() {
    let binary = kiln_tests::build_job("tests/delta/replace_where_cluster.toml");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.csv");
    std::fs::write(&input, "id,day,n\n10,d2,100\n11,d2,110\n12,d2,120\n").unwrap();
    let out = dir.path().join("lake");
    oracle(&["write", out.join("by_day").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 2, "day": "d2", "n": 2}]"#, "day"]);
    oracle(&["write", out.join("by_n").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 2, "day": "d2", "n": 150}]"#]);
    oracle(&["write", out.join("merged").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 12, "day": "d2", "n": 5}]"#]);
    let sinks = ["by_day", "by_n", "merged"];
    let before: Vec<Vec<Value>> = sinks.iter().map(|s| rows(&out.join(s), None)).collect();
    let parquet = |table: &Path| kiln_tests::files_under(table).into_iter().filter(|f| f.ends_with(".parquet")).count();
    let files_before: Vec<usize> = sinks.iter().map(|s| parquet(&out.join(s))).collect();
    let run = |fault: Option<&str>| {
        let mut cmd = std::process::Command::new(&binary);
        cmd.args(["run", "--param"]).arg(format!("input={}", input.display())).arg("--param").arg(format!("output={}", out.display()));
        if let Some(f) = fault {
            cmd.env("KILN_FAULT", f);
        }
        cmd.output().unwrap()
    };
    let killed = run(Some("staged"));
    assert!(!killed.status.success() && String::from_utf8_lossy(&killed.stderr).contains("KILN_FAULT=staged"), "{}", String::from_utf8_lossy(&killed.stderr));
    for (i, sink) in sinks.iter().enumerate() {
        let table = out.join(sink);
        assert_eq!(version(&table), 0, "{sink}: the killed run added a version");
        assert_eq!(rows(&table, None), before[i], "{sink}");
    }
    // The killed run had written its data files (the kill came after them): named by no commit.
    let written: usize = sinks.iter().enumerate().map(|(i, s)| parquet(&out.join(s)) - files_before[i]).sum();
    assert!(written >= 3, "the kill came before the files were written: the test proves nothing");

    let again = run(None);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let j = |id: i64, day: &str, n: i64| json!({"id": id, "day": day, "n": n});
    assert_eq!(rows(&out.join("by_day"), None), vec![j(1, "d1", 1), j(10, "d2", 100), j(11, "d2", 110), j(12, "d2", 120)]);
    assert_eq!(rows(&out.join("by_n"), None), vec![j(1, "d1", 1), j(10, "d2", 100), j(11, "d2", 110), j(12, "d2", 120)]);
    // Merge: 10 (n = 100) is not inserted (delete_where), 11 inserted, 12 updated.
    assert_eq!(rows(&out.join("merged"), None), vec![j(1, "d1", 1), j(11, "d2", 110), j(12, "d2", 120)]);
    for sink in sinks {
        assert_eq!(version(&out.join(sink)), 1, "{sink}: one commit");
    }
}
