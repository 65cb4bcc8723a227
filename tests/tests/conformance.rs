//! The conformance suite: specs written from `../shared/SPEC.md` alone, run end
//! to end, compared with rows computed independently (DuckDB or by hand).
//!
//! Layout (see tests/conformance/README.md): `tests/conformance/<section>/<case>/`
//! holds `spec.toml` and `expected/NODE.jsonl` (one JSON object per row) for
//! each node or sink to compare; `data/` beside the sections is shared input.
//! Header comments of `spec.toml` steer a case:
//!
//! ```text
//! # spec: §4 "on = [\"l.cust = r.id\"]"      what SPEC text the case checks (shown in the table)
//! # expect-error: unknown column            `kiln check` must fail with this text …
//! # expect-error-at: 12:5                   … at spec.toml:12:5
//! # expect-exit: 3                          the run must fail with this exit code
//! # expect-run-error: drift                 … and an error containing this text
//! # ordered: NODE                           NODE's rows compare in order (default: as a multiset)
//! # param: k=v                              a --param for the run
//! # tests-fail: NAME                        the spec's [[tests]] named NAME must fail (every
//!                                           other one must pass; with no such line, all pass)
//! # tests-diff: TEXT                        a failing test's report must contain TEXT
//! # known-gap: WHY                          Kiln does not do this yet (an open issue): the case
//!                                           must fail, and is listed, not counted as a failure;
//!                                           once it passes, the line must go
//! ```
//!
//! A spec with `[[tests]]` has them run (`kiln test`) in addition to the rest.
//!
//! Each case runs in a fresh temporary directory holding a copy of the case's
//! files and a `data` link to the shared data, the binary's working directory
//! (so `path = "data/people.csv"` and `path = "out/result"` mean what a user
//! means). Sinks (names of `[sinks.*]`) are compared by running the whole
//! pipeline (`kiln::run::run`, as the binary's `run`) and reading what it wrote.
//! Prints a table: section → cases → passed, then `N passed, N failed`.
//! `cargo test --test conformance -- FILTER` runs the cases whose path contains FILTER.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

struct Case {
    dir: PathBuf,
    section: String,
    name: String,
    meta: Vec<(String, String)>,
}

impl Case {
    fn meta(&self, key: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn metas(&self, key: &str) -> impl Iterator<Item = &str> {
        self.meta.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let root = kiln_tests::repo_root().join("tests/conformance");
    let mut cases = Vec::new();
    for section in sorted_dirs(&root) {
        let section_name = section.file_name().unwrap().to_string_lossy().into_owned();
        if section_name == "data" {
            continue;
        }
        for dir in sorted_dirs(&section) {
            if !dir.join("spec.toml").exists() {
                continue;
            }
            let rel = format!("{section_name}/{}", dir.file_name().unwrap().to_string_lossy());
            if filter.as_deref().is_some_and(|f| !rel.contains(f)) {
                continue;
            }
            let text = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
            let meta = text
                .lines()
                .filter_map(|l| l.strip_prefix("# "))
                .filter_map(|l| l.split_once(": "))
                .filter(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect();
            cases.push(Case { name: dir.file_name().unwrap().to_string_lossy().into_owned(), section: section_name.clone(), dir, meta });
        }
    }
    let start_dir = std::env::current_dir().unwrap();
    let mut table: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let (mut failures, mut gaps) = (Vec::new(), Vec::new());
    for case in &cases {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(case, &root)));
        std::env::set_current_dir(&start_dir).unwrap();
        let entry = table.entry(case.section.clone()).or_default();
        entry.0 += 1;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()),
        };
        match (error, case.meta("known-gap")) {
            (None, None) => {
                entry.1 += 1;
                println!("ok     {}/{}", case.section, case.name);
            }
            (Some(_), Some(why)) => {
                entry.2 += 1;
                println!("gap    {}/{}  ({why})", case.section, case.name);
                gaps.push(format!("{}/{}: {why}", case.section, case.name));
            }
            (None, Some(_)) => {
                println!("FAILED {}/{}", case.section, case.name);
                failures.push(format!("{}/{}: passes now; remove its `known-gap` line", case.section, case.name));
            }
            (Some(e), None) => {
                println!("FAILED {}/{}", case.section, case.name);
                failures.push(format!("{}/{}  ({})\n{e}", case.section, case.name, case.meta("spec").unwrap_or("")));
            }
        }
    }
    for f in &failures {
        println!("\n---- {f}");
    }
    println!("\n| SPEC section | cases | pass | known gap |\n|---|---:|---:|---:|");
    for (section, (n, ok, gap)) in &table {
        println!("| {section} | {n} | {ok} | {gap} |");
    }
    if !gaps.is_empty() {
        println!("\nknown gaps (open issues):");
        for g in &gaps {
            println!("  {g}");
        }
    }
    let passed: usize = table.values().map(|(_, ok, _)| ok).sum();
    println!("\nconformance: {} passed, {} failed", passed, failures.len());
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    v.sort();
    v
}

fn run_case(case: &Case, root: &Path) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    copy_dir(&case.dir, work.path());
    std::os::unix::fs::symlink(root.join("data"), work.path().join("data")).unwrap();
    std::env::set_current_dir(work.path()).unwrap();
    let spec_path = work.path().join("spec.toml");
    let checked = kiln_compiler::check_file(&spec_path).unwrap();
    let rendered = checked.render(false);

    if let Some(want) = case.meta("expect-error") {
        if !checked.has_errors() {
            return Err(format!("kiln check accepted the spec; expected an error containing {want:?}\n{rendered}"));
        }
        // The diagnostics' own words (message, label, help, notes), not the quoted
        // spec lines around them, which hold the case's comments too.
        let said: String = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{} {} {} {} {}\n", d.code, d.message, d.label, d.help.clone().unwrap_or_default(), d.notes.join(" ")))
            .collect();
        if !said.contains(want) {
            return Err(format!("expected an error containing {want:?}, got:\n{rendered}"));
        }
        if let Some(at) = case.meta("expect-error-at") {
            let at = format!("spec.toml:{at}");
            if !rendered.contains(&at) {
                return Err(format!("expected the error at {at}, got:\n{rendered}"));
            }
        }
        return Ok(());
    }
    if checked.has_errors() {
        return Err(format!("kiln check rejected a valid spec:\n{rendered}"));
    }
    let pipeline = checked.pipeline.unwrap();
    let params: Vec<(String, String)> = case
        .metas("param")
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sinks: BTreeMap<&str, &kiln::plan::Sink> = pipeline.sinks.iter().map(|s| (s.name.as_str(), s)).collect();
    let expected_files = expected_files(&case.dir);
    let wants_failure = case.meta("expect-exit").is_some() || case.meta("expect-run-error").is_some();
    let wants_run = wants_failure || expected_files.iter().any(|(n, _)| sinks.contains_key(n.as_str()));
    if wants_run {
        let opts = kiln::run::RunOptions { params: params.clone(), ..Default::default() };
        let result = rt.block_on(kiln::run::run(&pipeline, &opts));
        match (result, wants_failure) {
            (Ok(_), false) => {}
            (Ok(_), true) => return Err(format!("the run succeeded; expected it to fail (exit {})", case.meta("expect-exit").unwrap_or("≠ 0"))),
            (Err(e), false) => return Err(format!("the run failed: {e}")),
            (Err(e), true) => {
                let got = kiln::cli::exit_code(&e);
                if let Some(code) = case.meta("expect-exit")
                    && got.to_string() != code
                {
                    return Err(format!("the run failed with exit code {got}, expected {code}: {e}"));
                }
                if let Some(want) = case.meta("expect-run-error")
                    && !e.to_string().contains(want)
                {
                    return Err(format!("expected a run error containing {want:?}, got: {e}"));
                }
            }
        }
    }
    let mut problems = Vec::new();
    if !pipeline.tests.is_empty() {
        let outcomes = rt.block_on(kiln::testing::run_all(&pipeline));
        let must_fail: Vec<&str> = case.metas("tests-fail").collect();
        for name in &must_fail {
            if !outcomes.iter().any(|o| o.name == *name) {
                problems.push(format!("`tests-fail: {name}` names no [[tests]] entry"));
            }
        }
        let mut report = Vec::new();
        kiln::testing::report(&outcomes, &mut report);
        let report = String::from_utf8(report).unwrap();
        for o in &outcomes {
            if o.passed() == must_fail.contains(&o.name.as_str()) {
                problems.push(format!("[[tests]] `{}` {}:\n{report}", o.name, if o.passed() { "passed, expected to fail" } else { "failed" }));
            }
        }
        for want in case.metas("tests-diff") {
            if !report.contains(want) {
                problems.push(format!("the [[tests]] report lacks {want:?}:\n{report}"));
            }
        }
    }
    for (name, file) in &expected_files {
        let expected = read_jsonl(file);
        let got = match sinks.get(name.as_str()) {
            Some(sink) => read_sink(sink, &params, &pipeline),
            None => {
                let values = kiln::params::resolve(&pipeline.params, &params, |k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
                rt.block_on(node_json(&pipeline, name, &values))?
            }
        };
        let ordered = case.metas("ordered").any(|n| n == name);
        if let Err(e) = compare(&got, &expected, ordered) {
            problems.push(format!("`{name}`: {e}"));
        }
    }
    if expected_files.is_empty() && case.meta("expect-exit").is_none() && pipeline.tests.is_empty() {
        return Err("the case has no expected/*.jsonl and no expect-* line".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn expected_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir.join("expected")) else { return Vec::new() };
    let mut v: Vec<(String, PathBuf)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// A node's rows, planned exactly as the binary plans them, as JSON objects.
async fn node_json(pipeline: &kiln::plan::Pipeline, node: &str, values: &kiln::params::Values) -> Result<Vec<Value>, String> {
    let ctx = kiln::session::context(&kiln::session::SessionOptions::default().over(&pipeline.runtime)).map_err(|e| e.to_string())?;
    let (plans, _prepared) = kiln::run::run_plans(pipeline, &ctx, values).await.map_err(|e| e.to_string())?;
    let plan = plans.get(node).ok_or_else(|| format!("no node `{node}` (expected/{node}.jsonl)"))?;
    let batches = datafusion::dataframe::DataFrame::new(ctx.state(), plan.clone()).collect().await.map_err(|e| e.to_string())?;
    Ok(batches_json(&batches))
}

fn batches_json(batches: &[arrow::array::RecordBatch]) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut writer = arrow::json::WriterBuilder::new().with_explicit_nulls(true).build::<_, arrow::json::writer::LineDelimited>(&mut buf);
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
    String::from_utf8(buf).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What a sink wrote, as JSON objects: every part file under its path (hive
/// `k=v` directories become string columns).
fn read_sink(sink: &kiln::plan::Sink, params: &[(String, String)], pipeline: &kiln::plan::Pipeline) -> Vec<Value> {
    let values = kiln::params::resolve(&pipeline.params, params, |k| std::env::var(k).ok()).unwrap();
    let path = kiln::params::interpolate(&sink.path, &values, |k| std::env::var(k).ok()).unwrap();
    // SPEC §11: with single_file = true, `path` is the file.
    if sink.single_file && Path::new(&path).exists() {
        assert!(Path::new(&path).is_file(), "sink `{}` has single_file = true but {path} is a directory", sink.name);
    }
    if sink.format == kiln::plan::SinkFormat::Delta {
        return read_delta(Path::new(&path));
    }
    let mut rows = Vec::new();
    read_output(Path::new(&path), &mut rows);
    rows
}

/// A Delta table's rows as the `deltalake` Python package reads them (tests/delta/oracle.py).
fn read_delta(path: &Path) -> Vec<Value> {
    kiln_tests::delta_oracle(&["rows", path.to_str().unwrap()]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn read_output(path: &Path, rows: &mut Vec<Value>) {
    // Nothing written: no rows (an expected file with no rows says the sink must not write).
    for (file, partitions) in kiln_tests::part_files(path) {
        let name = file.to_string_lossy();
        let file_rows: Vec<Value> = if name.ends_with(".parquet") {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap()).unwrap().build().unwrap();
            batches_json(&reader.collect::<Result<Vec<_>, _>>().unwrap())
        } else if name.ends_with(".json") || name.ends_with(".jsonl") {
            read_jsonl(&file)
        } else if name.ends_with(".csv") {
            csv_rows(&file)
        } else if name.ends_with(".orc") {
            let reader = kiln::sources::orc::orc_rust::arrow_reader::ArrowReaderBuilder::try_new(std::fs::File::open(&file).unwrap()).unwrap().build();
            batches_json(&reader.collect::<Result<Vec<_>, _>>().unwrap())
        } else {
            panic!("cannot read output file {}", file.display())
        };
        for mut row in file_rows {
            for (k, v) in &partitions {
                // SPEC §11: partition columns are not repeated inside the files.
                assert!(row.get(k).is_none(), "{}: partition column `{k}` is repeated inside the file", file.display());
                row.as_object_mut().unwrap().insert(k.clone(), Value::String(v.clone()));
            }
            rows.push(row);
        }
    }
}

/// A CSV output's rows with every field as a string (empty = null); quoted
/// fields may hold commas and doubled quotes.
fn csv_rows(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted, mut in_quotes) = (Vec::new(), String::new(), false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            ',' if !in_quotes => record.push((std::mem::take(&mut field), std::mem::take(&mut quoted))),
            '\n' if !in_quotes => {
                record.push((std::mem::take(&mut field), std::mem::take(&mut quoted)));
                records.push(std::mem::take(&mut record));
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push((field, quoted));
        records.push(record);
    }
    let mut it = records.into_iter();
    let Some(header) = it.next() else { return Vec::new() };
    it.map(|r| {
        Value::Object(
            header
                .iter()
                .zip(r)
                .map(|((h, _), (v, quoted))| (h.clone(), if v.is_empty() && !quoted { Value::Null } else { Value::String(v) }))
                .collect(),
        )
    })
    .collect()
}

/// Compares rows: same columns, values equal as [`same`] says; as multisets
/// unless `ordered`.
fn compare(got: &[Value], expected: &[Value], ordered: bool) -> Result<(), String> {
    let show = |rows: &[Value]| rows.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n");
    let mismatch = || format!("got {} rows:\n{}\nexpected {} rows:\n{}", got.len(), show(got), expected.len(), show(expected));
    if got.len() != expected.len() {
        return Err(mismatch());
    }
    if let (Some(g), Some(e)) = (got.first(), expected.first()) {
        let gk: Vec<&String> = g.as_object().unwrap().keys().collect();
        let mut ek: Vec<&String> = e.as_object().unwrap().keys().collect();
        ek.sort();
        let mut gks = gk.clone();
        gks.sort();
        if gks != ek {
            return Err(format!("columns {gk:?}, expected {ek:?}\n{}", mismatch()));
        }
    }
    if ordered {
        return if got.iter().zip(expected).all(|(g, e)| same(g, e)) { Ok(()) } else { Err(mismatch()) };
    }
    // Multiset: match each expected row with an unused equal row.
    let mut used = vec![false; got.len()];
    for e in expected {
        match (0..got.len()).find(|&i| !used[i] && same(&got[i], e)) {
            Some(i) => used[i] = true,
            None => return Err(format!("no row equal to {e}\n{}", mismatch())),
        }
    }
    Ok(())
}

/// Equality of JSON values as two engines write them: numbers within 1e-9
/// relative (integers exactly), a number equal to a numeric string (decimals),
/// timestamps with `T` or a space, objects key by key, arrays in order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => close(x.as_f64().unwrap(), y.as_f64().unwrap()),
        },
        (Value::Number(x), Value::String(s)) | (Value::String(s), Value::Number(x)) => s.parse::<f64>().is_ok_and(|y| close(x.as_f64().unwrap(), y)),
        (Value::String(x), Value::String(y)) => x == y || (timestamp_like(x) && timestamp_like(y) && x.replacen('T', " ", 1) == y.replacen('T', " ", 1)),
        (Value::Bool(x), Value::String(s)) | (Value::String(s), Value::Bool(x)) => s == &x.to_string(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

/// `YYYY-MM-DD?HH:…`: a timestamp two engines may write with `T` or a space.
fn timestamp_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && (b[10] == b'T' || b[10] == b' ') && b[13] == b':'
}

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) + 1e-9 || (x.is_nan() && y.is_nan())
}
