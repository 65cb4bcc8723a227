//! Shared helpers of the end-to-end tests (`tests/tests/*.rs`): building job
//! binaries the way `kiln build` does, and reading their outputs back as rows.

pub mod postgres;
pub mod streaming;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Child processes (a scheduler, executors, a server) killed when the test
/// ends, however it ends.
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every file under `dir` (relative paths, sorted), skipping what vanishes while it
/// is listed (a run writing there).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Waits (at most 240 s) for `child`, spawned with a piped stderr, to exit: its
/// status and stderr.
pub fn finish(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(240), "the job neither finished nor failed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr is piped"), &mut stderr).unwrap();
    (status, stderr)
}

/// Starts a process that listens on `ports` consecutive ports from a base found
/// free on `ip` (and on every interface) just before: `spawn(base)` starts it.
/// A parallel test can take a port between the probe and the bind; the child
/// then exits, and it is started again on new ports (five tries). Returns the
/// child, listening on every port, and the base.
pub fn spawn_listening(ip: std::net::IpAddr, ports: u16, mut spawn: impl FnMut(u16) -> std::process::Child) -> (std::process::Child, u16) {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};
    let free = |p: u16| TcpListener::bind((ip, p)).is_ok() && TcpListener::bind(("0.0.0.0", p)).is_ok();
    for _ in 0..5 {
        let base = loop {
            let p = TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
            if p.checked_add(ports).is_some() && (0..ports).all(|k| free(p + k)) {
                break p;
            }
        };
        let mut child = spawn(base);
        let start = Instant::now();
        let exited = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if (0..ports).all(|k| std::net::TcpStream::connect((ip, base + k)).is_ok()) {
                // Another process may be the one listening: this child then fails to bind.
                std::thread::sleep(Duration::from_millis(200));
                break matches!(child.try_wait(), Ok(Some(_)));
            }
            assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on {ip}:{base}");
            std::thread::sleep(Duration::from_millis(50));
        };
        if !exited {
            return (child, base);
        }
    }
    panic!("a process meant to listen on {ip} exited five times");
}

/// Every Parquet output under `dir` (a sink's directory or file), by path
/// relative to it, rows sorted.
pub fn parquet_outputs(dir: &Path) -> Vec<(PathBuf, Vec<Row>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        found.push((p.strip_prefix(dir).unwrap().to_path_buf(), sorted(read_parquet_rows(&p))));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// Checks `spec` (relative to the repo root), generates its crate and builds it
/// in the dev profile; returns the binary. One build at a time per test binary.
pub fn build_job(spec: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let checked = kiln_compiler::check_file(&root.join(spec)).unwrap();
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let pipeline = checked.pipeline.unwrap();
    let ws = kiln_compiler::job::locate(Some(&root)).unwrap();
    // Other test processes may build the same job at once.
    let _held = ws.lock(&pipeline.name).unwrap();
    ws.write_crate(&pipeline, spec, &checked.rust).unwrap();
    ws.cargo_build(&pipeline.name, false).unwrap()
}

/// One value of an output row, compared the way `../shared/bench/check.py` does:
/// doubles within a relative tolerance, everything else exactly.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Int(a), Cell::Int(b)) => a == b,
            (Cell::Float(a), Cell::Float(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-9,
            (Cell::Str(a), Cell::Str(b)) => a == b,
            _ => false,
        }
    }
}

/// A row as column name → value.
pub type Row = BTreeMap<String, Cell>;

/// Every row of a Parquet output (a file, or a directory of part files with
/// hive-style `k=v` directories, whose values become string columns).
pub fn read_parquet_rows(path: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    collect(path, &mut Vec::new(), &mut rows);
    rows
}

/// The data files of an output (a file, or a directory of part files with
/// hive-style `k=v` directories), each with its partition values, in name
/// order. Every file is listed: a stray one (a staging leftover) is the caller's to reject.
pub fn part_files(path: &Path) -> Vec<(PathBuf, Vec<(String, String)>)> {
    fn walk(path: &Path, partitions: &mut Vec<(String, String)>, out: &mut Vec<(PathBuf, Vec<(String, String)>)>) {
        if !path.is_dir() {
            out.push((path.to_path_buf(), partitions.clone()));
            return;
        }
        let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for entry in entries {
            let name = entry.file_name().unwrap().to_string_lossy().into_owned();
            if entry.is_dir() {
                let (k, v) = name.split_once('=').unwrap_or_else(|| panic!("unexpected directory {}", entry.display()));
                partitions.push((k.to_string(), v.to_string()));
                walk(&entry, partitions, out);
                partitions.pop();
            } else {
                walk(&entry, partitions, out);
            }
        }
    }
    let mut out = Vec::new();
    if path.exists() {
        walk(path, &mut Vec::new(), &mut out);
    }
    out
}

fn collect(path: &Path, partitions: &mut Vec<(String, String)>, rows: &mut Vec<Row>) {
    if path.is_dir() {
        for (file, parts) in part_files(path) {
            assert!(file.to_string_lossy().ends_with(".parquet"), "stray file in output: {}", file.display());
            collect(&file, &mut parts.clone(), rows);
        }
        return;
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        for i in 0..batch.num_rows() {
            let mut row = Row::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                row.insert(field.name().clone(), cell(column.as_ref(), i));
            }
            for (k, v) in partitions.iter() {
                row.insert(k.clone(), Cell::Str(v.clone()));
            }
            rows.push(row);
        }
    }
}

fn cell(a: &dyn Array, i: usize) -> Cell {
    if a.is_null(i) {
        return Cell::Null;
    }
    match a.data_type() {
        DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
        // Integer widths differ between engines (row_number is uint64 in DataFusion,
        // int64 in DuckDB); check.py compares them as int64, and so do we.
        t if t.is_integer() => {
            let casted = arrow::compute::cast(&a.slice(i, 1), &DataType::Int64).unwrap();
            Cell::Int(casted.as_primitive::<Int64Type>().value(0))
        }
        DataType::Float32 => Cell::Float(f64::from(a.as_primitive::<arrow::datatypes::Float32Type>().value(i))),
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
        DataType::Utf8View => Cell::Str(a.as_string_view().value(i).to_string()),
        other => {
            let casted = arrow::compute::cast(&a.slice(i, 1), &DataType::Utf8).unwrap_or_else(|e| panic!("{other}: {e}"));
            Cell::Str(casted.as_string::<i32>().value(0).to_string())
        }
    }
}

/// Rows of an expected-output CSV (header row; empty field = null). Fields that
/// parse as integers are ints, as floats are floats, else strings.
pub fn read_expected_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            header
                .iter()
                .zip(line.split(','))
                .map(|(h, v)| {
                    let c = if v.is_empty() {
                        Cell::Null
                    } else if let Ok(i) = v.parse::<i64>() {
                        Cell::Int(i)
                    } else if let Ok(f) = v.parse::<f64>() {
                        Cell::Float(f)
                    } else {
                        Cell::Str(v.to_string())
                    };
                    (h.to_string(), c)
                })
                .collect()
        })
        .collect()
}

/// Sorts rows by their string and integer cells so two outputs compare as multisets.
pub fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    let key = |r: &Row| -> Vec<String> {
        r.values()
            .map(|c| match c {
                Cell::Null => "\0".to_string(),
                Cell::Int(i) => format!("{i:020}"),
                Cell::Float(_) => String::new(),
                Cell::Str(s) => s.clone(),
            })
            .collect()
    };
    rows.sort_by_key(key);
    rows
}

/// Every file under `dir` with its bytes, for "nothing changed" assertions.
pub fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Checks a spec given as text (relative paths from the repo root) and panics with
/// the rendered diagnostics if it has errors.
pub fn pipeline(text: &str) -> kiln::plan::Pipeline {
    let checked = kiln_compiler::check_text(Path::new("test.toml"), text, &repo_root());
    assert!(!checked.has_errors(), "{}", checked.render(false));
    checked.pipeline.unwrap()
}

/// The rows of node `node`, planned exactly as the binary plans them.
pub fn node_rows(pipeline: &kiln::plan::Pipeline, node: &str, params: &[(&str, &str)]) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let values = kiln::params::resolve(&pipeline.params, &pairs, |_| None).unwrap();
        let ctx = kiln::session::context(&Default::default()).unwrap();
        let plans = kiln::run::node_plans(pipeline, &ctx, &values).await.unwrap();
        let df = datafusion::dataframe::DataFrame::new(ctx.state(), plans[node].clone());
        let batches = df.collect().await.unwrap();
        batches_to_rows(&batches)
    })
}

/// Record batches as rows.
pub fn batches_to_rows(batches: &[arrow::array::RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            rows.push(
                batch.schema().fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i))).collect(),
            );
        }
    }
    rows
}

/// A row from `(column, cell)` pairs.
pub fn row(cells: &[(&str, Cell)]) -> Row {
    cells.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Shorthands for cells.
pub fn s(v: &str) -> Cell {
    Cell::Str(v.to_string())
}
pub fn i(v: i64) -> Cell {
    Cell::Int(v)
}
pub fn f(v: f64) -> Cell {
    Cell::Float(v)
}

/// Registers `counted(x int64) -> x`, a function that adds the number of rows
/// it is evaluated on to `counter`: proof of how often a node is computed.
pub fn register_counting_udf(counter: &'static std::sync::atomic::AtomicUsize) {
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let udf = create_udf(
        "counted",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        std::sync::Arc::new(move |args: &[ColumnarValue]| {
            let a = match &args[0] {
                ColumnarValue::Array(a) => std::sync::Arc::clone(a),
                ColumnarValue::Scalar(s) => s.to_array()?,
            };
            counter.fetch_add(a.len(), std::sync::atomic::Ordering::SeqCst);
            let a: &Int64Array = a.as_any().downcast_ref().expect("int64");
            Ok(ColumnarValue::Array(std::sync::Arc::new(a.clone()) as ArrayRef))
        }),
    );
    kiln::functions::register_udfs([std::sync::Arc::new(udf)]);
}

/// Where the `deltalake` Python package is installed (`.ci/run` puts it in the
/// tools cache; a test that cannot find it installs it there).
pub fn pydelta() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/kiln/tools/pydelta");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let ok = |d: &Path| std::process::Command::new("python3").args(["-c", "import deltalake"]).env("PYTHONPATH", d).status().is_ok_and(|s| s.success());
    if !ok(&dir) {
        let status = std::process::Command::new("python3").args(["-m", "pip", "install", "-q", "--target"]).arg(&dir).arg("deltalake==1.6.6").status().unwrap();
        assert!(status.success() && ok(&dir), "installing the deltalake Python package failed: python3 -m pip install --target ~/.cache/kiln/tools/pydelta deltalake==1.6.6");
    }
    dir
}

/// Runs tests/delta/oracle.py (the `deltalake` Python package reading or
/// writing a Delta table); its standard output.
pub fn delta_oracle(args: &[&str]) -> String {
    let out = std::process::Command::new("python3").arg(repo_root().join("tests/delta/oracle.py")).args(args).env("PYTHONPATH", pydelta()).output().unwrap();
    assert!(out.status.success(), "oracle.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `rows` transactions in the etl spec's CSV layout (deterministic), and optionally one bad row.
pub fn write_transactions(path: &Path, rows: usize, bad_row_at: Option<usize>) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "transaction_id,customer_id,amount,date,category").unwrap();
    for i in 0..rows {
        if Some(i) == bad_row_at {
            writeln!(f, "T{i:010},C{:06},not-a-number,2024-01-01,A", i % 5000).unwrap();
            continue;
        }
        let amount = ((i * 7919) % 100_000) as f64 / 100.0 - 50.0;
        let category = ["A", "B", "C", "D", "E"][i % 5];
        // Every 50th id repeats the previous one, so the dedupe has work to do.
        let id = if i % 50 == 0 && i > 0 { i - 1 } else { i };
        writeln!(f, "T{id:010},C{:06},{amount},2024-{:02}-{:02},{category}", (i * 31) % 50_000, 1 + i % 12, 1 + i % 28).unwrap();
    }
}
