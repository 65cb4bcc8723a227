//! Streaming pipelines (SPEC §8, issue 17): directories of JSON files read in
//! micro-batches, event-time windows with a watermark, exactly-once commits with
//! the checkpoint, restarts after kill -9 and after a crash inside a commit.
//!
//! Every expected output comes from `tests/streaming/oracle.py`, which replays
//! the batches with DuckDB (the events, one file per batch, in order).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln_tests::streaming::{TUMBLE, events, oracle, write_events};
use kiln_tests::{Row, build_job, read_parquet_rows, repo_root, sorted};

fn output(dir: &Path) -> Vec<Row> {
    let counts = dir.join("counts");
    if !counts.exists() {
        return Vec::new();
    }
    sorted(read_parquet_rows(&counts))
}

struct Dirs {
    _root: tempfile::TempDir,
    events: PathBuf,
    out: PathBuf,
    checkpoints: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().to_path_buf();
    Dirs { events: p.join("events"), out: p.join("out"), checkpoints: p.join("checkpoints"), _root: root }
}

fn params(d: &Dirs) -> Vec<String> {
    [("events", &d.events), ("output", &d.out), ("checkpoints", &d.checkpoints)]
        .iter()
        .flat_map(|(k, v)| ["--param".to_string(), format!("{k}={}", v.display())])
        .collect()
}

fn run(binary: &Path, d: &Dirs, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(binary).arg("run").args(params(d)).args(extra).envs(env.iter().copied()).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn files_stream_into_the_windows_duckdb_computes_and_a_rerun_continues() {
    let binary = build_job("specs/clickstream.toml");
    let d = dirs();
    let mut files = write_events(&d.events, 0, 8, 60, 7);
    let metrics = d.checkpoints.with_extension("metrics.json");
    let o = run(&binary, &d, &["--metrics", metrics.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (expected, figures) = oracle(&files, TUMBLE, "append");
    assert!(expected.len() >= 6, "too few windows to say anything: {expected:?}");
    assert_eq!(output(&d.out), expected);

    // The metrics: a batch per file, then one with no data (the watermark moved: Spark's
    // no-data batch writes the windows it passed), late rows and the watermark as the
    // oracle counts them.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    let batches = m["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 9, "{m:#}");
    assert_eq!(batches[8]["rows_in"], 0, "{m:#}");
    let late: u64 = batches.iter().map(|b| b["windows"]["per_5m"]["late_rows"].as_u64().unwrap()).sum();
    assert_eq!(late, figures["late"].as_u64().unwrap(), "{m:#}");
    assert!(late > 0, "the events hold no late row: the test would prove nothing about the watermark");
    assert_eq!(batches[7]["windows"]["per_5m"]["watermark"], figures["watermark"]);
    assert_eq!(batches.iter().map(|b| b["rows_in"].as_u64().unwrap()).sum::<u64>(), 8 * 60);
    let written: u64 = batches.iter().map(|b| b["rows_out"]["counts"].as_u64().unwrap()).sum();
    assert_eq!(written as usize, expected.len());
    assert_eq!(m["sinks"][0]["rows"].as_u64(), Some(written));
    assert!(batches.iter().all(|b| b["seconds"].as_f64().unwrap() > 0.0 && (b["rows_in"] == 0 || b["rows_per_second"].as_f64().unwrap() > 0.0)), "{m:#}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("batch 7: 1 file(s), 60 rows in"), "{stderr}");
    // SPEC §10's `nodes`, summed over the batches: every node with its figures; the stream
    // source's rows are the rows read, the window's the rows it wrote.
    let nodes = m["nodes"].as_object().unwrap_or_else(|| panic!("no nodes: {m:#}"));
    for name in ["clicks", "pages", "valid", "sectioned", "with_section", "per_5m"] {
        for key in ["rows_out", "elapsed_ms", "spill_bytes", "partition_rows_max", "partition_rows_median"] {
            assert!(nodes.get(name).is_some_and(|n| n[key].is_number()), "{name}.{key}: {m:#}");
        }
    }
    assert_eq!(nodes["clicks"]["rows_out"].as_u64(), Some(8 * 60), "{m:#}");
    let valid = files.iter().map(|f| std::fs::read_to_string(f).unwrap().lines().filter(|l| !l.contains("\"duration_ms\": -")).count() as u64).sum::<u64>();
    assert_eq!(nodes["valid"]["rows_out"].as_u64(), Some(valid), "{m:#}");
    assert_eq!(nodes["per_5m"]["rows_out"].as_u64(), Some(written), "{m:#}");

    // Nothing new: nothing written, nothing read again.
    let o = run(&binary, &d, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(output(&d.out), expected);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("batch "), "{}", text(&o));

    // More files: the run continues from the checkpoint (watermark and open windows).
    files.push(PathBuf::from("--no-data"));
    files.extend(write_events(&d.events, 8, 3, 60, 8));
    let o = run(&binary, &d, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("batch 9: ") && stderr.contains("batch 12: 0 file(s)") && !stderr.contains("batch 13"), "{stderr}");
    assert_eq!(output(&d.out), oracle(&files, TUMBLE, "append").0);
}

/// A crash at each point of a batch's commit, then a restart: every window once.
#[test]
fn a_crash_inside_a_commit_loses_nothing_and_doubles_nothing() {
    let binary = build_job("specs/clickstream.toml");
    for fault in ["before-journal", "after-journal", "after-commit-1", "after-commit-2", "after-done"] {
        let d = dirs();
        let mut files = write_events(&d.events, 0, 4, 40, 11);
        let o = run(&binary, &d, &[], &[]);
        assert!(o.status.success(), "{}", text(&o));
        files.push(PathBuf::from("--no-data"));
        files.extend(write_events(&d.events, 4, 4, 40, 12));
        let o = run(&binary, &d, &[], &[("KILN_FAULT", fault)]);
        assert!(!o.status.success(), "{fault}: the fault did not fire: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("KILN_FAULT={fault}")), "{}", text(&o));
        let o = run(&binary, &d, &[], &[]);
        assert!(o.status.success(), "{fault}: {}", text(&o));
        assert_eq!(output(&d.out), oracle(&files, TUMBLE, "append").0, "after a crash at {fault}");
        // No staging, journal or batch directory is left behind.
        let leftovers: Vec<_> = walk(&d.out).into_iter().chain(walk(&d.checkpoints)).filter(|p| p.to_string_lossy().contains("kiln") || p.to_string_lossy().contains("batches/")).collect();
        assert!(leftovers.is_empty(), "{fault}: {leftovers:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// kill -9 of a process running with an interval trigger, at several moments
/// (after a batch line, and at arbitrary times), then a final `available_now` run.
#[test]
fn a_killed_process_restarts_from_its_checkpoint() {
    let binary = build_job("specs/clickstream.toml");
    let d = dirs();
    let files = write_events(&d.events, 0, 12, 200, 21);
    let spawn = || Command::new(&binary).arg("run").args(params(&d)).args(["--trigger", "50ms"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Killed right after its second batch's line; the metrics file is rewritten after
    // every batch (a stream may never end).
    let metrics = d.checkpoints.with_extension("metrics.json");
    let mut child = Command::new(&binary).arg("run").args(params(&d)).args(["--trigger", "50ms", "--metrics", metrics.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = 0;
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("batch ") {
            seen += 1;
            if seen == 2 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen, 2, "the stream stopped early");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert!(!m["batches"].as_array().unwrap().is_empty() && m["batches"][0]["batch"] == 0, "{m:#}");
    // Killed at arbitrary moments (inside a batch, or between two).
    for ms in [150, 400, 90] {
        let mut child = spawn();
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let o = run(&binary, &d, &["--trigger", "available_now"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(output(&d.out), oracle(&files, TUMBLE, "append").0);
}

/// The spec with `window` replaced (in-process runs of a checked spec text).
fn variant(window: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("specs/clickstream.toml")).unwrap();
    let start = text.find("tumble = \"5m\"").unwrap();
    let end = text[start..].find("partition_by").unwrap() + start;
    format!("{}{window}\n{}", &text[..start], &text[end..])
}

fn run_in_process(spec: &str, d: &Dirs) -> kiln::Result<kiln::run::Report> {
    let pipeline = kiln_tests::pipeline(spec);
    let opts = kiln::run::RunOptions {
        params: vec![
            ("events".into(), d.events.display().to_string()),
            ("output".into(), d.out.display().to_string()),
            ("checkpoints".into(), d.checkpoints.display().to_string()),
        ],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(kiln::run::run(&pipeline, &opts))
}

#[test]
fn hopping_windows_and_update_mode_match_duckdb() {
    // Hopping: 10-minute windows every 5 minutes (a row in two windows), 3-minute watermark.
    let d = dirs();
    let files = write_events(&d.events, 0, 6, 80, 31);
    let report = run_in_process(&variant("hop = { size = \"10m\", slide = \"5m\" }\nwatermark = \"3m\""), &d).unwrap();
    let (expected, figures) = oracle(&files, (600, 300, 180), "append");
    assert_eq!(output(&d.out), expected);
    assert_eq!(report.batches.iter().map(|b| b.windows["per_5m"].late_rows).sum::<u64>(), figures["late"].as_u64().unwrap());

    // Update mode: each batch writes the windows it touched, with their values so far.
    let d = dirs();
    let files = write_events(&d.events, 0, 6, 80, 32);
    run_in_process(&variant("tumble = \"5m\"\nwatermark = \"2m\"\noutput_mode = \"update\""), &d).unwrap();
    let (expected, _) = oracle(&files, TUMBLE, "update");
    assert!(expected.len() > oracle(&files, TUMBLE, "append").0.len(), "update mode wrote no more rows than append mode");
    assert_eq!(output(&d.out), expected);
}

#[test]
fn a_checkpoint_refuses_a_spec_with_other_windows() {
    let d = dirs();
    write_events(&d.events, 0, 2, 20, 41);
    let base = std::fs::read_to_string(repo_root().join("specs/clickstream.toml")).unwrap();
    run_in_process(&base, &d).unwrap();
    let before = output(&d.out);
    write_events(&d.events, 2, 2, 20, 42);
    let err = run_in_process(&variant("tumble = \"10m\"\nwatermark = \"2m\""), &d).unwrap_err().to_string();
    assert!(err.contains("was written by another spec") && err.contains("size 300000000us") && err.contains("size 600000000us"), "{err}");
    assert!(err.contains(&d.checkpoints.display().to_string()), "{err}");
    let err = run_in_process(&base.replace("count(DISTINCT user_id)", "approx_distinct(user_id)"), &d).unwrap_err().to_string();
    assert!(err.contains("approx_distinct"), "{err}");
    // The same spec pointed at another directory (a parameter changed between runs): the
    // checkpoint lists the files it read by their names in the first one.
    let other = d.events.with_file_name("other_events");
    write_events(&other, 0, 2, 20, 41);
    let err = run_in_process(&base.replace("path = \"${params.events}\"", &format!("path = \"{}\"", other.display())), &d).unwrap_err().to_string();
    assert!(err.contains("was written by another spec") && err.contains(&format!("json files in {}", d.events.display())) && err.contains(&format!("json files in {}", other.display())), "{err}");
    assert_eq!(output(&d.out), before, "a refused run wrote output");
    // A changed stateless transform is fine: the state means the same.
    run_in_process(&base.replace("duration_ms >= 0", "duration_ms >= 0 AND user_id IS NOT NULL"), &d).unwrap();
}

fn check_errors(text: &str) -> String {
    let checked = kiln_compiler::check_text(Path::new("stream.toml"), text, &repo_root());
    assert!(checked.has_errors(), "expected errors in:\n{text}");
    checked.render(false)
}

#[test]
fn what_a_stream_cannot_compute_is_a_check_error() {
    let base = std::fs::read_to_string(repo_root().join("specs/clickstream.toml")).unwrap();
    let base = base.split("[[tests]]").next().unwrap().to_string();
    // An aggregate with no window over a stream.
    let e = check_errors(&format!("{base}\n[transforms.totals]\ntype = \"aggregate\"\ninput = \"valid\"\ngroup_by = [\"page\"]\naggregates.n = \"count(*)\"\n[sinks.totals]\ninput = \"totals\"\nformat = \"console\"\n"));
    assert!(e.contains("transform `totals`: an aggregate over a stream never finishes") && e.contains("time_column"), "{e}");
    // Two streams joined.
    let e = check_errors(&format!("{base}\n[sources.more]\nformat = \"json\"\npath = \"data/clicks/\"\nschema = {{ user_id = \"string\", extra = \"string\" }}\n[transforms.both]\ntype = \"join\"\nleft = \"valid\"\nright = \"more\"\non = [\"user_id\"]\n[sinks.both]\ninput = \"both\"\nformat = \"console\"\n"));
    assert!(e.contains("joining two streams"), "{e}");
    // No checkpoint_dir.
    let e = check_errors(&base.replace("checkpoint_dir = \"${params.checkpoints}\"", ""));
    assert!(e.contains("a streaming pipeline needs [runtime] checkpoint_dir"), "{e}");
    // A sink that overwrites.
    let e = check_errors(&base.replace("path = \"${params.output}/counts\"", "path = \"${params.output}/counts\"\nmode = \"overwrite\""));
    assert!(e.contains("appends each batch's rows"), "{e}");
    // Event time that is not a timestamp, and a slide longer than the window.
    let e = check_errors(&base.replace("time_column = \"ts\"", "time_column = \"user_id\""));
    assert!(e.contains("`time_column` `user_id` is string, not a timestamp") || e.contains("not a timestamp"), "{e}");
    let e = check_errors(&variant("hop = { size = \"5m\", slide = \"10m\" }").split("[[tests]]").next().unwrap().to_string());
    assert!(e.contains("the slide (10m) is longer than the window (5m)"), "{e}");
    // A sink fed only by static data writes the same rows every batch.
    let e = check_errors(&format!("{base}\n[sinks.pages_out]\ninput = \"pages\"\nformat = \"console\"\n"));
    assert!(e.contains("sink `pages_out` reads no stream"), "{e}");
    // `trigger` without streaming; bad trigger.
    let e = check_errors(&base.replace("mode = \"streaming\"\n", ""));
    assert!(e.contains("`trigger` is for streaming pipelines"), "{e}");
    let e = check_errors(&base.replace("trigger = \"available_now\"", "trigger = \"soon\""));
    assert!(e.contains("is neither \"available_now\" nor a duration"), "{e}");
    // And the spec itself is fine.
    let checked = kiln_compiler::check_text(Path::new("stream.toml"), &base, &repo_root());
    assert!(!checked.has_errors(), "{}", checked.render(false));
}

/// A Delta sink in a stream (issue 17: "delta when available"): each batch appends one
/// version carrying the stream's application transaction (Delta's `txn` action, as
/// Spark's Delta sink writes it). A process killed after the batch's Delta commit and
/// before its checkpoint commit reruns the batch on restart, finds the batch in the
/// table's log and does not write it again: the table, read by the `deltalake` Python
/// package, holds every emitted window once.
#[test]
fn a_delta_sink_commits_each_batch_once_across_a_crash() {
    let binary = build_job("tests/streaming/clicks_to_delta.toml");
    let d = dirs();
    // Batch 0 reads files 0-2.
    write_events(&d.events, 0, 3, 50, 41);
    let o = run(&binary, &d, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // Batch 2 (after the first run's no-data batch 1) plans files 3-5, commits its Delta
    // version, and the process dies before its checkpoint.
    write_events(&d.events, 3, 3, 50, 42);
    let o = run(&binary, &d, &[], &[("KILN_FAULT", "before-journal")]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("KILN_FAULT=before-journal"), "{}", text(&o));
    // Files 6-7 arrive before the restart: batch 2 runs again on files 3-5 only (its
    // planned input), finds itself in the table, and batch 3 reads 6-7.
    write_events(&d.events, 6, 2, 50, 43);
    let o = run(&binary, &d, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));

    // The oracle replays the same three batches (each batch's files as one file).
    let batches = [events(0, 3, 50, 41).concat(), events(3, 3, 50, 42).concat(), events(6, 2, 50, 43).concat()];
    let oracle_dir = d._root.path().join("oracle");
    std::fs::create_dir_all(&oracle_dir).unwrap();
    let mut files: Vec<PathBuf> = batches
        .iter()
        .enumerate()
        .map(|(i, lines)| {
            let p = oracle_dir.join(format!("batch-{i}.json"));
            std::fs::write(&p, lines.join("")).unwrap();
            p
        })
        .collect();
    // The first run ended with its no-data batch (batch 1): batch 2 was killed and replayed.
    files.insert(1, PathBuf::from("--no-data"));
    let (expected, _) = oracle(&files, TUMBLE, "update");
    assert_eq!(output(&d.out), expected, "the Parquet sink");
    let table = d.out.join("table");
    let rows: Vec<Row> = kiln_tests::delta_oracle(&["rows", table.to_str().unwrap()])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            kiln_tests::streaming::json_window_row(&v)
        })
        .collect();
    assert_eq!(sorted(rows), expected, "the Delta table: every window once");
    // The log names each batch once: the rerun of batch 2 wrote no second version.
    let mut batches = Vec::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(v) = action["txn"]["version"].as_i64() {
                    batches.push(v);
                }
            }
        }
    }
    batches.sort();
    assert_eq!(batches, vec![0, 1, 2, 3, 4], "one version per batch (no-data ones too), batch 2 once");
}

/// `run --metrics-bind ADDR` (issue 19: Prometheus for long-lived processes): a stream
/// serves its figures at /metrics while it runs — batches, rows in and out, late rows,
/// state rows, each window's watermark — equal to DuckDB's replay of the same files.
#[test]
fn a_stream_serves_its_figures_for_prometheus() {
    use std::io::{Read, Write};
    let binary = build_job("specs/clickstream.toml");
    let d = dirs();
    let files = write_events(&d.events, 0, 8, 60, 7);
    let (expected, figures) = oracle(&files, TUMBLE, "append");
    let lo = std::net::IpAddr::from([127, 0, 0, 1]);
    let (child, port) = kiln_tests::spawn_listening(lo, 1, |port| {
        Command::new(&binary).arg("run").args(params(&d)).args(["--trigger", "50ms", "--metrics-bind", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    });
    let _child = kiln_tests::Procs(vec![child]);
    let scrape = || -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: kiln\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let value = |text: &str, series: &str| -> Option<f64> { text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()) };
    let started = std::time::Instant::now();
    let text = loop {
        let text = scrape();
        // 8 batches of files, then the no-data batch.
        if value(&text, "kiln_stream_batches_total{pipeline=\"clickstream\"}") == Some(9.0) {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.starts_with("HTTP/1.1 200 OK") && text.contains("# TYPE kiln_stream_rows_in_total counter"), "{text}");
    assert_eq!(value(&text, "kiln_stream_rows_in_total{pipeline=\"clickstream\"}"), Some(480.0), "{text}");
    assert_eq!(value(&text, "kiln_stream_rows_out_total{pipeline=\"clickstream\",sink=\"counts\"}"), Some(expected.len() as f64), "{text}");
    assert_eq!(value(&text, "kiln_stream_late_rows_total{pipeline=\"clickstream\",window=\"per_5m\"}"), figures["late"].as_f64(), "{text}");
    assert_eq!(value(&text, "kiln_stream_last_batch{pipeline=\"clickstream\"}"), Some(8.0), "{text}");
    // The oracle's final watermark, as seconds since the epoch.
    let wm = figures["watermark"].as_str().unwrap();
    let (h, m, s): (f64, f64, f64) = (wm[11..13].parse().unwrap(), wm[14..16].parse().unwrap(), wm[17..19].parse().unwrap());
    assert_eq!(value(&text, "kiln_stream_watermark_seconds{pipeline=\"clickstream\",window=\"per_5m\"}"), Some(1_714_521_600.0 + h * 3600.0 + m * 60.0 + s), "{text}");
    assert_eq!(output(&d.out), expected);
}
