//! `--metrics FILE.json` and `--report FILE.html` from a job binary (SPEC §10,
//! issue 19). The report is opened in a real browser (Chromium from Debian's
//! package, headless): the DOM it builds must hold every node with the row
//! count the metrics JSON gives, a histogram bar per partition, and the script
//! must have run without a console error; a page with a broken script fails
//! the same check. A screenshot is left in target/test-artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{build_job, repo_root};

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("no Chromium: `apt-get install chromium` (.ci/run does)");
}

/// What headless Chromium made of `page`: the DOM after scripts ran, and the
/// console's errors (uncaught exceptions, console.error).
fn open(page: &Path, screenshot: Option<&Path>) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let mut c = Command::new(chromium());
    c.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0", "--window-size=1400,1600"])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => c.arg(format!("--screenshot={}", png.display())),
        None => c.arg("--dump-dom"),
    };
    let out = c.arg(format!("file://{}", page.display())).output().unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    let errors = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains(":ERROR:") || l.to_lowercase().contains("error")))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), errors)
}

/// The value of `attr` on the element whose opening tag contains `marker`.
fn attr(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at + 1].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(v[..v.find('"')?].to_string())
}

#[test]
fn the_report_shows_every_node_in_a_browser_and_the_metrics_agree() {
    let binary = build_job("specs/skew_join.toml");
    let dir = tempfile::tempdir().unwrap();
    let (metrics, report) = (dir.path().join("m.json"), dir.path().join("report.html"));
    let out = Command::new(&binary)
        .args(["run", "--threads", "4", "--param"])
        .arg(format!("data={}", repo_root().join("specs/data").display()))
        .arg("--param")
        .arg(format!("output={}", dir.path().join("out").display()))
        .arg("--metrics")
        .arg(&metrics)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The JSON: SPEC §10's minimum per node, and the sink's rows.
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["version"], 1);
    let nodes = m["nodes"].as_object().unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["customers", "orders", "orders_customers", "region"]);
    for (name, n) in nodes {
        for key in ["rows_out", "elapsed_ms", "spill_bytes", "partition_rows_max", "partition_rows_median"] {
            assert!(n[key].is_number(), "{name}.{key}: {n}");
        }
    }
    assert_eq!(m["sinks"][0]["rows"], nodes["region"]["rows_out"]);
    assert_eq!(nodes["orders"]["rows_out"], 1000);

    // The page in a browser.
    let (dom, errors) = open(&report, None);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert_eq!(attr(&dom, "<body", "data-ready").as_deref(), Some("yes"), "the page's script did not run");
    for (name, n) in nodes {
        let vertex = format!("class=\"vertex\" data-node=\"{name}\"");
        assert_eq!(attr(&dom, &vertex, "data-rows"), Some(n["rows_out"].to_string()), "DAG box of {name}");
        assert!(dom.contains(&format!("<tr data-node=\"{name}\">")), "table row of {name}");
        let partitions = n["partitions"].as_u64().unwrap();
        if partitions > 1 {
            let start = dom.find(&format!("data-node=\"{name}\"><figcaption>")).unwrap_or_else(|| panic!("no histogram of {name}"));
            let end = start + dom[start..].find("</figure>").unwrap();
            assert_eq!(dom[start..end].matches("class=\"bar\"").count() as u64, partitions, "bars of {name}");
        }
    }
    assert!(dom.contains("class=\"vertex sink\" data-node=\"sink:region_parquet\""));
    assert!(dom.contains(&format!("spec sha256:<code id=\"spec-hash\">")));
    assert!(dom.contains("KilnNodeExec"), "the executed plan is shown");

    // A screenshot, kept as an artifact.
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("run-report.png");
    let _ = std::fs::remove_file(&png);
    open(&report, Some(&png));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "screenshot of {} bytes", bytes.len());

    // The same check fails on a page whose script is broken.
    let broken = dir.path().join("broken.html");
    std::fs::write(&broken, std::fs::read_to_string(&report).unwrap().replace("document.body.setAttribute('data-ready', 'yes');", "undefinedFunction(); document.body.setAttribute('data-ready', 'yes');")).unwrap();
    let (dom, errors) = open(&broken, None);
    assert!(!errors.is_empty() && attr(&dom, "<body", "data-ready").is_none(), "a broken page passed: {errors:?}");
}

fn run_job(extra_env: &[(&str, &str)], extra_args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let binary = build_job("specs/skew_join.toml");
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(&binary);
    c.args(["run", "--param"])
        .arg(format!("data={}", repo_root().join("specs/data").display()))
        .arg("--param")
        .arg(format!("output={}", dir.path().join("out").display()))
        .args(extra_args)
        .env_remove("KILN_LOG")
        .env_remove("KILN_LOG_FORMAT")
        .env_remove("KILN_PROGRESS");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (out, dir)
}

#[test]
fn json_logs_carry_the_run_id_of_the_metrics() {
    let metrics = tempfile::tempdir().unwrap();
    let m = metrics.path().join("m.json");
    let (out, _dir) = run_job(&[("KILN_LOG", "info"), ("KILN_LOG_FORMAT", "json")], &["--metrics", m.to_str().unwrap()]);
    let run_id = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&m).unwrap()).unwrap()["run_id"].as_str().unwrap().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"run started") && messages.contains(&"run finished") && messages.contains(&"sink committed"), "{stderr}");
    for l in &lines {
        assert_eq!(l["run_id"].as_str(), Some(run_id.as_str()), "{l}");
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    let committed = lines.iter().find(|l| l["message"] == "sink committed").unwrap();
    assert_eq!((committed["sink"].as_str(), committed["rows"].as_u64()), (Some("region_parquet"), Some(5)));
    // Text logs carry it too, first on the line.
    let (out, _dir) = run_job(&[("KILN_LOG", "info")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let started = stderr.lines().find(|l| l.contains("run started")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(started.starts_with("run=") && started.contains("pipeline=skew_join"), "{started}");
}

/// The job's output when run in a terminal (`script` gives it a pseudo-terminal;
/// util-linux, essential on Debian): stdout and stderr together, as a person sees them.
fn in_terminal(args: &str) -> String {
    let binary = build_job("specs/skew_join.toml");
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} run --param data={} --param output={} {args}",
        binary.display(),
        repo_root().join("specs/data").display(),
        dir.path().join("out").display()
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("KILN_PROGRESS_MS", "10").env_remove("KILN_PROGRESS").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn progress_shows_rows_per_sink_in_a_terminal_and_is_erased() {
    let seen = in_terminal("--threads 1");
    let frames: Vec<&str> = seen.split('\r').filter(|f| f.starts_with("\x1b[2Kskew_join: ")).collect();
    assert!(!frames.is_empty(), "no progress line: {seen:?}");
    // Once the sink runs, frames name it, counting rows, never more than it wrote (5).
    assert!(frames.iter().any(|f| f.contains("region_parquet")), "{frames:?}");
    // And the bytes (their Arrow size): 0 B before the first batch, more after.
    for f in frames.iter().filter(|f| f.contains("region_parquet")) {
        let counts = f.split("region_parquet ").nth(1).unwrap();
        let rows: u64 = counts.split(' ').next().unwrap().replace(',', "").parse().unwrap();
        assert!(rows <= 5, "{f}");
        let bytes = counts.split(" rows, ").nth(1).unwrap_or_else(|| panic!("no bytes: {f}")).split(" · ").next().unwrap();
        assert!(bytes.ends_with(" B") || bytes.ends_with(" KB"), "{f}");
        assert_eq!(rows == 0, bytes == "0 B", "{f}");
    }
    // Both sources are Parquet: their footers give the rows, and the last frame (drawn
    // as the run ends) has read them all.
    assert!(frames.last().unwrap().contains(" · sources read"), "{frames:?}");
    // Erased before the summary, which starts on a clean line.
    let last = seen.rfind("\x1b[2Kskew_join: ").unwrap();
    let after = &seen[last..];
    let summary = after.find("sink `region_parquet`: 5 rows").unwrap_or_else(|| panic!("{after:?}"));
    assert!(after[..summary].contains("\r\x1b[2K"), "{after:?}");
    // --quiet hides it; so does a stderr that is not a terminal.
    assert!(!in_terminal("--quiet").contains("\x1b[2Kskew_join: "));
    let (out, _dir) = run_job(&[("KILN_PROGRESS_MS", "10")], &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\r'));
    // KILN_PROGRESS=always shows it anyway (CI logs).
    let (out, _dir) = run_job(&[("KILN_PROGRESS", "always"), ("KILN_PROGRESS_MS", "10")], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\x1b[2Kskew_join: "));
}

/// SPEC §10's words, from a spec written from SPEC.md alone: "`--metrics` writes … a
/// `nodes` object keyed by node name, each with at least `rows_out`, `elapsed_ms`,
/// `spill_bytes`, `partition_rows_max`, `partition_rows_median`; `--report FILE.html`
/// writes one self-contained HTML page". Row counts by hand from the 6-row CSV.
#[test]
fn a_spec_written_from_the_contract_alone_gets_metrics_and_a_report() {
    let binary = build_job("tests/fixtures/metrics/user_spec.toml");
    let dir = tempfile::tempdir().unwrap();
    let (metrics, report) = (dir.path().join("m.json"), dir.path().join("r.html"));
    let out = Command::new(&binary)
        .args(["run", "--param"])
        .arg(format!("input={}", repo_root().join("tests/fixtures/metrics/sales.csv").display()))
        .arg("--param")
        .arg(format!("output={}", dir.path().join("totals").display()))
        .arg("--metrics")
        .arg(&metrics)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    // 6 rows; 4 above 10 (20, 30, 40, 50); 2 regions among them (north, south).
    for (node, rows) in [("sales", 6), ("big", 4), ("by_region", 2)] {
        let n = &m["nodes"][node];
        assert_eq!(n["rows_out"], rows, "{node}: {n}");
        for key in ["elapsed_ms", "spill_bytes", "partition_rows_max", "partition_rows_median"] {
            assert!(n[key].is_number(), "{node}.{key}: {n}");
        }
    }
    assert_eq!(kiln_tests::read_parquet_rows(&dir.path().join("totals")).len(), 2);
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // Nothing fetched from elsewhere (the SVG namespace is a name, not a fetch).
    let fetched = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!fetched.contains("http://") && !fetched.contains("https://") && !fetched.contains("<link") && !fetched.contains(" src="), "the page loads something from elsewhere");
    let (dom, errors) = open(&report, None);
    assert!(errors.is_empty(), "{errors:?}");
    for (node, rows) in [("sales", 6), ("big", 4), ("by_region", 2)] {
        assert_eq!(attr(&dom, &format!("class=\"vertex\" data-node=\"{node}\""), "data-rows"), Some(rows.to_string()), "{node}");
    }
}

/// Progress estimates what remains only when every source is local Parquet, and only
/// then marks sources: a source's marker would stop a later filter from reaching a
/// PostgreSQL `WHERE` or an ORC scan, so a run on a terminal would read more than the
/// same run in CI.
#[test]
fn progress_marks_sources_only_when_every_source_is_local_parquet() {
    let root = kiln_tests::repo_root();
    let spec = |source: &str| {
        format!(
            "[pipeline]\nname = \"p\"\n\n[sources.t]\n{source}\n\n[sources.c]\nformat = \"parquet\"\npath = \"{}\"\n\n[sinks.out]\ninput = \"t\"\nformat = \"console\"\n\n[sinks.out2]\ninput = \"c\"\nformat = \"console\"\n",
            root.join("specs/data/customers.parquet").display()
        )
    };
    let estimable = |text: &str| {
        let p = kiln_tests::pipeline(text);
        let values = kiln::params::resolve(&p.params, &[], |_| None).unwrap();
        kiln::progress::estimable_sources(&p, &values, |_| None).map(|v| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
    };
    let parquet = format!("format = \"parquet\"\npath = \"{}\"", root.join("specs/data/employees.parquet").display());
    assert_eq!(estimable(&spec(&parquet)), Some(vec!["t".to_string(), "c".to_string()]));
    let csv = format!("format = \"csv\"\npath = \"{}\"", root.join("specs/data/transactions.csv").display()) + "\ninfer_schema = true";
    assert_eq!(estimable(&spec(&csv)), None, "one CSV source: no estimate, no source marked");
    let inline = "format = \"inline\"\nrows = [ { a = 1 } ]";
    assert_eq!(estimable(&spec(inline)), None);
}
