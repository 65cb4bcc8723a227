//! Kafka sources of streaming pipelines (SPEC §3, §8, issue 17), against a real
//! Kafka-protocol broker: tansu with memory storage, started per test, built by
//! `.ci/run` into the tools cache (`KILN_TANSU` overrides where it is). Records
//! are produced with librdkafka; the expected windows come from DuckDB's replay
//! of the same events (`tests/streaming/oracle.py`), one batch per 60 records.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::streaming::{TUMBLE, events, oracle};
use kiln_tests::{Procs, Row, build_job, read_parquet_rows, repo_root, sorted, spawn_listening};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn tansu() -> PathBuf {
    std::env::var("KILN_TANSU").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kiln/tools/bin/tansu"))
}

/// A broker on a free port, its storage in memory; `brokers` is its address.
struct Broker {
    _procs: Procs,
    brokers: String,
}

impl Broker {
    fn start() -> Broker {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let (child, port): (Child, u16) = spawn_listening(lo, 1, |port| {
            Command::new(tansu())
                .args(["broker", "--storage-engine", "memory://tansu/"])
                .args(["--listener-url", &format!("tcp://127.0.0.1:{port}"), "--advertised-listener-url", &format!("tcp://127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e} (.ci/run installs it)", tansu().display()))
        });
        Broker { _procs: Procs(vec![child]), brokers: format!("127.0.0.1:{port}") }
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = rt.block_on(admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))).unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces `values` in order, record `i` to partition `i % partitions` with key `k{i}`.
    /// One record per request: with several records per batch, tansu 0.6 (memory storage)
    /// reported a partition's end offset as 1 for 20 records (the last batch's base + 1),
    /// which no real broker does; Kiln reads up to the end the broker reports.
    fn produce(&self, topic: &str, partitions: i32, values: &[String], first: usize) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("linger.ms", "5").set("batch.num.messages", "1").create().unwrap();
        for (i, v) in values.iter().enumerate() {
            let key = format!("k{}", first + i);
            let partition = ((first + i) % partitions as usize) as i32;
            let mut record = BaseRecord::to(topic).payload(v.trim_end().as_bytes()).key(key.as_bytes()).partition(partition);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        // A full queue: let deliveries drain, then try again.
                        assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

/// The spec of `tests/streaming/kafka_clicks.toml`, checked.
fn spec_text() -> String {
    std::fs::read_to_string(repo_root().join("tests/streaming/kafka_clicks.toml")).unwrap()
}

struct Run {
    _root: tempfile::TempDir,
    out: PathBuf,
    checkpoints: PathBuf,
}

fn dirs() -> Run {
    let root = tempfile::tempdir().unwrap();
    Run { out: root.path().join("out"), checkpoints: root.path().join("checkpoints"), _root: root }
}

fn params(b: &Broker, topic: &str, r: &Run) -> Vec<(String, String)> {
    vec![
        ("brokers".into(), b.brokers.clone()),
        ("topic".into(), topic.into()),
        ("output".into(), r.out.display().to_string()),
        ("checkpoints".into(), r.checkpoints.display().to_string()),
    ]
}

fn run_in_process(text: &str, params: Vec<(String, String)>) -> kiln::Result<kiln::run::Report> {
    let pipeline = kiln_tests::pipeline(text);
    let opts = kiln::run::RunOptions { params, ..Default::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(kiln::run::run(&pipeline, &opts))
}

fn output(dir: &Path, sink: &str) -> Vec<Row> {
    let at = dir.join(sink);
    if !at.exists() {
        return Vec::new();
    }
    sorted(read_parquet_rows(&at))
}

/// The events in files of 60 records (one batch each), for the oracle.
fn batch_files(dir: &Path, batches: &[Vec<String>]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    batches
        .iter()
        .enumerate()
        .map(|(i, lines)| {
            let p = dir.join(format!("batch-{i:04}.json"));
            std::fs::write(&p, lines.join("")).unwrap();
            p
        })
        .collect()
}

#[test]
fn a_topic_streams_into_the_windows_duckdb_computes() {
    let broker = Broker::start();
    broker.create_topic("clicks", 1);
    let batches = events(0, 8, 60, 7);
    broker.produce("clicks", 1, &batches.concat(), 0);
    let r = dirs();
    let report = run_in_process(&spec_text(), params(&broker, "clicks", &r)).unwrap();
    let files = batch_files(&r._root.path().join("oracle"), &batches);
    let (expected, figures) = oracle(&files, TUMBLE, "append");
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(output(&r.out, "counts"), expected);
    assert_eq!(report.batches.len(), 9, "8 batches of records, then one with no data");
    for (i, b) in report.batches.iter().take(8).enumerate() {
        assert_eq!(b.offsets["clicks"][&0], [i as i64 * 60, (i as i64 + 1) * 60], "batch {i}");
    }
    assert_eq!(report.batches.iter().map(|b| b.windows["per_5m"].late_rows).sum::<u64>(), figures["late"].as_u64().unwrap());
    assert!(figures["late"].as_u64().unwrap() > 0);

    // Every valid record once, with its partition, offset and key.
    let records = output(&r.out, "records");
    let valid = batches.concat().iter().filter(|l| !l.contains("\"duration_ms\": -")).count();
    assert_eq!(records.len(), valid);
    let mut offsets: Vec<i64> = records.iter().map(|row| match &row["kafka_offset"] {
        kiln_tests::Cell::Int(o) => *o,
        c => panic!("{c:?}"),
    }).collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), valid, "an offset was written twice");
    for row in &records {
        let kiln_tests::Cell::Int(o) = row["kafka_offset"] else { unreachable!() };
        assert_eq!(row["kafka_key"], kiln_tests::Cell::Str(format!("k{o}")));
        assert_eq!(row["kafka_partition"], kiln_tests::Cell::Int(0));
        assert_eq!(row["kafka_topic"], kiln_tests::Cell::Str("clicks".into()));
    }

    // More records: the next run continues from the offsets in the checkpoint.
    let more = events(8, 3, 60, 8);
    broker.produce("clicks", 1, &more.concat(), 480);
    let report = run_in_process(&spec_text(), params(&broker, "clicks", &r)).unwrap();
    assert_eq!(report.batches.iter().map(|b| b.batch).collect::<Vec<_>>(), vec![9, 10, 11, 12]);
    let all: Vec<Vec<String>> = batches.into_iter().chain(more).collect();
    let mut files = batch_files(&r._root.path().join("oracle2"), &all);
    files.insert(8, PathBuf::from("--no-data"));
    let counts = output(&r.out, "counts");
    assert_eq!(counts, oracle(&files, TUMBLE, "append").0);

    // The same spec on another topic (its parameter changed) is refused: the checkpoint's
    // offsets are the first topic's, and would skip the other's first 660 records.
    broker.create_topic("clicks_eu", 1);
    let err = run_in_process(&spec_text(), params(&broker, "clicks_eu", &r)).unwrap_err().to_string();
    assert!(err.contains("was written by another spec") && err.contains("kafka topic clicks\n") && err.contains("kafka topic clicks_eu"), "{err}");
    assert_eq!(output(&r.out, "counts"), counts, "a refused run wrote output");
}

/// Three partitions, read in one batch (no limit): every record once, and the
/// windows of all the events.
#[test]
fn partitions_are_read_whole_and_once() {
    let broker = Broker::start();
    broker.create_topic("multi", 3);
    let batches = events(0, 5, 60, 17);
    broker.produce("multi", 3, &batches.concat(), 0);
    let r = dirs();
    let text = spec_text().replace("max_offsets_per_trigger = 60\n", "");
    let report = run_in_process(&text, params(&broker, "multi", &r)).unwrap();
    assert_eq!(report.batches.len(), 2, "one batch of records, one with no data");
    assert_eq!(report.batches[0].offsets["clicks"], [(0, [0, 100]), (1, [0, 100]), (2, [0, 100])].into());
    let files = batch_files(&r._root.path().join("oracle"), &[batches.concat()]);
    assert_eq!(output(&r.out, "counts"), oracle(&files, TUMBLE, "append").0);
    let records = output(&r.out, "records");
    let mut seen: Vec<(i64, i64)> = records
        .iter()
        .map(|row| match (&row["kafka_partition"], &row["kafka_offset"], &row["kafka_key"]) {
            (kiln_tests::Cell::Int(p), kiln_tests::Cell::Int(o), kiln_tests::Cell::Str(k)) => {
                // Record i went to partition i % 3 at offset i / 3.
                let i: i64 = k[1..].parse().unwrap();
                assert_eq!((*p, *o), (i % 3, i / 3), "{row:?}");
                (*p, *o)
            }
            _ => panic!("{row:?}"),
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), records.len());
}

/// SPEC §3's other kafka keys, as a user writes them: CSV values, `starting_offsets =
/// "latest"` (Spark's default: a new checkpoint starts at the topic's end, so records
/// already there are never read), a librdkafka option whose value comes from the
/// environment, and each record's `kafka_timestamp` (the producer's create time).
#[test]
fn csv_values_from_the_topics_end_with_an_option_from_the_environment() {
    let broker = Broker::start();
    broker.create_topic("csv_clicks", 1);
    let line = |i: usize| format!("u{},/home,2026-01-01 00:{:02}:00,{}\n", i % 3, i, 10 * i);
    broker.produce("csv_clicks", 1, &(0..10).map(line).collect::<Vec<_>>(), 0);
    unsafe { std::env::set_var("KILN_TEST_KAFKA_WAIT_MS", "100") };
    unsafe { std::env::set_var("KILN_TEST_KAFKA_WAIT_BAD", "soon") };
    let text = spec_text()
        .replace("starting_offsets = \"earliest\"", "starting_offsets = \"latest\"")
        .replace("value_format = \"json\"", "value_format = \"csv\"\noptions = { \"fetch.wait.max.ms\" = \"${env.KILN_TEST_KAFKA_WAIT_MS}\" }");
    let r = dirs();
    // The option is read from the environment when the run starts: a bad value fails it,
    // naming the option.
    let err = run_in_process(&text.replace("KILN_TEST_KAFKA_WAIT_MS", "KILN_TEST_KAFKA_WAIT_BAD"), params(&broker, "csv_clicks", &r)).unwrap_err().to_string();
    assert!(err.contains("fetch.wait.max.ms"), "{err}");
    // A new checkpoint starts at the end: the 10 records there are not read.
    let report = run_in_process(&text, params(&broker, "csv_clicks", &r)).unwrap();
    assert!(output(&r.out, "records").is_empty(), "{:?}", report.batches);
    let day = || String::from_utf8(Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap().stdout).unwrap().trim().to_string();
    let first_day = day();
    broker.produce("csv_clicks", 1, &(10..30).map(line).collect::<Vec<_>>(), 10);
    let last_day = day();
    run_in_process(&text, params(&broker, "csv_clicks", &r)).unwrap();
    let records = output(&r.out, "records");
    assert_eq!(records.len(), 20, "the records produced after the first run");
    for row in &records {
        let kiln_tests::Cell::Int(o) = row["kafka_offset"] else { panic!("{row:?}") };
        let i = o as usize;
        assert!((10..30).contains(&i), "{row:?}");
        assert_eq!(row["user_id"], kiln_tests::Cell::Str(format!("u{}", i % 3)));
        assert_eq!(row["page"], kiln_tests::Cell::Str("/home".into()));
        assert_eq!(row["duration_ms"], kiln_tests::Cell::Int(10 * o));
        assert!(matches!(&row["ts"], kiln_tests::Cell::Str(t) if t.starts_with(&format!("2026-01-01T00:{i:02}:00"))), "{row:?}");
        // The producer's create time: the day the records were sent.
        assert!(matches!(&row["kafka_timestamp"], kiln_tests::Cell::Str(t) if t.starts_with(&first_day) || t.starts_with(&last_day)), "{row:?}");
    }
}

/// A topic's partitions shared by two processes (how a stream scales out, README
/// "Streaming"): each reads only the partitions it is assigned, with a checkpoint
/// and output of its own, and its windows are those of its partitions' events.
#[test]
fn two_processes_share_a_topic_by_assigned_partitions() {
    let broker = Broker::start();
    broker.create_topic("shared", 3);
    let lines = events(0, 5, 60, 17).concat();
    broker.produce("shared", 3, &lines, 0);
    let text = spec_text().replace("max_offsets_per_trigger = 60\n", "");
    let valid = |l: &String| !l.contains("\"duration_ms\": -");
    let mut keys_seen = Vec::new();
    // The first process's share is written in its spec; the second's is a parameter, as
    // one spec deployed N times would take it.
    let with_param = format!("{text}\n[params.share]\ndescription = \"the partitions this process reads\"\n").replace("starting_offsets = \"earliest\"", "starting_offsets = \"earliest\"\nassign = \"${params.share}\"");
    for (assign, partitions) in [("[0]", vec![0]), ("2, 1", vec![1, 2])] {
        let r = dirs();
        let (spec, mut params) = (text.replace("starting_offsets = \"earliest\"", &format!("starting_offsets = \"earliest\"\nassign = {assign}")), params(&broker, "shared", &r));
        let spec = if assign.starts_with('[') { spec } else {
            params.push(("share".into(), assign.into()));
            with_param.clone()
        };
        let report = run_in_process(&spec, params).unwrap();
        let read: Vec<i32> = report.batches[0].offsets["clicks"].keys().copied().collect();
        assert_eq!(read, partitions, "only the assigned partitions are read");
        // Record i went to partition i % 3.
        let mine: Vec<String> = lines.iter().enumerate().filter(|(i, _)| partitions.contains(&((i % 3) as i32))).map(|(_, l)| l.clone()).collect();
        let files = batch_files(&r._root.path().join("oracle"), &[mine.clone()]);
        assert_eq!(output(&r.out, "counts"), oracle(&files, TUMBLE, "append").0, "assign = {assign}");
        let records = output(&r.out, "records");
        assert_eq!(records.len(), mine.iter().filter(|l| valid(l)).count());
        keys_seen.extend(records.iter().map(|row| format!("{:?}", row["kafka_key"])));
    }
    keys_seen.sort();
    keys_seen.dedup();
    assert_eq!(keys_seen.len(), lines.iter().filter(|l| valid(l)).count(), "every record once over both processes");
    // A partition the topic does not have is named before anything is read.
    let r = dirs();
    let spec = text.replace("starting_offsets = \"earliest\"", "starting_offsets = \"earliest\"\nassign = [1, 5]");
    let err = run_in_process(&spec, params(&broker, "shared", &r)).unwrap_err().to_string();
    assert!(err.contains("`assign` names partition 5, and the topic has partitions 0, 1, 2"), "{err}");
    assert!(output(&r.out, "records").is_empty());
    // A share that resolves to nothing is refused: it would read every partition.
    let mut empty = params(&broker, "shared", &r);
    empty.push(("share".into(), " ".into()));
    let err = run_in_process(&with_param, empty).unwrap_err().to_string();
    assert!(err.contains("which is empty here"), "{err}");
    assert!(output(&r.out, "records").is_empty());
}

/// kill -9 of a process reading the topic, at several moments, then a final
/// run: the windows of every record, each once.
#[test]
fn a_killed_kafka_stream_restarts_from_its_offsets() {
    let binary = build_job("tests/streaming/kafka_clicks.toml");
    let broker = Broker::start();
    broker.create_topic("clicks", 1);
    let batches = events(0, 10, 60, 27);
    broker.produce("clicks", 1, &batches.concat(), 0);
    let r = dirs();
    let args: Vec<String> = params(&broker, "clicks", &r).into_iter().flat_map(|(k, v)| ["--param".to_string(), format!("{k}={v}")]).collect();
    for ms in [700, 300, 1200] {
        let mut child = Command::new(&binary).arg("run").args(&args).args(["--trigger", "50ms"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // A crash inside a commit, too, of a batch of records produced after the kills (the
    // killed processes may have read every earlier one), so the fault surely fires.
    let more = events(10, 2, 60, 28);
    broker.produce("clicks", 1, &more.concat(), 600);
    let o = Command::new(&binary).arg("run").args(&args).env("KILN_FAULT", "after-commit-1").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("KILN_FAULT=after-commit-1"), "{stderr}");
    let o = Command::new(&binary).arg("run").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all: Vec<Vec<String>> = batches.into_iter().chain(more).collect();
    let files = batch_files(&r._root.path().join("oracle"), &all);
    assert_eq!(output(&r.out, "counts"), oracle(&files, TUMBLE, "append").0);
    assert_eq!(output(&r.out, "records").len(), all.concat().iter().filter(|l| !l.contains("\"duration_ms\": -")).count());
}

#[test]
fn a_record_that_does_not_parse_is_named_and_nothing_is_written() {
    let broker = Broker::start();
    broker.create_topic("bad", 1);
    let mut lines = events(0, 1, 20, 5).concat();
    lines[13] = "{\"user_id\": \"u1\", \"ts\": \"not a time\", \"duration_ms\": 5}\n".into();
    broker.produce("bad", 1, &lines, 0);
    let r = dirs();
    let err = run_in_process(&spec_text(), params(&broker, "bad", &r)).unwrap_err().to_string();
    assert!(err.contains("partition 0 offset 13") && err.contains("not a JSON value of the declared schema"), "{err}");
    assert!(output(&r.out, "counts").is_empty() && output(&r.out, "records").is_empty());
    // A topic that does not exist, and a broker that does not answer, are named.
    let err = run_in_process(&spec_text(), params(&broker, "missing", &dirs())).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains(&broker.brokers), "{err}");
}

#[test]
fn a_kafka_source_is_checked_for_what_streaming_needs() {
    let base = spec_text();
    let check = |text: &str| kiln_compiler::check_text(Path::new("k.toml"), text, &repo_root()).render(false);
    let e = check(&base.replace("mode = \"streaming\"\ntrigger = \"available_now\"\n", ""));
    assert!(e.contains("a kafka source is read by a streaming pipeline"), "{e}");
    let e = check(&base.replace("schema = { user_id", "# schema = { user_id"));
    assert!(e.contains("needs the `schema` of its record values"), "{e}");
    let e = check(&base.replace("value_format = \"json\"", "value_format = \"protobuf\""));
    assert!(e.contains("protobuf") && e.contains("avro_confluent"), "{e}");
    let e = check(&base.replace("schema = { user_id = \"string\"", "schema = { kafka_offset = \"int64\", user_id = \"string\""));
    assert!(e.contains("`kafka_offset` is a column every kafka source adds"), "{e}");
    let e = check(&base.replace("starting_offsets = \"earliest\"", "starting_offsets = \"beginning\""));
    assert!(e.contains("beginning"), "{e}");
    let e = check(&base.replace("starting_offsets = \"earliest\"", "assign = []"));
    assert!(e.contains("`assign` lists no partition"), "{e}");
    let e = check(&base.replace("starting_offsets = \"earliest\"", "assign = [0, 2, 0, -1]"));
    assert!(e.contains("`assign` names partition 0 twice"), "{e}");
    let e = check(&base.replace("starting_offsets = \"earliest\"", "assign = [0, -1]"));
    assert!(e.contains("`assign` holds `-1`, not a partition number"), "{e}");
    let e = check(&base.replace("starting_offsets = \"earliest\"", "assign = \"0,x\""));
    assert!(e.contains("`assign` holds `x`, not a partition number"), "{e}");
    // With a parameter it is checked by the run (see two_processes_share_a_topic_by_assigned_partitions).
    let ok = kiln_compiler::check_text(Path::new("k.toml"), &base.replace("starting_offsets = \"earliest\"", "assign = \"${params.topic}\""), &repo_root());
    assert!(!ok.has_errors(), "{}", ok.render(false));
    let e = check(&base.replace("value_format = \"json\"", "value_format = \"json\"\noptions = { \"sasl.password\" = \"hunter2\" }"));
    assert!(e.contains("is a literal: it is compiled into the binary"), "{e}");
    let ok = kiln_compiler::check_text(Path::new("k.toml"), &base, &repo_root());
    assert!(!ok.has_errors(), "{}", ok.render(false));
}

/// A record a Kafka sink sent: its `kiln-batch` header, its key, its JSON value as a row.
struct Sent {
    batch: String,
    key: Option<String>,
    row: Row,
}

/// Every record of `topic` (one partition) from its start: read until at least `least`
/// arrived and the topic stayed quiet for two seconds (30 s at most).
fn consume(brokers: &str, topic: &str, least: usize) -> Vec<Sent> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "kiln-test-reader").set("enable.auto.commit", "false").create().unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&partitions).unwrap();
    let (started, mut last) = (Instant::now(), Instant::now());
    let mut out = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let batch = m.headers().and_then(|h| h.iter().find(|h| h.key == "kiln-batch").and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))).unwrap_or_default();
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                let row = kiln_tests::streaming::json_window_row(&value);
                out.push(Sent { batch, key, row });
                last = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if out.len() >= least && last.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    out
}

fn kafka_windows() -> String {
    std::fs::read_to_string(repo_root().join("tests/streaming/kafka_windows.toml")).unwrap()
}

/// A Kafka sink: every batch's windows (update mode) arrive as JSON records keyed
/// by their section, each tagged with the batch that sent it, equal to DuckDB's
/// replay; the Parquet sink beside it holds the same rows.
#[test]
fn windows_are_sent_to_a_topic_with_their_batch() {
    let broker = Broker::start();
    broker.create_topic("clicks", 1);
    broker.create_topic("windows", 1);
    let batches = events(0, 6, 60, 11);
    broker.produce("clicks", 1, &batches.concat(), 0);
    let r = dirs();
    let report = run_in_process(&kafka_windows(), params(&broker, "clicks", &r)).unwrap();
    let files = batch_files(&r._root.path().join("oracle"), &batches);
    let (expected, _) = oracle(&files, TUMBLE, "update");
    assert!(expected.len() > 10, "{expected:?}");
    assert_eq!(output(&r.out, "counts"), expected);
    let sent = consume(&broker.brokers, "windows", expected.len());
    assert_eq!(sorted(sent.iter().map(|s| s.row.clone()).collect()), expected);
    for s in &sent {
        assert_eq!(s.key.as_ref().map(|k| kiln_tests::Cell::Str(k.clone())).as_ref(), s.row.get("section"), "keyed by section");
    }
    assert_eq!(report.batches.len(), 7, "6 batches of records, one with no data");
    for b in &report.batches {
        let tagged = sent.iter().filter(|s| s.batch.starts_with("kafka_windows/") && s.batch.ends_with(&format!("/{}", b.batch))).count() as u64;
        assert_eq!(tagged, b.rows_out["to_topic"], "batch {}", b.batch);
    }

    // Checked: only append, a key that is a column, flat values for CSV, no bootstrap.servers.
    let check = |text: &str| kiln_compiler::check_text(Path::new("k.toml"), text, &repo_root()).render(false);
    let e = check(&kafka_windows().replace("key = \"section\"", "key = \"sektion\"\nmode = \"overwrite\""));
    assert!(e.contains("a kafka sink appends records to its topic") && e.contains("sektion"), "{e}");
    let e = check(&kafka_windows().replace("\"linger.ms\" = \"0\"", "\"bootstrap.servers\" = \"x:1\""));
    assert!(e.contains("`bootstrap.servers` is set by kiln"), "{e}");
}

/// At least once (SPEC §8 leaves the Kafka sink's guarantee to Kiln; Spark's is the
/// same): a process killed after a batch's records were sent, before its commit,
/// sends that batch again on restart. Nothing is lost; the repeated records are
/// exactly the killed batch's, recognisable by its `kiln-batch` header; the file
/// sink beside it holds every window once.
#[test]
fn a_batch_killed_after_sending_is_sent_again_and_written_to_files_once() {
    let binary = build_job("tests/streaming/kafka_windows.toml");
    let broker = Broker::start();
    broker.create_topic("clicks", 1);
    broker.create_topic("windows", 1);
    let batches = events(0, 6, 60, 13);
    let r = dirs();
    let args: Vec<String> = params(&broker, "clicks", &r).into_iter().flat_map(|(k, v)| ["--param".to_string(), format!("{k}={v}")]).collect();
    // Batches 0 and 1 (and a no-data batch); then the next batch is killed after sending, before its commit.
    broker.produce("clicks", 1, &batches[..2].concat(), 0);
    let o = Command::new(&binary).arg("run").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Batches 0 and 1, then the run's no-data batch: the next batch is the one killed.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(r.checkpoints.join("state/checkpoint.json")).unwrap()).unwrap();
    let killed_batch = state["batches"].as_u64().unwrap().to_string();
    assert_eq!(killed_batch, "3");
    broker.produce("clicks", 1, &batches[2..].concat(), 120);
    let o = Command::new(&binary).arg("run").args(&args).env("KILN_FAULT", "before-journal").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("KILN_FAULT=before-journal"), "{stderr}");
    let o = Command::new(&binary).arg("run").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut files = batch_files(&r._root.path().join("oracle"), &batches);
    files.insert(2, PathBuf::from("--no-data"));
    let (expected, _) = oracle(&files, TUMBLE, "update");
    assert_eq!(output(&r.out, "counts"), expected, "the files hold every window once");
    let sent = consume(&broker.brokers, "windows", expected.len());
    // Tags are PIPELINE/QUERY/N: one query (one checkpoint) throughout.
    let queries: std::collections::BTreeSet<&str> = sent.iter().map(|s| s.batch.rsplit_once('/').unwrap().0).collect();
    assert_eq!(queries.len(), 1, "{queries:?}");
    let rows_of = |n: &str| sorted(sent.iter().filter(|s| s.batch.rsplit_once('/').unwrap().1 == n).map(|s| s.row.clone()).collect());
    let killed = rows_of(&killed_batch);
    assert!(!killed.is_empty() && killed.len() % 2 == 0, "batch {killed_batch} sent twice: {killed:?}");
    let once: Vec<Row> = killed.iter().step_by(2).cloned().collect();
    assert_eq!(killed, sorted(once.iter().chain(&once).cloned().collect()), "each of the killed batch's records twice");
    let mut deduped: Vec<Row> = sent.iter().filter(|s| s.batch.rsplit_once('/').unwrap().1 != killed_batch).map(|s| s.row.clone()).collect();
    deduped.extend(once);
    assert_eq!(sorted(deduped), expected, "nothing lost, nothing else repeated");
}

/// One click event (a JSON line of `events`) as an Avro datum of the declared schema
/// `{ user_id string, page string, ts timestamp, duration_ms int64 }`, encoded here by
/// hand from the Avro specification (binary encoding; each field a union with null,
/// null first): independent of the arrow-avro reader Kiln uses.
fn avro_datum(line: &str) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut out = Vec::new();
    for field in ["user_id", "page", "ts", "duration_ms"] {
        match &v[field] {
            serde_json::Value::Null => long(&mut out, 0),
            value => {
                long(&mut out, 1);
                match field {
                    "duration_ms" => long(&mut out, value.as_i64().unwrap()),
                    "ts" => {
                        // Every event falls on 2024-05-01 (UTC): "2024-05-01THH:MM:SS".
                        let t = value.as_str().unwrap();
                        let (h, m, s): (i64, i64, i64) = (t[11..13].parse().unwrap(), t[14..16].parse().unwrap(), t[17..19].parse().unwrap());
                        long(&mut out, (1_714_521_600 + h * 3600 + m * 60 + s) * 1_000_000);
                    }
                    _ => {
                        let s = value.as_str().unwrap().as_bytes();
                        long(&mut out, s.len() as i64);
                        out.extend_from_slice(s);
                    }
                }
            }
        }
    }
    out
}

impl Broker {
    /// Produces raw byte values to partition 0, one record per request (see `produce`).
    fn produce_bytes(&self, topic: &str, values: &[Vec<u8>]) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("linger.ms", "5").set("batch.num.messages", "1").create().unwrap();
        for v in values {
            let mut record = BaseRecord::<(), [u8]>::to(topic).payload(v.as_slice()).partition(0);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

/// `value_format = "avro"` (raw datums, as Spark's `from_avro` reads) and
/// `"avro_confluent"` (Confluent's wire format: magic byte, schema id, datum): the
/// same events as JSON give the same windows, DuckDB's; a record that is not a datum
/// of the declared schema is named by partition and offset.
#[test]
fn avro_values_are_read_with_the_declared_schema() {
    let broker = Broker::start();
    let batches = events(0, 4, 60, 19);
    let raw: Vec<Vec<u8>> = batches.concat().iter().map(|l| avro_datum(l)).collect();
    let r0 = dirs();
    let files = batch_files(&r0._root.path().join("oracle"), &batches);
    let (expected, _) = oracle(&files, TUMBLE, "append");
    assert!(!expected.is_empty());
    for (topic, format, values) in [
        ("avro_raw", "avro", raw.clone()),
        // Schema ids change within a batch (a producer's registry moved on): each stands for the declared schema.
        ("avro_confluent", "avro_confluent", raw.iter().enumerate().map(|(i, d)| [&[0u8, 0, 0, 0, 42 + (i % 3) as u8][..], d].concat()).collect::<Vec<_>>()),
    ] {
        broker.create_topic(topic, 1);
        broker.produce_bytes(topic, &values);
        let r = dirs();
        let text = spec_text().replace("value_format = \"json\"", &format!("value_format = \"{format}\""));
        run_in_process(&text, params(&broker, topic, &r)).unwrap();
        assert_eq!(output(&r.out, "counts"), expected, "{format}");
        assert_eq!(output(&r.out, "records").len(), batches.concat().iter().filter(|l| !l.contains("\"duration_ms\": -")).count(), "{format}");
    }
    // A JSON text in an Avro topic.
    broker.create_topic("avro_bad", 1);
    let mut values = raw[..10].to_vec();
    values[6] = b"{\"user_id\": \"u1\"}".to_vec();
    broker.produce_bytes("avro_bad", &values);
    let r = dirs();
    let err = run_in_process(&spec_text().replace("value_format = \"json\"", "value_format = \"avro\""), params(&broker, "avro_bad", &r)).unwrap_err().to_string();
    assert!(err.contains("partition 0 offset 6") && err.contains("not an Avro value of the declared schema"), "{err}");
    assert!(output(&r.out, "counts").is_empty());
}

/// librdkafka refuses an unknown setting by repeating its value, which may be a
/// password: Kiln names the key and not the value, for a source and for a sink.
#[test]
fn a_bad_option_is_named_by_its_key_and_never_its_value() {
    let broker = Broker::start();
    broker.create_topic("clicks", 1);
    broker.create_topic("windows", 1);
    broker.produce("clicks", 1, &events(0, 1, 20, 3).concat(), 0);
    let secret = "hunter2-kafka-secret";
    let source = spec_text().replace("max_offsets_per_trigger = 60\n", &format!("max_offsets_per_trigger = 60\noptions = {{ \"sasl.pasword\" = \"{secret}\" }}\n"));
    let err = run_in_process(&source, params(&broker, "clicks", &dirs())).unwrap_err().to_string();
    assert!(err.contains("sasl.pasword") && !err.contains(secret), "{err}");
    let sink = kafka_windows().replace("\"linger.ms\" = \"0\"", &format!("\"linger.ms\" = \"0\", \"sasl.pasword\" = \"{secret}\""));
    let r = dirs();
    let err = run_in_process(&sink, params(&broker, "clicks", &r)).unwrap_err().to_string();
    assert!(err.contains("sasl.pasword") && !err.contains(secret), "{err}");
    assert!(output(&r.out, "counts").is_empty(), "the batch committed nothing");
}
