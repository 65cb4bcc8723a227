//! Helpers of the streaming tests (`tests/tests/streaming.rs`, `kafka.rs`): click
//! events, written as files or produced to a topic, and the DuckDB oracle's
//! expected windows (`tests/streaming/oracle.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Row, read_expected_csv, repo_root, sorted};

/// The spec's windows: 5-minute tumbling, 2-minute watermark.
pub const TUMBLE: (u64, u64, u64) = (300, 300, 120);

/// `files` files of `rows` click events each, in order of arrival: times advance a
/// minute per file, with jitter up to 7 minutes back (out of order; some late) and
/// 1 minute forward; a few negative durations (filtered) and times missing (no window).
pub fn write_events(dir: &Path, first: usize, files: usize, rows: usize, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut written = Vec::new();
    for (f, text) in (first..).zip(events(first, files, rows, seed)) {
        let path = dir.join(format!("part-{f:04}.json"));
        // Written beside and renamed in, as a producer should (a stream never sees half a file).
        let tmp = dir.join(format!(".part-{f:04}.json.tmp"));
        std::fs::write(&tmp, text.join("")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        // Distinct modification times keep the arrival order.
        let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + f as u64);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        written.push(path);
    }
    written
}

/// The JSON lines (each ending in a newline) of [`write_events`]' files, per file.
pub fn events(first: usize, files: usize, rows: usize, seed: u64) -> Vec<Vec<String>> {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let pages = ["/home", "/cart", "/checkout", "/help"];
    let mut out = Vec::new();
    for f in first..first + files {
        let mut lines = Vec::new();
        for _ in 0..rows {
            let base = 1_714_557_600 + f as i64 * 60; // 2024-05-01T10:00:00 + a minute per file
            let t = base - next(420) as i64 + next(60) as i64;
            let ts = match next(40) {
                0 => "null".to_string(),
                _ => {
                    // Seconds into 2024-05-01 (UTC); every time falls on that day.
                    let s = t - 1_714_521_600;
                    format!("\"2024-05-01T{:02}:{:02}:{:02}\"", s / 3600, s / 60 % 60, s % 60)
                }
            };
            let duration = next(3000) as i64 - 100;
            lines.push(format!("{{\"user_id\": \"u{}\", \"page\": \"{}\", \"ts\": {ts}, \"duration_ms\": {duration}}}\n", next(25), pages[next(4) as usize]));
        }
        out.push(lines);
    }
    out
}

fn python_with_duckdb() -> Command {
    let mut c = Command::new("python3");
    let duck = std::env::var("KILN_PYDUCK").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kiln/tools/pyduck"));
    c.env("PYTHONPATH", duck);
    c
}

/// The oracle's rows and its figures (`late`, `watermark`).
pub fn oracle(files: &[PathBuf], (size, slide, delay): (u64, u64, u64), mode: &str) -> (Vec<Row>, serde_json::Value) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let o = python_with_duckdb()
        .arg(repo_root().join("tests/streaming/oracle.py"))
        .arg(out.path())
        .args([size.to_string(), slide.to_string(), delay.to_string(), mode.to_string()])
        .args(files)
        .output()
        .unwrap();
    assert!(o.status.success(), "oracle: {}", String::from_utf8_lossy(&o.stderr));
    (sorted(read_expected_csv(out.path())), serde_json::from_slice(&o.stdout).unwrap())
}


/// A window row read back as JSON (a Kafka record's value, a Delta row from the Python
/// package) as a [`Row`]: `avg_ms` is a double whatever digits JSON gave it.
pub fn json_window_row(value: &serde_json::Value) -> Row {
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let cell = match v {
                serde_json::Value::Null => crate::Cell::Null,
                serde_json::Value::Number(n) if n.is_i64() && k != "avg_ms" => crate::Cell::Int(n.as_i64().unwrap()),
                serde_json::Value::Number(n) => crate::Cell::Float(n.as_f64().unwrap()),
                serde_json::Value::String(s) => crate::Cell::Str(s.clone()),
                other => panic!("{other}"),
            };
            (k.clone(), cell)
        })
        .collect()
}
