//! Sources and sinks on an S3-compatible object store (SPEC §6a, issue 15),
//! against a real S3 server: s3s-fs, started per test on a free port over a
//! temporary directory (`.ci/run` installs it into `~/.cache/kiln/tools`).
//! s3s-fs keeps each object as a file under `ROOT/BUCKET/KEY`, so what the
//! tests read back from disk is exactly what a client of the bucket sees,
//! read by the `parquet` crate, not by Kiln.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln::run::{RunOptions, run};
use kiln_tests::{Row, build_job, i, read_parquet_rows, repo_root, row, s, sorted};

const KEY: &str = "kiln-test-key";
/// A sentinel: it must never appear in any output.
const SECRET: &str = "kiln-test-secret-7f3a9c";

/// An s3s-fs server over a temporary directory; killed on drop. Each test has
/// its own bucket name: `storage_options` apply per bucket, process-wide.
struct S3 {
    child: Child,
    root: tempfile::TempDir,
    port: u16,
    bucket: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The s3s-fs binary: `KILN_S3S_FS`, or the tools cache, built there on first
/// use (about 3 minutes; `.ci/run` does it before the tests).
fn s3s_fs() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(p) = std::env::var_os("KILN_S3S_FS") {
        return p.into();
    }
    let tools = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/kiln/tools");
    let p = tools.join("bin/s3s-fs");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !p.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["install", "s3s-fs@0.14.1", "--features", "binary", "--locked", "--root"])
            .arg(&tools)
            .env("CARGO_TARGET_DIR", tools.with_file_name("tools-target"))
            .status()
            .unwrap();
        assert!(status.success() && p.exists(), "installing s3s-fs failed: cargo install s3s-fs@0.14.1 --features binary --locked --root ~/.cache/kiln/tools");
    }
    p
}

impl S3 {
    /// A server with one bucket, which specs call `data` (see [`S3::at`]).
    fn start(bucket: &str) -> S3 {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let (child, port) = kiln_tests::spawn_listening(std::net::IpAddr::from([127, 0, 0, 1]), 1, |port| {
            Command::new(s3s_fs())
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        S3 { child, root, port, bucket: bucket.to_string() }
    }

    /// `text` with `s3://data/` turned into this server's bucket.
    fn at(&self, text: &str) -> String {
        text.replace("s3://data/", &format!("s3://{}/", self.bucket))
    }

    fn pipeline(&self, text: &str) -> kiln::plan::Pipeline {
        kiln_tests::pipeline(&self.at(text))
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file s3s-fs keeps `s3://data/KEY` in.
    fn file(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }

    /// Puts a local file at `s3://data/KEY` (s3s-fs serves what is on its disk).
    fn put(&self, key: &str, from: &Path) {
        let to = self.file(key);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }

    /// The variables a job process reads its credentials and endpoint from.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// `storage_options` for specs run in this process (no process-wide variables).
    fn options(&self) -> String {
        format!(
            r#"storage_options = {{ endpoint = "{}", region = "us-east-1", allow_http = true, access_key_id = "{KEY}", secret_access_key = "{SECRET}" }}"#,
            self.endpoint()
        )
    }
}

fn go(p: &kiln::plan::Pipeline) -> kiln::Result<kiln::run::Report> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(p, &RunOptions::default()))
}

/// Every file under `dir`, relative, sorted (s3s-fs keeps metadata in hidden files: skipped).
fn files(dir: &Path) -> Vec<String> {
    kiln_tests::files_under(dir).into_iter().filter(|f| !f.rsplit('/').next().unwrap_or(f).starts_with(".s3s")).collect()
}

/// The rows of the Parquet files a target's manifest names (what a committed output holds).
fn committed_rows(target: &Path) -> Vec<Row> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(target.join("_kiln_manifest.json")).unwrap()).unwrap();
    sorted(manifest["files"].as_array().unwrap().iter().flat_map(|f| part_rows(target, f.as_str().unwrap())).collect())
}

/// The rows of one Parquet part under `target`, with the hive partition values its path holds.
fn part_rows(target: &Path, rel: &str) -> Vec<Row> {
    let mut part = read_parquet_rows(&target.join(rel));
    for dir in rel.split('/').filter(|d| d.contains('=')) {
        let (k, v) = dir.split_once('=').unwrap();
        for r in &mut part {
            r.insert(k.to_string(), s(v));
        }
    }
    part
}

/// The rows of every `.parquet` object under `target`, manifest or not (a
/// reader that skips only `_`-hidden names, as Spark does).
fn all_parquet_rows(target: &Path) -> Vec<Row> {
    let parts = files(target).into_iter().filter(|f| f.ends_with(".parquet") && !f.split('/').any(|p| p.starts_with('_')));
    sorted(parts.flat_map(|rel| part_rows(target, &rel)).collect())
}

/// The guide's etl job binary reads its CSV from S3 and writes its partitioned
/// Parquet there, with credentials and endpoint from the standard variables:
/// the output equals a local run's, nothing but the committed files remains,
/// and a second run replaces the first.
#[test]
fn etl_job_reads_and_writes_s3() {
    let s3 = S3::start("etl");
    let binary = build_job("specs/etl.toml");
    let input = repo_root().join("specs/data/transactions.csv");
    s3.put("in/transactions.csv", &input);

    let local = tempfile::tempdir().unwrap();
    let out = local.path().join("out");
    let status = Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", input.display())).arg("--param").arg(format!("output={}", out.display())).status().unwrap();
    assert!(status.success());
    let expected = sorted(read_parquet_rows(&out));
    assert!(!expected.is_empty());

    for attempt in 0..2 {
        let output = Command::new(&binary)
            .args(["run", "--param", &s3.at("input=s3://data/in/transactions.csv"), "--param", &s3.at("output=s3://data/out/etl")])
            .envs(s3.env())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "attempt {attempt}: {stderr}");
        assert!(!stderr.contains(SECRET), "the secret key was printed: {stderr}");
        let target = s3.file("out/etl");
        assert_eq!(committed_rows(&target), expected, "attempt {attempt}");
        // Only the committed files, the manifest and the marker: no staging, no old parts.
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(target.join("_kiln_manifest.json")).unwrap()).unwrap();
        let mut named: Vec<String> = manifest["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
        named.extend(["_SUCCESS".to_string(), "_kiln_manifest.json".to_string()]);
        named.sort();
        assert_eq!(files(&target), named, "attempt {attempt}");
        // A reader that ignores the manifest (every .parquet object under the prefix) sees the same rows.
        assert_eq!(all_parquet_rows(&target), expected);
    }

    // Killed after the new parts were copied into place and before the manifest
    // (`KILN_FAULT=prepared` aborts there): Kiln's readers see the committed output, the
    // copies are strays the manifest does not name, and the next run removes them.
    let target = s3.file("out/etl");
    let committed = files(&target);
    let output = Command::new(&binary)
        .args(["run", "--param", &s3.at("input=s3://data/in/transactions.csv"), "--param", &s3.at("output=s3://data/out/etl")])
        .envs(s3.env())
        .env("KILN_FAULT", "prepared")
        .output()
        .unwrap();
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("KILN_FAULT=prepared"), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(committed_rows(&target), expected);
    let strays: Vec<String> = files(&target).into_iter().filter(|f| !committed.contains(f) && !f.starts_with("_kiln_staging/")).collect();
    assert!(!strays.is_empty(), "the kill came before the copies: the test proves nothing");
    let output = Command::new(&binary)
        .args(["run", "--param", &s3.at("input=s3://data/in/transactions.csv"), "--param", &s3.at("output=s3://data/out/etl")])
        .envs(s3.env())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(committed_rows(&target), expected);
    assert!(files(&target).iter().all(|f| !strays.contains(f) && !f.starts_with("_kiln_staging/")), "{:?}", files(&target));
    assert_eq!(all_parquet_rows(&target), expected);
}

fn people_spec(s3: &S3, sink: &str) -> String {
    format!(
        r#"
[pipeline]
name = "people"

[sources.people]
format = "inline"
rows = [ {{ name = "ada", day = "d1", n = 1 }}, {{ name = "bob", day = "d2", n = 2 }}, {{ name = "cy", day = "d2", n = 3 }} ]

[sinks.out]
input = "people"
path = "s3://data/people"
{}
{sink}
"#,
        s3.options()
    )
}

fn people() -> Vec<Row> {
    sorted(vec![
        row(&[("name", s("ada")), ("day", s("d1")), ("n", i(1))]),
        row(&[("name", s("bob")), ("day", s("d2")), ("n", i(2))]),
        row(&[("name", s("cy")), ("day", s("d2")), ("n", i(3))]),
    ])
}

/// Every format a sink writes, read back by a Kiln source from the same bucket
/// (directories, hive partitions, a glob, a single file), with `storage_options`.
#[test]
fn every_format_round_trips_through_s3() {
    let s3 = S3::start("formats");
    for (format, extra) in [("parquet", "partition_by = [\"day\"]"), ("csv", "partition_by = [\"day\"]"), ("json", "partition_by = [\"day\"]"), ("avro", "single_file = false")] {
        let sink = format!("format = \"{format}\"\n{extra}");
        let p = s3.pipeline(&people_spec(&s3, &sink).replace("s3://data/people", &format!("s3://data/{format}")));
        assert_eq!(go(&p).unwrap().sinks[0].rows, Some(3), "{format}");

        let partitions = if extra.contains("partition_by") { "partitions = [\"day\"]" } else { "" };
        let read_path = if format == "json" { format!("s3://data/{format}/day=*/*.json") } else { format!("s3://data/{format}") };
        let schema = match format {
            "parquet" | "avro" => String::new(),
            _ => "schema = { name = \"string\", n = \"int64\" }".into(),
        };
        let partitions = if format == "json" { String::new() } else { partitions.to_string() };
        let back = s3.pipeline(&format!(
            r#"
[pipeline]
name = "back"

[sources.people]
format = "{format}"
path = "{read_path}"
{partitions}
{schema}
{}

[sinks.out]
input = "people"
format = "console"
"#,
            s3.options()
        ));
        let mut expected = people();
        if format == "json" {
            // A glob names no partition directories: the day column is not read.
            expected = sorted(expected.into_iter().map(|mut r| { r.remove("day"); r }).collect());
        }
        let got = sorted(kiln_tests::node_rows(&back, "people", &[]));
        assert_eq!(got, expected, "{format}");
    }
}

/// `overwrite_partitions` replaces only the partitions the new data holds;
/// `append` adds; `error_if_exists` and `ignore` see the committed target.
#[test]
fn write_modes_on_s3() {
    let s3 = S3::start("modes");
    let p = s3.pipeline(&people_spec(&s3, "format = \"parquet\"\npartition_by = [\"day\"]"));
    go(&p).unwrap();
    let target = s3.file("people");
    assert_eq!(committed_rows(&target), people());

    // New rows for d2 only: d1 stays, d2 is replaced.
    let text = people_spec(&s3, "format = \"parquet\"\npartition_by = [\"day\"]\nmode = \"overwrite_partitions\"")
        .replace(r#"rows = [ { name = "ada", day = "d1", n = 1 }, { name = "bob", day = "d2", n = 2 }, { name = "cy", day = "d2", n = 3 } ]"#, r#"rows = [ { name = "dee", day = "d2", n = 4 } ]"#);
    go(&s3.pipeline(&text)).unwrap();
    let expected = sorted(vec![row(&[("name", s("ada")), ("day", s("d1")), ("n", i(1))]), row(&[("name", s("dee")), ("day", s("d2")), ("n", i(4))])]);
    assert_eq!(committed_rows(&target), expected);
    assert_eq!(all_parquet_rows(&target), expected, "the replaced partition's files are gone");

    go(&s3.pipeline(&people_spec(&s3, "format = \"parquet\"\npartition_by = [\"day\"]\nmode = \"append\""))).unwrap();
    assert_eq!(committed_rows(&target).len(), 5);

    let err = go(&s3.pipeline(&people_spec(&s3, "format = \"parquet\"\nmode = \"error_if_exists\""))).unwrap_err().to_string();
    assert!(err.contains(&s3.at("s3://data/people")) && err.contains("already exists"), "{err}");
    let report = go(&s3.pipeline(&people_spec(&s3, "format = \"parquet\"\nmode = \"ignore\""))).unwrap();
    assert_eq!(report.sinks[0].rows, None);
    assert_eq!(committed_rows(&target).len(), 5, "ignore wrote nothing");
}

/// What a killed run leaves (staged parts, parts copied but never named by a
/// manifest) is invisible to Kiln's readers and removed by the next write.
#[test]
fn leftovers_of_a_killed_commit_are_not_read_and_are_cleaned() {
    let s3 = S3::start("leftovers");
    let p = s3.pipeline(&people_spec(&s3, "format = \"parquet\""));
    go(&p).unwrap();
    let target = s3.file("people");
    let committed = files(&target);
    // A killed run: a staged part and a part copied into place but not committed.
    let part = target.join(committed.iter().find(|f| f.ends_with(".parquet")).unwrap());
    std::fs::create_dir_all(target.join("_kiln_staging/dead-run")).unwrap();
    std::fs::copy(&part, target.join("_kiln_staging/dead-run/part-0.parquet")).unwrap();
    std::fs::copy(&part, target.join("uncommitted-part.parquet")).unwrap();

    let back = s3.pipeline(&format!(
        "[pipeline]\nname = \"back\"\n\n[sources.people]\nformat = \"parquet\"\npath = \"s3://data/people\"\n{}\n\n[sinks.out]\ninput = \"people\"\nformat = \"console\"\n",
        s3.options()
    ));
    assert_eq!(sorted(kiln_tests::node_rows(&back, "people", &[])), people(), "the reader follows the manifest");

    go(&p).unwrap();
    let after = files(&target);
    assert!(!after.iter().any(|f| f.starts_with("_kiln_staging") || f == "uncommitted-part.parquet"), "{after:?}");
    assert_eq!(committed_rows(&target), people());
}

/// A failed run (a bad row, found while writing) leaves the committed output as
/// it was; an unreachable endpoint or wrong credentials fail before any write,
/// naming the URL and never the secret.
#[test]
fn failures_keep_the_previous_output_and_print_no_secret() {
    let s3 = S3::start("failures");
    let p = s3.pipeline(&people_spec(&s3, "format = \"parquet\""));
    go(&p).unwrap();
    let target = s3.file("people");
    let before = kiln_tests::snapshot_tree(&target);

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("t.csv"), "name,n\nada,1\nbob,not-a-number\n").unwrap();
    s3.put("bad/t.csv", &bad.path().join("t.csv"));
    let failing = s3.pipeline(&format!(
        "[pipeline]\nname = \"f\"\n\n[sources.t]\nformat = \"csv\"\npath = \"s3://data/bad/t.csv\"\nschema = {{ name = \"string\", n = \"int64\" }}\n{opts}\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"s3://data/people\"\n{opts}\n",
        opts = s3.options()
    ));
    let err = go(&failing).unwrap_err().to_string();
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before, "the previous output is untouched");

    let wrong = people_spec(&s3, "format = \"parquet\"").replace(SECRET, "not-the-secret");
    let err = go(&s3.pipeline(&wrong)).unwrap_err().to_string();
    assert!(err.contains(&s3.at("s3://data/people")), "names the URL: {err}");
    assert!(!err.contains("not-the-secret") && !err.contains(SECRET), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before);

    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = people_spec(&s3, "format = \"parquet\"").replace(&s3.endpoint(), &format!("http://127.0.0.1:{dead}"));
    let err = go(&s3.pipeline(&unreachable)).unwrap_err().to_string();
    assert!(err.contains(&s3.at("s3://data/people")), "names the URL: {err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before);

    let missing = people_spec(&s3, "format = \"parquet\"").replace("s3://data/people", "s3://no-such-bucket/people");
    let err = go(&s3.pipeline(&missing)).unwrap_err().to_string();
    assert!(err.contains("s3://no-such-bucket/people"), "{err}");
}

/// A sink whose commit is refused after the object-store sinks were staged (here a
/// Kafka sink whose broker does not answer: its records are sent at the commit)
/// leaves every object-store target as it was: their parts are copied into place
/// first, published only once every refusable sink committed, and taken back when
/// one fails. Before, the Parquet sink listed first had already published its new
/// output.
#[test]
fn a_sink_refused_at_the_commit_leaves_the_object_store_targets_as_they_were() {
    let s3 = S3::start("refused");
    go(&s3.pipeline(&people_spec(&s3, "format = \"parquet\""))).unwrap();
    let target = s3.file("people");
    let before = kiln_tests::snapshot_tree(&target);
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = format!(
        "{}\n[sinks.alerts]\ninput = \"people\"\nformat = \"kafka\"\nbrokers = \"127.0.0.1:{dead}\"\ntopic = \"people\"\noptions = {{ \"message.timeout.ms\" = \"2000\" }}\n",
        people_spec(&s3, "format = \"parquet\"\nmode = \"append\"")
    );
    let err = go(&s3.pipeline(&spec)).unwrap_err().to_string();
    assert!(err.contains("alerts") || err.contains(&format!("127.0.0.1:{dead}")), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before, "the appended parts were taken back, and nothing is left staged");
    assert_eq!(committed_rows(&target), people());
}

/// A scheduler and two executors, each in its own empty working directory,
/// share no disk: sources and sinks live on the S3 server. The output equals
/// the local run's, and is committed once by the client.
#[test]
fn cluster_without_a_shared_disk_writes_to_s3() {
    let s3 = S3::start("cluster");
    let binary = build_job("specs/etl.toml");
    let input = repo_root().join("specs/data/transactions.csv");
    s3.put("in/transactions.csv", &input);
    let local = tempfile::tempdir().unwrap();
    let out = local.path().join("out");
    assert!(Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", input.display())).arg("--param").arg(format!("output={}", out.display())).status().unwrap().success());
    let expected = sorted(read_parquet_rows(&out));

    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let output = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/out/cluster"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(committed_rows(&s3.file("out/cluster")), expected);
    // Nothing was written to any process's own disk.
    for d in &dirs {
        assert!(files(d.path()).iter().all(|f| !f.ends_with(".parquet")), "{:?}", files(d.path()));
    }
}

/// A scheduler (in `dirs[0]`) and an executor in each further directory, each
/// process in its own working directory with the server's credentials (an
/// executor logs Kiln's `info` lines to `executor.log` there); the scheduler's port.
/// `binary submit` to the scheduler at `sched`, from `dir`, with the S3 server's
/// credentials and each of `params` (`k=s3://data/…`) as a `--param`.
fn submit_to(binary: &Path, sched: u16, s3: &S3, dir: &Path, params: &[&str]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["submit", "--scheduler", &format!("127.0.0.1:{sched}")]);
    for p in params {
        cmd.arg("--param").arg(s3.at(p));
    }
    cmd.current_dir(dir).envs(s3.env());
    cmd
}

fn s3_cluster(binary: &Path, s3: &S3, dirs: &[tempfile::TempDir]) -> (kiln_tests::Procs, u16) {
    let lo = std::net::IpAddr::from([127, 0, 0, 1]);
    let (scheduler, sched) = kiln_tests::spawn_listening(lo, 1, |sched| {
        Command::new(binary).args(["scheduler", "--bind", &format!("127.0.0.1:{sched}")]).current_dir(dirs[0].path()).envs(s3.env()).stderr(Stdio::null()).spawn().unwrap()
    });
    let mut procs = kiln_tests::Procs(vec![scheduler]);
    for d in &dirs[1..] {
        let (child, _) = kiln_tests::spawn_listening(lo, 2, |port| {
            Command::new(binary)
                .args(["executor", "--scheduler", &format!("127.0.0.1:{sched}"), "--bind", &format!("127.0.0.1:{port}"), "--slots", "1"])
                .current_dir(d.path())
                .envs(s3.env())
                .env("KILN_LOG", "kiln=info")
                .stderr(std::fs::File::create(d.path().join("executor.log")).unwrap())
                .spawn()
                .unwrap()
        });
        procs.0.push(child);
    }
    (procs, sched)
}

/// SIGKILL the executor writing the etl job's output on S3, after its first part
/// is on the server: the scheduler reruns the lost stages on the other, and the
/// committed output equals the local run's, with no duplicate or partial file:
/// the manifest names only the successful attempt's parts (not the killed
/// one's), and a reader that ignores it (every `.parquet` object under the
/// target) sees the same rows. Before Kiln staged by attempt and read each map
/// output once (`codec::one_location_per_map_task`), this run committed ~1.5x
/// the rows.
#[test]
fn a_killed_executor_leaves_no_duplicate_or_partial_file_on_s3() {
    let s3 = S3::start("killed");
    let binary = build_job("specs/etl.toml");
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("transactions.csv");
    kiln_tests::write_transactions(&csv, 1_500_000, None);
    s3.put("in/transactions.csv", &csv);
    let out = data.path().join("out");
    assert!(Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", csv.display())).arg("--param").arg(format!("output={}", out.display())).status().unwrap().success());
    let expected = sorted(read_parquet_rows(&out));

    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let mut client = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/out/killed"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The executor writing the output is killed as soon as its first part is on the
    // server (staged as `RUN/ATTEMPT/…`; its log names the attempt): the scheduler
    // reruns the write elsewhere, and the lost attempt's parts must not be committed.
    let staging = s3.file("out/killed/_kiln_staging");
    let waiting = Instant::now();
    let attempt = loop {
        if let Some(part) = files(&staging).into_iter().find(|f| f.ends_with(".parquet")) {
            break part.split('/').nth(1).unwrap().to_string();
        }
        assert!(client.try_wait().unwrap().is_none(), "the job ended before any part was staged");
        assert!(waiting.elapsed() < Duration::from_secs(240), "no part was ever staged");
        std::thread::sleep(Duration::from_millis(10));
    };
    let writer = (1..3).find(|&i| std::fs::read_to_string(dirs[i].path().join("executor.log")).unwrap().contains(&attempt)).expect("no executor's log names the staged attempt");
    let victim = &mut procs.0[writer];
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let (status, stderr) = kiln_tests::finish(&mut client);
    assert!(status.success(), "{stderr}");
    let target = s3.file("out/killed");
    // Counts first: a rerun that reads a map output twice shows as ~1.5x the rows.
    let committed = committed_rows(&target);
    assert_eq!(committed.len(), expected.len(), "committed rows (a shuffle output read twice?)");
    assert_eq!(committed, expected);
    assert_eq!(all_parquet_rows(&target), expected, "a reader ignoring the manifest sees a duplicate or partial part");
    assert!(files(&target).iter().all(|f| !f.starts_with("_kiln_staging")), "{:?}", files(&target));
}

/// The same for Delta sinks (issue 15): an executor killed while the cluster writes a
/// table's data files leaves, in the committed version, exactly the local run's rows.
/// The lost task's files are named by no `add` action (the client commits only the
/// actions the finished tasks returned); the Python package reads the table.
#[test]
fn a_killed_executor_leaves_no_duplicate_or_partial_row_in_a_delta_table() {
    let s3 = S3::start("deltakilled");
    let binary = build_job("tests/delta/s3_cluster.toml");
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("transactions.csv");
    kiln_tests::write_transactions(&csv, 1_500_000, None);
    s3.put("in/transactions.csv", &csv);
    let rows = |table: &Path| -> Vec<String> {
        let mut r: Vec<String> = kiln_tests::delta_oracle(&["rows", table.to_str().unwrap()]).lines().map(String::from).collect();
        r.sort();
        r
    };
    let local = data.path().join("local");
    let run = Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", csv.display())).arg("--param").arg(format!("output={}", local.display())).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = rows(&local.join("large"));
    assert!(expected.len() > 100_000, "{}", expected.len());

    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let mut client = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/lake"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first executor that finishes a write task is killed at once: the task's files
    // are on the server and its `add` actions are in its output, which the scheduler can
    // no longer fetch from it, so the task runs again elsewhere (new files).
    let table = s3.file("lake/large");
    let waiting = Instant::now();
    let writer = loop {
        if let Some(i) = (1..3).find(|&i| std::fs::read_to_string(dirs[i].path().join("executor.log")).unwrap_or_default().contains("wrote Delta data files")) {
            break i;
        }
        assert!(client.try_wait().unwrap().is_none(), "the job ended before any task wrote its files");
        assert!(waiting.elapsed() < Duration::from_secs(240), "no write task ever finished");
        std::thread::sleep(Duration::from_millis(5));
    };
    let victim = &mut procs.0[writer];
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    // The job finishes, fails, or (Ballista, 1 run in ~9 here, on a loaded machine) never ends.
    let waiting = Instant::now();
    let ended = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break Some(status);
        }
        if waiting.elapsed() > Duration::from_secs(240) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if ended.is_none_or(|status| !status.success()) {
        // Ballista gave the job up (its fetches from the lost executor ran out of retries), or
        // never finished it (the client is then stopped): either way the run committed
        // nothing, and a resubmission does the work, on a fresh cluster if the job hung
        // (it would hold the surviving executor's only slot).
        let mut stderr = String::new();
        if ended.is_none() {
            client.kill().unwrap();
            client.wait().unwrap();
        }
        std::io::Read::read_to_string(client.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        eprintln!("the job {} after the kill: {}", if ended.is_some() { "failed" } else { "hung" }, stderr.lines().rev().find(|l| l.contains("rror")).unwrap_or_default());
        assert!(!table.join("_delta_log").exists(), "a run that did not succeed committed a version: {stderr}");
        let fresh: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut _fresh_cluster = None;
        let sched = if ended.is_none() {
            drop(std::mem::replace(&mut procs, kiln_tests::Procs(Vec::new())));
            let (cluster, sched) = s3_cluster(&binary, &s3, &fresh[..3]);
            _fresh_cluster = Some(cluster);
            sched
        } else {
            sched
        };
        let again = submit_to(&binary, sched, &s3, fresh[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/lake"]).output().unwrap();
        assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    }
    let named: Vec<String> = files(&table.join("_delta_log"))
        .iter()
        .filter(|f| f.ends_with(".json"))
        .flat_map(|f| std::fs::read_to_string(table.join("_delta_log").join(f)).unwrap().lines().map(String::from).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok()?["add"]["path"].as_str().map(String::from))
        .collect();
    let orphans = files(&table).iter().filter(|f| f.ends_with(".parquet") && !named.contains(f)).count();
    eprintln!("files the log does not name (the killed task's): {orphans}");
    let committed = rows(&table);
    assert_eq!(committed.len(), expected.len(), "committed rows (a lost task's files added?)");
    assert_eq!(committed, expected);
    assert_eq!(rows(&s3.file("lake/per_day")), rows(&local.join("per_day")));
}

/// Specs a helper wrote from SPEC.md §3/§6/§6a alone (tests/object_store/specs/, with the
/// DuckDB query over local copies of the same objects that computed each `.jsonl`), run
/// against the bucket: the sink `out` holds exactly those rows.
#[test]
fn specs_written_from_the_contract_run_on_s3() {
    let s3 = S3::start("contract");
    let data = repo_root().join("tests/conformance/data");
    s3.put("raw/people.csv", &data.join("src_people.csv"));
    for region in ["eu", "us"] {
        s3.put(&format!("raw/orders/region={region}/part-0.parquet"), &data.join(format!("src_hive_parquet/region={region}/part-0.parquet")));
    }
    let dir = repo_root().join("tests/object_store/specs");
    for name in ["hive_filter_to_s3", "csv_join_aggregate_to_s3", "daily_overwrite_partitions"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap().replace("STORAGE_OPTIONS", &s3.options());
        let report = go(&s3.pipeline(&text)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Vec<Row> = sorted(
            std::fs::read_to_string(dir.join(format!("{name}.jsonl")))
                .unwrap()
                .lines()
                .map(|line| {
                    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
                    v.into_iter()
                        .map(|(k, v)| {
                            let cell = match v {
                                serde_json::Value::Null => kiln_tests::Cell::Null,
                                serde_json::Value::Number(n) if n.is_i64() => i(n.as_i64().unwrap()),
                                serde_json::Value::Number(n) => kiln_tests::f(n.as_f64().unwrap()),
                                serde_json::Value::String(t) => s(&t),
                                other => panic!("{name}: unexpected {other}"),
                            };
                            (k, cell)
                        })
                        .collect()
                })
                .collect(),
        );
        assert_eq!(report.sinks[0].rows, Some(expected.len() as u64), "{name}");
        let key = text.lines().filter_map(|l| l.strip_prefix("path = \"s3://data/out/")).next().unwrap().trim_end_matches('"');
        let target = s3.file(&format!("out/{key}"));
        let got = if text.contains("format = \"csv\"\npath = \"s3://data/out") {
            let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(target.join("_kiln_manifest.json")).unwrap()).unwrap();
            sorted(manifest["files"].as_array().unwrap().iter().flat_map(|f| kiln_tests::read_expected_csv(&target.join(f.as_str().unwrap()))).collect())
        } else {
            committed_rows(&target)
        };
        assert_eq!(got, expected, "{name}");
    }
}

/// A Delta table on S3 (SPEC §6a): Kiln creates, appends to and merges into it
/// through the S3 API with `storage_options`; the `deltalake` Python package
/// reads the bucket's files (s3s-fs keeps them as plain files) at each version;
/// a Kiln source reads it back from S3 with time travel, its schema read from
/// the bucket at check time.
#[test]
fn delta_table_on_s3() {
    let s3 = S3::start("delta");
    let write = |rows: &str, sink: &str| {
        let spec = format!(
            "[pipeline]\nname = \"orders\"\n\n[sources.batch]\nformat = \"inline\"\nrows = [ {rows} ]\n\n[sinks.t]\ninput = \"batch\"\nformat = \"delta\"\npath = \"s3://data/lake/orders\"\n{}\n{sink}\n",
            s3.options()
        );
        go(&s3.pipeline(&spec))
    };
    let python = |version: Option<&str>| -> Vec<serde_json::Value> {
        let table = s3.file("lake/orders");
        let mut args = vec!["rows", table.to_str().unwrap()];
        args.extend(version);
        let mut rows: Vec<serde_json::Value> = kiln_tests::delta_oracle(&args).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        rows.sort_by_key(|r| r["id"].as_i64());
        rows
    };
    let j = |id: i64, day: &str, n: i64| serde_json::json!({"id": id, "day": day, "n": n});

    assert_eq!(write("{ id = 1, day = \"d1\", n = 10 }, { id = 2, day = \"d2\", n = 20 }", "mode = \"overwrite\"\npartition_by = [\"day\"]").unwrap().sinks[0].rows, Some(2));
    write("{ id = 3, day = \"d2\", n = 30 }", "mode = \"append\"").unwrap();
    write("{ id = 2, day = \"d2\", n = 22 }, { id = 4, day = \"d1\", n = 40 }", "mode = \"merge\"\nkeys = [\"id\"]").unwrap();
    assert!(s3.file("lake/orders/_delta_log/00000000000000000002.json").is_file());
    assert!(s3.file("lake/orders/day=d1").is_dir());
    assert_eq!(python(Some("0")), vec![j(1, "d1", 10), j(2, "d2", 20)]);
    assert_eq!(python(None), vec![j(1, "d1", 10), j(2, "d2", 22), j(3, "d2", 30), j(4, "d1", 40)]);

    // Read back through S3 at version 1, its schema read from the bucket by `kiln check`.
    let read = s3.pipeline(&format!(
        "[pipeline]\nname = \"back\"\n\n[sources.orders]\nformat = \"delta\"\npath = \"s3://data/lake/orders\"\nversion = 1\n{}\n\n[sinks.out]\ninput = \"orders\"\nformat = \"json\"\npath = \"s3://data/back/out.json\"\nsingle_file = true\n{}\n",
        s3.options(),
        s3.options()
    ));
    go(&read).unwrap();
    let text = std::fs::read_to_string(s3.file("back/out.json")).unwrap();
    let mut got: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    got.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(got, python(Some("1")));
    assert_eq!(got.len(), 3);
}

/// Delta sinks on a cluster without a shared disk (issue 15): the executors
/// write the data files into the tables on S3, and the client commits one
/// version per sink. The `deltalake` Python package reads the bucket's tables
/// equal to a local run's, version by version: an overwrite replaces, an
/// append adds, a null category is a null partition value, and the timestamp
/// column is Delta's (microseconds).
#[test]
fn delta_sinks_on_a_cluster_are_written_by_the_executors() {
    let s3 = S3::start("deltacluster");
    let binary = build_job("tests/delta/s3_cluster.toml");
    let input = repo_root().join("specs/data/transactions.csv");
    s3.put("in/transactions.csv", &input);
    let rows = |table: &Path, version: Option<&str>| -> Vec<String> {
        let mut args = vec!["rows", table.to_str().unwrap()];
        args.extend(version);
        let mut r: Vec<String> = kiln_tests::delta_oracle(&args).lines().map(String::from).collect();
        r.sort();
        r
    };
    let local = tempfile::tempdir().unwrap();
    let run = Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", input.display())).arg("--param").arg(format!("output={}", local.path().display())).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let submit = || {
        let output = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/lake"])
            .env("KILN_LOG", "kiln=info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let client = submit();
    for sink in ["per_day", "large"] {
        let want = rows(&local.path().join(sink), None);
        assert!(want.len() > 20, "{sink}: {want:?}");
        assert_eq!(rows(&s3.file(&format!("lake/{sink}")), None), want, "{sink}: the cluster's table differs from the local run's");
    }
    // Every transaction is counted once; the 20 without a category are one null partition.
    let counted: i64 = rows(&s3.file("lake/per_day"), None).iter().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["n"].as_i64().unwrap()).sum();
    assert_eq!(counted, 1000);
    assert!(s3.file("lake/per_day/category=__HIVE_DEFAULT_PARTITION__").is_dir(), "{:?}", files(&s3.file("lake/per_day")));
    // The files were written by the executors' tasks, not by the client.
    let logs: String = dirs[1..3].iter().map(|d| std::fs::read_to_string(d.path().join("executor.log")).unwrap()).collect();
    assert!(logs.matches("wrote Delta data files").count() >= 2, "{logs}");
    assert!(!client.contains("wrote Delta data files"), "{client}");
    for d in &dirs {
        assert!(files(d.path()).iter().all(|f| !f.ends_with(".parquet")), "{:?}", files(d.path()));
    }

    // Again: the overwrite is a new version with the same rows, the append doubles.
    submit();
    let info = |sink: &str| -> serde_json::Value { serde_json::from_str(&kiln_tests::delta_oracle(&["info", s3.file(&format!("lake/{sink}")).to_str().unwrap()])).unwrap() };
    assert_eq!(info("per_day")["version"], 1);
    assert_eq!(info("large")["version"], 1);
    assert_eq!(rows(&s3.file("lake/per_day"), None), rows(&local.path().join("per_day"), None));
    assert_eq!(rows(&s3.file("lake/per_day"), Some("0")), rows(&local.path().join("per_day"), None));
    let once = rows(&local.path().join("large"), None);
    let mut twice: Vec<String> = once.iter().chain(&once).cloned().collect();
    twice.sort();
    assert_eq!(rows(&s3.file("lake/large"), None), twice);
    assert_eq!(rows(&s3.file("lake/large"), Some("0")), once);

    // A run whose other sink fails commits nothing, even where the executors had written files.
    let other = s3.file("other/large");
    kiln_tests::delta_oracle(&["write", other.to_str().unwrap(), "overwrite", r#"[{"id": 1}]"#]);
    let output = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/transactions.csv", "output=s3://data/other"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("sink `large`") && stderr.contains("the new data lacks: id"), "{stderr}");
    assert!(!s3.file("other/per_day/_delta_log").exists(), "{:?}", files(&s3.file("other")));
    assert_eq!(info_at(&other)["version"], 0);
}

/// `replace_where` and `merge` on a cluster without a shared disk: the executors
/// write the new rows (and the table's rows that a predicate over data columns, or
/// the merge, keeps), the client commits one version that removes the replaced
/// files. The `deltalake` Python package reads the same rows as after a local run,
/// where delta-rs' own writer does the replace and the merge (rows worked out by
/// hand too); new rows outside the predicate, and two new rows for one key of the
/// table, fail the run before anything is committed.
#[test]
fn replace_where_and_merge_on_a_cluster_are_written_by_the_executors() {
    let s3 = S3::start("replacewhere");
    let binary = build_job("tests/delta/replace_where_cluster.toml");
    let inputs = tempfile::tempdir().unwrap();
    let good = inputs.path().join("good.csv");
    // The last row has no id: a merge never matches it (NULL = NULL is not true), so it is inserted.
    std::fs::write(&good, "id,day,n\n10,d2,100\n11,d2,110\n12,d2,120\n,d2,130\n").unwrap();
    let bad = inputs.path().join("bad.csv");
    std::fs::write(&bad, "id,day,n\n12,d9,5\n").unwrap();
    // Two new rows for id 1, a row of the table (they satisfy both predicates).
    let twice = inputs.path().join("twice.csv");
    std::fs::write(&twice, "id,day,n\n1,d2,101\n1,d2,102\n").unwrap();
    s3.put("in/good.csv", &good);
    s3.put("in/bad.csv", &bad);
    s3.put("in/twice.csv", &twice);
    // The tables before: three days, and one row the data predicate selects (n = 150).
    let before = |root: &Path| {
        kiln_tests::delta_oracle(&["write", root.join("by_day").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 2, "day": "d2", "n": 2}, {"id": 3, "day": "d3", "n": 3}]"#, "day"]);
        kiln_tests::delta_oracle(&["write", root.join("by_n").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 2, "day": "d2", "n": 150}, {"id": 3, "day": "d3", "n": 3}]"#]);
        kiln_tests::delta_oracle(&["write", root.join("merged").to_str().unwrap(), "overwrite", r#"[{"id": 1, "day": "d1", "n": 1}, {"id": 2, "day": "d2", "n": 150}, {"id": 10, "day": "d9", "n": 9}, {"id": 12, "day": "d2", "n": 5}]"#]);
    };
    let rows = |table: &Path| -> Vec<serde_json::Value> {
        let mut r: Vec<serde_json::Value> = kiln_tests::delta_oracle(&["rows", table.to_str().unwrap()]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        r.sort_by_key(|v| v["id"].as_i64());
        r
    };
    let j = |id: i64, day: &str, n: i64| serde_json::json!({"id": id, "day": day, "n": n});
    let no_id = serde_json::json!({"id": null, "day": "d2", "n": 130});
    let expected = vec![no_id.clone(), j(1, "d1", 1), j(3, "d3", 3), j(10, "d2", 100), j(11, "d2", 110), j(12, "d2", 120)];
    // The merge: 1 and 2 kept, 10 matched and deleted (n = 100), 11 and the row without an id
    // inserted, 12 updated.
    let merged = vec![no_id.clone(), j(1, "d1", 1), j(2, "d2", 150), j(11, "d2", 110), j(12, "d2", 120)];
    let want = |sink: &str| if sink == "merged" { merged.clone() } else { expected.clone() };

    // Locally, delta-rs' writer.
    let local = tempfile::tempdir().unwrap();
    before(local.path());
    let run = Command::new(&binary).args(["run", "--param"]).arg(format!("input={}", good.display())).arg("--param").arg(format!("output={}", local.path().display())).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for sink in ["by_day", "by_n", "merged"] {
        assert_eq!(rows(&local.path().join(sink)), want(sink), "{sink}, local");
    }

    before(&s3.file("lake"));
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let submit = |input: &str| {
        submit_to(&binary, sched, &s3, dirs[3].path(), &[&format!("input=s3://data/in/{input}"), "output=s3://data/lake"])
            .env("KILN_LOG", "kiln=info")
            .output()
            .unwrap()
    };
    let output = submit("good.csv");
    let client = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{client}");
    for sink in ["by_day", "by_n", "merged"] {
        assert_eq!(rows(&s3.file(&format!("lake/{sink}"))), want(sink), "{sink}, cluster");
        assert_eq!(info_at(&s3.file(&format!("lake/{sink}")))["version"], 1, "{sink}: one commit");
    }
    // Written by the executors' tasks, not by the client.
    let logs: String = dirs[1..3].iter().map(|d| std::fs::read_to_string(d.path().join("executor.log")).unwrap()).collect();
    assert!(logs.matches("wrote Delta data files").count() >= 3, "{logs}");
    assert!(!client.contains("wrote Delta data files"), "{client}");
    // The sinks' rows as delta-rs counts them: the new rows of a replace_where, the source
    // rows of a merge (not the table's rows written again).
    for sink in ["by_day", "by_n", "merged"] {
        assert!(client.contains(&format!("sink `{sink}`: 4 rows")), "{sink}: {client}");
    }

    // New rows the predicate does not select: refused before any write, no new version.
    let output = submit("bad.csv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("do not satisfy `replace_where`"), "{stderr}");
    // Two new rows for one row of the table: the merge fails, and so the whole run.
    let output = submit("twice.csv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("multiple source rows"), "{stderr}");
    for sink in ["by_day", "by_n", "merged"] {
        assert_eq!(info_at(&s3.file(&format!("lake/{sink}")))["version"], 1, "{sink}");
        assert_eq!(rows(&s3.file(&format!("lake/{sink}"))), want(sink), "{sink}");
    }

    // A writer that appends to the merged table while the cluster's merge waits to commit
    // (`KILN_PAUSE` holds the client once every sink is staged): the merge read the whole
    // table, so it conflicts instead of rewriting the table without the new row, and the
    // run commits nothing; the append stays.
    let log = dirs[3].path().join("client.err");
    let mut client = submit_to(&binary, sched, &s3, dirs[3].path(), &["input=s3://data/in/good.csv", "output=s3://data/lake"])
        .env("KILN_PAUSE", "staged:5000")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("KILN_PAUSE=staged") {
        assert!(std::time::Instant::now() < deadline && client.try_wait().unwrap().is_none(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    kiln_tests::delta_oracle(&["write", s3.file("lake/merged").to_str().unwrap(), "append", r#"[{"id": 77, "day": "d7", "n": 7}]"#]);
    let status = client.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success() && (stderr.to_lowercase().contains("conflict") || stderr.to_lowercase().contains("concurrent")), "{stderr}");
    assert_eq!(info_at(&s3.file("lake/merged"))["version"], 2, "the append's version only");
    let mut with_append = merged.clone();
    with_append.push(j(77, "d7", 7));
    assert_eq!(rows(&s3.file("lake/merged")), with_append);
}

fn info_at(table: &Path) -> serde_json::Value {
    serde_json::from_str(&kiln_tests::delta_oracle(&["info", table.to_str().unwrap()])).unwrap()
}

/// Models on an object store (SPEC §6a): `kiln check` reads the weights' header
/// from the bucket with range requests (weights that do not fit the declared
/// layers are a check error at the model's path), a run loads the model from
/// the bucket once and scores what the same model scores from a local file,
/// and a cluster's executors (no shared disk) score with the model they fetch.
#[test]
fn models_on_s3_are_checked_and_loaded_from_the_bucket() {
    let s3 = S3::start("models");
    let model = repo_root().join("specs/models/customer_score.safetensors");
    let data = repo_root().join("specs/data/transactions.parquet");
    s3.put("models/customer_score.safetensors", &model);
    s3.put("in/transactions.parquet", &data);
    let text = |data: &str, model: &str, options: &str, layers: &str, out: &Path| {
        format!(
            r#"[pipeline]
name = "scores"

[sources.t]
format = "parquet"
path = "{data}"
{options}

[models.m]
path = "{model}"
architecture = "mlp"
layers = {layers}
activation = "relu"
output_activation = "sigmoid"
{options}

[transforms.known]
type = "filter"
input = "t"
predicate = "amount IS NOT NULL"

[transforms.f]
type = "with_columns"
input = "known"
columns.a = "amount / 100"
columns.b = "amount / 1000"
columns.c = "ln(1 + abs(amount))"
columns.d = "amount / 50"
columns.e = "1.0"

[transforms.scored]
type = "predict"
input = "f"
model = "m"
features = ["a", "b", "c", "d", "e"]
output = "score"

[sinks.out]
input = "scored"
format = "json"
path = "{out}"
single_file = true
"#,
            out = out.display()
        )
    };
    let json = |f: &Path| -> Vec<String> {
        let mut r: Vec<String> = std::fs::read_to_string(f).unwrap().lines().map(String::from).collect();
        r.sort();
        r
    };
    let dir = tempfile::tempdir().unwrap();
    let (local, remote) = (dir.path().join("local.json"), dir.path().join("s3.json"));
    go(&kiln_tests::pipeline(&text(data.to_str().unwrap(), model.to_str().unwrap(), "", "[5, 8, 1]", &local))).unwrap();
    let url = s3.at("s3://data/models/customer_score.safetensors");
    go(&s3.pipeline(&text("s3://data/in/transactions.parquet", "s3://data/models/customer_score.safetensors", &s3.options(), "[5, 8, 1]", &remote))).unwrap();
    let want = json(&local);
    assert!(want.len() > 900 && want[0].contains("\"score\""), "{:?}", &want[..2]);
    assert_eq!(json(&remote), want);
    assert_eq!(kiln::models::loads(&url), 1);

    // The header, read from the bucket at check time, does not fit [5, 4, 1].
    let wrong = s3.at(&text("s3://data/in/transactions.parquet", "s3://data/models/customer_score.safetensors", &s3.options(), "[5, 4, 1]", &remote));
    let checked = kiln_compiler::check_text(Path::new("test.toml"), &wrong, &repo_root());
    let rendered = checked.render(false);
    assert!(checked.has_errors() && rendered.contains("do not fit") && rendered.contains("s3://"), "{rendered}");
    // A missing object is a check error naming the URL.
    let missing = s3.at(&text("s3://data/in/transactions.parquet", "s3://data/models/nope.safetensors", &s3.options(), "[5, 8, 1]", &remote));
    let rendered = kiln_compiler::check_text(Path::new("test.toml"), &missing, &repo_root()).render(false);
    assert!(rendered.contains(&format!("cannot read {}: no such object", s3.at("s3://data/models/nope.safetensors"))), "{rendered}");

    // A cluster whose executors have no model file: they fetch it from the bucket.
    let binary = build_job("specs/inference.toml");
    let out = dir.path().join("out");
    let run = Command::new(&binary).args(["run", "--param"]).arg(format!("data={}", repo_root().join("specs/data").display())).args(["--param"]).arg(format!("models={}", repo_root().join("specs/models").display())).arg("--param").arg(format!("output={}", out.display())).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = sorted(read_parquet_rows(&out.join("scores.parquet")));
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
    let output = Command::new(&binary)
        .args(["submit", "--scheduler", &format!("127.0.0.1:{sched}")])
        .args(["--param", &s3.at("data=s3://data/in"), "--param", &s3.at("models=s3://data/models"), "--param", &s3.at("output=s3://data/scored")])
        .current_dir(dirs[3].path())
        .envs(s3.env())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(sorted(read_parquet_rows(&s3.file("scored/scores.parquet"))), expected);
}

/// Schemas on an object store (SPEC §6a): `kiln check` reads the objects' Parquet
/// footers and pins their columns; a producer that changes a column's type after
/// that fails the run before anything is written, naming the object and the
/// column. `kiln check` without access to the store (a laptop with no
/// credentials) accepts a declared `schema` with a warning, and the run checks
/// every object against it.
#[test]
fn object_schemas_are_pinned_by_check_and_checked_by_the_run() {
    let s3 = S3::start("drift");
    let produce = |rows: &str| {
        let text = format!(
            "[pipeline]\nname = \"producer\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ {rows} ]\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"s3://data/in\"\n{}\n",
            s3.options()
        );
        go(&s3.pipeline(&text)).unwrap();
    };
    produce(r#"{ name = "ada", n = 1 }, { name = "bob", n = 2 }"#);

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("copy");
    let consumer = |declared: &str| {
        format!(
            "[pipeline]\nname = \"consumer\"\n\n[sources.t]\nformat = \"parquet\"\npath = \"s3://data/in\"\n{declared}\n{}\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"{}\"\n",
            s3.options(),
            target.display()
        )
    };
    let checked = kiln_compiler::check_text(Path::new("consumer.toml"), &s3.at(&consumer("")), &repo_root());
    assert!(!checked.has_errors() && !checked.render(false).contains("schema-unreadable"), "{}", checked.render(false));
    let pipeline = checked.pipeline.unwrap();
    go(&pipeline).unwrap();
    let want = sorted(vec![row(&[("name", s("ada")), ("n", i(1))]), row(&[("name", s("bob")), ("n", i(2))])]);
    assert_eq!(sorted(read_parquet_rows(&target)), want);
    let before = kiln_tests::snapshot_tree(&target);

    // The producer now writes `n` as a string: the pinned pipeline refuses the objects.
    produce(r#"{ name = "cy", n = "three" }"#);
    let err = go(&pipeline).unwrap_err().to_string();
    assert!(err.contains(&s3.at("s3://data/in/")) && err.contains(".parquet"), "names the object: {err}");
    assert!(err.contains("column `n` is Utf8 here, but the schema pinned at compile time says Int64"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before, "nothing was written");

    // No access at check time: the declared schema is used, with a warning at the path.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let offline = s3.at(&consumer("schema = { name = \"string\", n = \"int64\" }")).replace(&s3.endpoint(), &format!("http://127.0.0.1:{dead}"));
    let checked = kiln_compiler::check_text(Path::new("consumer.toml"), &offline, &repo_root());
    let text = checked.render(false);
    assert!(!checked.has_errors(), "{text}");
    assert!(text.contains("kiln::schema-unreadable") && text.contains("using the declared `schema`") && text.contains("consumer.toml:6:"), "{text}");
    // Without a declared schema the same check is an error.
    let checked = kiln_compiler::check_text(Path::new("consumer.toml"), &s3.at(&consumer("")).replace(&s3.endpoint(), &format!("http://127.0.0.1:{dead}")), &repo_root());
    assert!(checked.has_errors() && checked.render(false).contains("cannot read the Parquet schema"), "{}", checked.render(false));

    // Run where the store is reachable: the objects (`n` now a string) disagree with the declared schema.
    let pipeline = checked_pipeline_with_endpoint(&offline, &s3.endpoint());
    let err = go(&pipeline).unwrap_err().to_string();
    assert!(err.contains("column `n` is Utf8 here") && err.contains(&s3.at("s3://data/in/")), "{err}");
    assert_eq!(kiln_tests::snapshot_tree(&target), before, "nothing was written");
    // Once the producer is back to the declared types, the same pipeline runs.
    produce(r#"{ name = "dee", n = 4 }"#);
    go(&pipeline).unwrap();
    assert_eq!(sorted(read_parquet_rows(&target)), vec![row(&[("name", s("dee")), ("n", i(4))])]);
}

/// The pipeline `kiln check` made of `text` (which names an unreachable endpoint),
/// with the storage options pointed at `endpoint`: the binary built on a laptop, run
/// where the store is reachable.
fn checked_pipeline_with_endpoint(text: &str, endpoint: &str) -> kiln::plan::Pipeline {
    let checked = kiln_compiler::check_text(Path::new("consumer.toml"), text, &repo_root());
    let mut pipeline = checked.pipeline.expect("no errors");
    for (_, options) in &mut pipeline.runtime.storage {
        for (k, v) in options.iter_mut() {
            if k == "endpoint" {
                *v = endpoint.to_string();
            }
        }
    }
    pipeline
}

/// Azurite (Microsoft's Azure Storage emulator, from the npm registry; `.ci/run`
/// installs it into the tools cache): an `az://` path with `storage_options` for an
/// account, its key and an endpoint. Every format a sink writes reads back from the
/// container, and a failed run leaves the previous output.
struct Azurite {
    _procs: kiln_tests::Procs,
    _dir: tempfile::TempDir,
    port: u16,
}

/// Azurite's well-known development account and key.
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azurite_bin() -> PathBuf {
    std::env::var_os("KILN_AZURITE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kiln/tools/azurite/node_modules/.bin/azurite-blob"))
}

impl Azurite {
    fn start() -> Azurite {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = kiln_tests::spawn_listening(std::net::IpAddr::from([127, 0, 0, 1]), 1, |port| {
            Command::new(azurite_bin())
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--silent", "--location"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e} (.ci/run installs it: npm install azurite)", azurite_bin().display()))
        });
        Azurite { _procs: kiln_tests::Procs(vec![child]), _dir: dir, port }
    }

    fn options(&self) -> String {
        format!(r#"storage_options = {{ account_name = "{AZ_ACCOUNT}", access_key = "{AZ_KEY}", endpoint = "http://127.0.0.1:{}/{AZ_ACCOUNT}", allow_http = true }}"#, self.port)
    }

    /// Creates a container: a `PUT ?restype=container` signed with the account key
    /// (Shared Key), sent by hand (object_store creates no containers).
    fn create_container(&self, name: &str) {
        use std::io::{Read, Write};
        let date = http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{name}\nrestype:container");
        let signature = base64(&hmac_sha256(&unbase64(AZ_KEY), to_sign.as_bytes()));
        let request = format!(
            "PUT /{AZ_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {AZ_ACCOUNT}:{signature}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "creating container {name}: {response}");
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::digest([pad(0x36).as_slice(), message].concat());
    Sha256::digest([pad(0x5c).as_slice(), inner.as_slice()].concat()).to_vec()
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { B64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let digits: Vec<u32> = text.bytes().filter(|b| *b != b'=').map(|b| B64.iter().position(|c| *c == b).unwrap() as u32).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// RFC 1123 (`Tue, 01 Dec 2026 08:00:00 GMT`), as Azure's `x-ms-date` wants it.
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT", months[(month - 1) as usize], rest / 3600, rest / 60 % 60, rest % 60)
}

#[test]
fn az_paths_read_and_write_an_azure_container() {
    assert_eq!(http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_764_578_096)), "Mon, 01 Dec 2025 08:34:56 GMT");
    assert_eq!(unbase64(&base64(b"kiln!")), b"kiln!");
    let az = Azurite::start();
    az.create_container("lake");
    let people_at = |format: &str, extra: &str| {
        format!(
            "[pipeline]\nname = \"people\"\n\n[sources.people]\nformat = \"inline\"\nrows = [ {{ name = \"ada\", day = \"d1\", n = 1 }}, {{ name = \"bob\", day = \"d2\", n = 2 }}, {{ name = \"cy\", day = \"d2\", n = 3 }} ]\n\n[sinks.out]\ninput = \"people\"\nformat = \"{format}\"\npath = \"az://lake/{format}\"\n{extra}\n{}\n",
            az.options()
        )
    };
    for (format, extra, schema) in [
        ("parquet", "partition_by = [\"day\"]", ""),
        ("csv", "partition_by = [\"day\"]", "schema = { name = \"string\", n = \"int64\" }\npartitions = [\"day\"]"),
        ("json", "", "schema = { name = \"string\", day = \"string\", n = \"int64\" }"),
    ] {
        let report = go(&kiln_tests::pipeline(&people_at(format, extra))).unwrap();
        assert_eq!(report.sinks[0].rows, Some(3), "{format}");
        let partitions = if format == "parquet" { "partitions = [\"day\"]" } else { "" };
        let back = kiln_tests::pipeline(&format!(
            "[pipeline]\nname = \"back\"\n\n[sources.people]\nformat = \"{format}\"\npath = \"az://lake/{format}\"\n{partitions}\n{schema}\n{}\n\n[sinks.out]\ninput = \"people\"\nformat = \"console\"\n",
            az.options()
        ));
        assert_eq!(sorted(kiln_tests::node_rows(&back, "people", &[])), people(), "{format}");
    }
    // A wrong key: an error naming the URL, not the key; the committed output stays.
    let wrong = people_at("parquet", "partition_by = [\"day\"]").replace(AZ_KEY, "d3JvbmcgYnV0IHZhbGlkIGJhc2U2NCBrZXkgb2YgZW5vdWdoIGxlbmd0aA==");
    let err = go(&kiln_tests::pipeline(&wrong)).unwrap_err().to_string();
    assert!(err.contains("az://lake/parquet") && !err.contains("d3JvbmcgYnV0"), "{err}");
    let back = kiln_tests::pipeline(&format!(
        "[pipeline]\nname = \"back\"\n\n[sources.people]\nformat = \"parquet\"\npath = \"az://lake/parquet\"\npartitions = [\"day\"]\n{}\n\n[sinks.out]\ninput = \"people\"\nformat = \"console\"\n",
        az.options()
    ));
    assert_eq!(sorted(kiln_tests::node_rows(&back, "people", &[])), people(), "the output a failed run leaves");
}

/// The guide's other jobs on a cluster with no shared disk (etl and inference have
/// their own tests above): data on the S3 server, each process in its own empty
/// directory, and every output equal to the local run's, file for file.
#[test]
fn the_guides_jobs_on_a_cluster_without_a_shared_disk_give_the_local_result() {
    let s3 = S3::start("guide");
    let data = repo_root().join("specs/data");
    for f in ["transactions.parquet", "customers.parquet", "orders_skewed.parquet", "employees.parquet", "stocks.parquet"] {
        s3.put(&format!("data/{f}"), &data.join(f));
    }
    // Each output's rows by name: a single file, or a directory of parts (on the server,
    // the parts its manifest names: s3s-fs keeps the emptied staging directories).
    let outputs = |dir: &Path| -> Vec<(String, Vec<Row>)> {
        let mut out: Vec<(String, Vec<Row>)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with(['_', '.']))
            .map(|e| {
                let rows = if e.path().join("_kiln_manifest.json").is_file() { committed_rows(&e.path()) } else { sorted(read_parquet_rows(&e.path())) };
                (e.file_name().to_string_lossy().into_owned(), rows)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    for spec in ["broadcast_join", "skew_join", "windows", "quality"] {
        let binary = build_job(&format!("specs/{spec}.toml"));
        let local = tempfile::tempdir().unwrap();
        let status = Command::new(&binary).args(["run", "--param"]).arg(format!("data={}", data.display())).arg("--param").arg(format!("output={}", local.path().display())).status().unwrap();
        assert!(status.success(), "{spec}");
        let expected = outputs(local.path());
        assert!(!expected.is_empty(), "{spec}");

        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let (_procs, sched) = s3_cluster(&binary, &s3, &dirs[..3]);
        let output = submit_to(&binary, sched, &s3, dirs[3].path(), &["data=s3://data/data", &format!("output=s3://data/out/{spec}")])
            .output()
            .unwrap();
        assert!(output.status.success(), "{spec}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(outputs(&s3.file(&format!("out/{spec}"))), expected, "{spec}: the cluster's output on S3 differs from the local run's");
        for d in &dirs {
            assert!(files(d.path()).iter().all(|f| !f.ends_with(".parquet")), "{spec}: {:?}", files(d.path()));
        }
    }
}
