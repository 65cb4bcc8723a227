//! Streaming pipelines (SPEC §8): micro-batches over directories of files.
//!
//! Each batch is a bounded run of the pipeline: every stream source reads only
//! the files that arrived since the last batch (hard-linked into the batch's
//! work directory, so the ordinary sources, drift checks and CSV cleaning read
//! them), static sources are read whole, and each event-time window runs one
//! step from its state ([`window`]). The windows' results are written to the
//! batch directory and read back as Parquet sources, so the rest of the
//! pipeline is planned as a batch run plans it.
//!
//! **Exactly once.** A batch's sink files (appended) and its new checkpoint
//! state — the files read per source, each window's watermark and open rows —
//! commit in one journal ([`crate::sinks::journal`]): the state directory is
//! replaced like an overwritten sink, the part files move into the sinks. A
//! process killed before the journal's commit point leaves no trace of the
//! batch (the next start rolls it back and runs it again from the same files);
//! one killed after it is completed on the next start. Either way each file's
//! rows reach the sinks once.
//!
//! Layout of `checkpoint_dir`: `state/` (`checkpoint.json`, `WINDOW.arrow`),
//! `batches/N/` (a batch's links and window results; removed after its commit,
//! and by the next start when a process died).

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(not(feature = "kafka"))]
use crate::unbuilt::kafka_source as kafka;
mod window;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::params::{self, Values, interpolate};
use crate::plan::{EventWindow, Op, Pipeline, SinkFormat, Source, SourceFormat, Streaming, Trigger, WriteMode};
use crate::run::{Report, RunOptions, SinkReport, env};
use crate::sinks::{self, Staged};
use crate::{Error, Result, session};

/// One micro-batch, as Spark's `StreamingQueryProgress` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    /// 0 for the first batch this checkpoint ever committed.
    pub batch: u64,
    /// New files read, per directory source.
    pub files: BTreeMap<String, u64>,
    /// Per Kafka source, each partition's offsets read: `[start, end)`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub offsets: BTreeMap<String, BTreeMap<i32, [i64; 2]>>,
    /// Rows the stream sources produced.
    pub rows_in: u64,
    /// Rows written, per sink.
    pub rows_out: BTreeMap<String, u64>,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Per event-time window.
    pub windows: BTreeMap<String, WindowReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// After this batch, as an RFC 3339 time (UTC); none before the first row.
    pub watermark: Option<String>,
    /// Rows of still-open windows kept in the checkpoint.
    pub state_rows: u64,
    /// Rows dropped because every window they fall in had closed.
    pub late_rows: u64,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// `state/checkpoint.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    pipeline: String,
    /// What the state means: the stream sources and the windows (see [`fingerprint`]).
    fingerprint: Vec<String>,
    /// Batches committed so far.
    batches: u64,
    /// Stream source → files read, relative to its directory.
    files: BTreeMap<String, Vec<String>>,
    /// Window → watermark, microseconds since the epoch (UTC).
    watermarks: BTreeMap<String, Option<i64>>,
    /// Window → the watermark its last batch closed windows at (absent in checkpoints
    /// written before Kiln took Spark's timing: the watermark, as they closed at it).
    #[serde(default)]
    closed: BTreeMap<String, Option<i64>>,
    /// Kafka source → partition → the next offset to read.
    #[serde(default)]
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// This stream's identity, made with the checkpoint: a Delta sink's commits carry
    /// it as their application transaction id (with the batch number as its version).
    #[serde(default)]
    query_id: String,
}

const STATE_FILE: &str = "checkpoint.json";

/// A checkpoint written before the fingerprint held the resolved sources names
/// each stream source by its format (a directory) or its topic as the spec wrote
/// it: where such a line is what this spec says, it stands for this run's
/// resolved line (the run cannot tell which directory or topic it was, and
/// refusing every such checkpoint would make a user start over and re-read
/// everything into append sinks). `earlier` and `now` are the two forms, line
/// for line.
fn upgrade_fingerprint(checkpoint: &mut [String], earlier: &[String], now: &[String]) {
    for line in checkpoint.iter_mut() {
        if let Some(i) = earlier.iter().position(|e| e == line) {
            line.clone_from(&now[i]);
        }
    }
}

/// What a checkpoint's state depends on: a spec whose stream sources or windows
/// differ cannot continue from it (SPEC §8). Stateless transforms may change.
/// `sources` are the stream sources as this run resolved them (`${params.X}`
/// and `${env.X}` filled in): the checkpoint's offsets belong to one topic and
/// its file list to one directory, so another topic or directory (a parameter
/// changed between runs) would skip records or files it never read.
fn fingerprint(pipeline: &Pipeline, sources: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = sources.iter().map(|(name, what)| format!("source {name}: {what}")).collect();
    for n in &pipeline.nodes {
        if let Op::EventWindow { input, window: w } = &n.op {
            let list = |e: &[datafusion::logical_expr::Expr]| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
            out.push(format!(
                "window {} over {input}: time {}, size {}us, slide {}us, watermark {}us, keys [{}], aggregates [{}], {:?} output",
                n.name,
                w.time_column,
                w.size_us,
                w.slide_us,
                w.watermark_us,
                list(&w.keys),
                list(&w.aggregates),
                w.output_mode
            ));
        }
    }
    out
}

/// A stream source.
struct Stream {
    name: String,
    kind: StreamKind,
}

enum StreamKind {
    /// A directory: the extension its files have, the batch limit.
    Files { dir: PathBuf, ext: &'static str, max_files: Option<usize> },
    Kafka(Box<kafka::Topic>),
}

/// What one batch reads of a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Picked {
    Files(Vec<String>),
    Kafka(kafka::Ranges),
}

/// The offset log (Spark's `offsets/`): what batch N reads, written before it runs, so
/// a batch run again after a crash reads exactly the same files and offsets — whatever
/// arrived meanwhile waits for the next batch. A Delta sink's skip of a batch it already
/// holds, and a Kafka sink's repeat of one, rely on it. `checkpoint_dir/offsets/N.json`.
fn planned_path(dir: &Path, batch: u64) -> PathBuf {
    dir.join("offsets").join(format!("{batch}.json"))
}

/// The batch planned as `batch` before a crash, if any (by stream name).
fn load_planned(dir: &Path, batch: u64, streams: &[Stream]) -> Result<Option<Vec<(usize, Picked)>>> {
    let path = planned_path(dir, batch);
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let by_name: BTreeMap<String, Picked> = serde_json::from_slice(&bytes).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let mut picked = Vec::new();
    for (name, p) in by_name {
        let i = streams.iter().position(|s| s.name == name).ok_or_else(|| Error::Usage(format!("{}: no stream source `{name}`", path.display())))?;
        picked.push((i, p));
    }
    Ok(Some(picked))
}

/// Writes the plan of `batch` whole (a temporary file synced, then renamed), and drops
/// the plans of committed batches.
fn save_planned(dir: &Path, batch: u64, streams: &[Stream], picked: &[(usize, Picked)]) -> Result<()> {
    let path = planned_path(dir, batch);
    let parent = path.parent().expect("offsets/");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let by_name: BTreeMap<&str, &Picked> = picked.iter().map(|(i, p)| (streams[*i].name.as_str(), p)).collect();
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&by_name).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    forget_planned(dir, batch);
    Ok(())
}

/// Removes the plans of batches before `batch` (committed).
fn forget_planned(dir: &Path, batch: u64) {
    let Ok(entries) = std::fs::read_dir(dir.join("offsets")) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n < batch) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Picked {
    fn is_empty(&self) -> bool {
        match self {
            Picked::Files(f) => f.is_empty(),
            Picked::Kafka(r) => r.is_empty(),
        }
    }
}

/// Runs a streaming pipeline until its trigger says stop (`available_now`) or forever.
pub async fn run(pipeline: &Pipeline, opts: &RunOptions, streaming: &Streaming) -> Result<Report> {
    let started = Instant::now();
    if opts.cluster.is_some() {
        return Err(Error::Usage(
            "a streaming pipeline runs its micro-batches in one process in this version of kiln; run it with `run` (not --standalone or submit)".into(),
        ));
    }
    let trigger = opts.trigger.unwrap_or(streaming.trigger);
    let values = params::resolve(&pipeline.params, &opts.params, env)?;
    crate::storage::configure_pipeline(pipeline, &values)?;
    let session_opts = opts.session.clone().over(&pipeline.runtime);
    let ctx = session::context(&session_opts)?;
    // Rows in: each stream source's plan gets a counting marker (node_metrics), so a
    // batch reads its new files once, for its sinks, and counts them on the way.
    // Static sources get none: a marker would keep filters from their scans.
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let config = std::mem::take(state.config_mut());
        *state.config_mut() = crate::node_metrics::enable_for_sources(config, streaming.sources.iter().map(|(name, _)| name.clone()).collect(), opts.node_metrics);
    }
    let dir = pipeline.runtime.checkpoint_dir.as_deref().ok_or_else(|| Error::Usage("a streaming pipeline needs [runtime] checkpoint_dir".into()))?;
    let dir = PathBuf::from(interpolate(dir, &values, env)?);
    if crate::storage::is_remote(&dir.to_string_lossy()) {
        return Err(Error::Usage(format!("checkpoint_dir `{}`: a streaming checkpoint is kept on a local (or mounted) disk in this version of kiln", dir.display())));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating checkpoint_dir {}", dir.display()), e))?;
    let state_dir = dir.join("state");

    let mut streams = Vec::new();
    let mut resolved = Vec::new();
    // How checkpoints written before Kiln recorded the resolved sources named them.
    let mut earlier = Vec::new();
    for (name, max_files) in &streaming.sources {
        let Some(Op::Source(source)) = pipeline.node(name).map(|n| &n.op) else { continue };
        if let SourceFormat::Kafka(k) = &source.format {
            let brokers = interpolate(&k.brokers, &values, env)?;
            let options = k.options.iter().map(|(key, v)| Ok((key.clone(), interpolate(v, &values, env)?))).collect::<Result<Vec<_>>>()?;
            let assign = interpolate(&k.assign, &values, env)?;
            if !k.assign.is_empty() && assign.trim().is_empty() {
                // A process meant to read a share of the partitions would read them all.
                return Err(Error::in_node(name, format!("`assign` is `{}`, which is empty here: name the partitions this process reads", k.assign)));
            }
            let raw_topic = k.topic.clone();
            let k = crate::plan::KafkaSource { topic: interpolate(&k.topic, &values, env)?, assign, ..k.clone() };
            let assigned = match crate::plan::parse_assign(&k.assign) {
                Ok(mut p) if !k.assign.is_empty() => {
                    p.sort_unstable();
                    format!(", partitions {p:?}")
                }
                _ => String::new(),
            };
            resolved.push((name.clone(), format!("kafka topic {}{assigned}", k.topic)));
            earlier.push((name.clone(), format!("kafka topic {raw_topic}")));
            let topic = kafka::Topic::connect(name, &k, &brokers, &options, source.schema.clone()).map_err(|e| Error::in_node(name, e))?;
            streams.push(Stream { name: name.clone(), kind: StreamKind::Kafka(Box::new(topic)) });
            continue;
        }
        let path = interpolate(&source.path, &values, env)?;
        if crate::storage::is_remote(&path) {
            return Err(Error::in_node(name, format!("`{path}`: streams from object stores are not supported by this version of kiln yet (a local or mounted directory is)")));
        }
        let dir = PathBuf::from(&path);
        if !dir.is_dir() {
            return Err(Error::in_node(name, format!("a stream source reads a directory, and `{path}` is {}", if dir.exists() { "a file" } else { "missing" })));
        }
        let ext = match source.format {
            SourceFormat::Csv(_) => "csv",
            SourceFormat::Json => "json",
            SourceFormat::Parquet => "parquet",
            SourceFormat::Avro => "avro",
            _ => return Err(Error::in_node(name, "only csv, json, parquet and avro sources can be streams")),
        };
        resolved.push((name.clone(), format!("{} files in {path}", crate::plan::format_name(&source.format))));
        earlier.push((name.clone(), crate::plan::format_name(&source.format).to_string()));
        streams.push(Stream { name: name.clone(), kind: StreamKind::Files { dir, ext, max_files: *max_files } });
    }

    // Sinks and the checkpoint are held for the whole run; a killed batch's commit is
    // settled (see `sinks::journal`), then leftovers of killed batches are removed.
    let mut locks = vec![sinks::lock("checkpoint", &state_dir)?];
    let mut targets = HashMap::new();
    let mut local = vec![state_dir.clone()];
    for sink in pipeline.sinks.iter().filter(|s| s.format != SinkFormat::Console) {
        let target = sinks::Target::for_sink(sink, |text| interpolate(text, &values, env))?;
        // A topic and a Delta table take care of their own commits (see `batch`).
        if let sinks::Target::Kafka(_) | sinks::Target::Delta { .. } = &target {
            targets.insert(sink.name.clone(), target);
            continue;
        }
        let sinks::Target::Local(path) = &target else {
            return Err(Error::Sink { sink: sink.name.clone(), message: "streaming sinks write local (or mounted) directories in this version of kiln".into() });
        };
        locks.push(sinks::lock(&sink.name, path)?);
        local.push(path.clone());
        targets.insert(sink.name.clone(), target);
    }
    let journal = sinks::journal::path(&local).ok_or_else(|| Error::Usage("a sink path has no file name".into()))?;
    sinks::journal::recover(&journal)?;
    for target in targets.values() {
        target.clean_leftovers().await?;
    }
    sinks::clean_stale_staging(&state_dir);
    let _ = std::fs::remove_dir_all(dir.join("batches"));

    let print = fingerprint(pipeline, &resolved);
    let mut checkpoint = load(&state_dir)?;
    if let Some(c) = checkpoint.as_mut() {
        upgrade_fingerprint(&mut c.fingerprint, &fingerprint(pipeline, &earlier), &print);
    }
    match &checkpoint {
        Some(c) if c.fingerprint != print || c.pipeline != pipeline.name => {
            let theirs: Vec<&String> = c.fingerprint.iter().filter(|f| !print.contains(f)).collect();
            let ours: Vec<&String> = print.iter().filter(|f| !c.fingerprint.contains(f)).collect();
            return Err(Error::Usage(format!(
                "checkpoint_dir {} was written by another spec (pipeline `{}`), and its state cannot be read by this one:\n  the checkpoint has: {}\n  this spec has: {}\nuse a new checkpoint_dir, or delete this one to start over (every file is read again)",
                dir.display(),
                c.pipeline,
                if theirs.is_empty() { "nothing else".to_string() } else { theirs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ") },
                if ours.is_empty() { "nothing else".to_string() } else { ours.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ") },
            )));
        }
        _ => {}
    }
    let mut checkpoint = checkpoint.take().unwrap_or(Checkpoint { version: 1, pipeline: pipeline.name.clone(), fingerprint: print, ..Default::default() });
    // A checkpoint gets its identity once, committed before any batch can use it.
    let mut starting = false;
    if checkpoint.query_id.is_empty() {
        checkpoint.query_id = uuid::Uuid::new_v4().to_string();
        starting = true;
    }
    let mut states: HashMap<String, window::State> = HashMap::new();
    for n in &pipeline.nodes {
        if let Op::EventWindow { .. } = &n.op {
            let rows = read_ipc(&state_dir.join(format!("{}.arrow", n.name)))?;
            let watermark_us = checkpoint.watermarks.get(&n.name).copied().flatten();
            let closed_us = checkpoint.closed.get(&n.name).copied().unwrap_or(watermark_us);
            states.insert(n.name.clone(), window::State { watermark_us, closed_us, rows });
        }
    }

    // A Kafka source new to this checkpoint starts at the earliest offsets kept, or at
    // the end (Spark's `latest`): the end as of now, recorded before any batch, so a
    // restart does not skip what arrives in between.
    for s in &streams {
        if let StreamKind::Kafka(topic) = &s.kind {
            if !checkpoint.offsets.contains_key(&s.name) {
                let offsets = topic.offsets().map_err(|e| Error::in_node(&s.name, e))?;
                let start = offsets.into_iter().map(|(p, (low, high))| (p, if topic.earliest { low } else { high })).collect();
                checkpoint.offsets.insert(s.name.clone(), start);
                starting = true;
            }
        }
    }
    if starting {
        // The state directory is replaced whole: the open windows' rows go with it.
        let rows: HashMap<String, Vec<RecordBatch>> = states.iter().map(|(n, s)| (n.clone(), s.rows.clone())).collect();
        commit_state(&state_dir, &journal, &checkpoint, &rows, Vec::new())?;
    }
    forget_planned(&dir, checkpoint.batches);

    // `available_now`: the files present and the records written at start, nothing later.
    let available: Option<HashSet<(String, String)>> = match trigger {
        Trigger::AvailableNow => Some(streams.iter().flat_map(|s| listing(s).into_iter().map(|(f, _)| (s.name.clone(), f))).collect()),
        Trigger::IntervalMs(_) => None,
    };
    let mut ends_at_start = HashMap::new();
    if trigger == Trigger::AvailableNow {
        for s in &streams {
            if let StreamKind::Kafka(topic) = &s.kind {
                ends_at_start.insert(s.name.clone(), topic.offsets().map_err(|e| Error::in_node(&s.name, e))?);
            }
        }
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    // Per node over every batch (`--metrics`, `--report`: SPEC §10's `nodes`).
    let mut nodes: BTreeMap<String, crate::node_metrics::NodeMetrics> = BTreeMap::new();
    let mut reports = Vec::new();
    let served = Arc::new(std::sync::Mutex::new(Served::default()));
    if let Some(bind) = opts.metrics_bind {
        let (name, served) = (pipeline.name.clone(), served.clone());
        crate::cluster::prom::serve_text(bind, Arc::new(move || served.lock().unwrap_or_else(|e| e.into_inner()).render(&name))).await?;
        eprintln!("{}: stream metrics at http://{bind}/metrics", pipeline.name);
    }
    loop {
        let batch_started = Instant::now();
        // A batch planned before a crash runs again on the same input.
        let replayed = load_planned(&dir, checkpoint.batches, &streams)?;
        let is_replay = replayed.is_some();
        let mut picked: Vec<(usize, Picked)> = replayed.unwrap_or_default();
        for (i, s) in streams.iter().enumerate().filter(|_| !is_replay) {
            let max_files = match &s.kind {
                StreamKind::Files { max_files, .. } => *max_files,
                StreamKind::Kafka(topic) => {
                    let ends = match ends_at_start.get(&s.name) {
                        Some(e) => e.clone(),
                        None => topic.offsets().map_err(|e| Error::in_node(&s.name, e))?,
                    };
                    let next = checkpoint.offsets.get(&s.name).cloned().unwrap_or_default();
                    picked.push((i, Picked::Kafka(topic.plan(&next, &ends))));
                    continue;
                }
            };
            let read: HashSet<&str> = checkpoint.files.get(&s.name).map(|f| f.iter().map(String::as_str).collect()).unwrap_or_default();
            let mut new: Vec<(String, SystemTime)> = listing(s)
                .into_iter()
                .filter(|(f, _)| !read.contains(f.as_str()))
                .filter(|(f, _)| available.as_ref().is_none_or(|a| a.contains(&(s.name.clone(), f.clone()))))
                .collect();
            // Oldest first, as Spark's file source.
            new.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            new.truncate(max_files.unwrap_or(usize::MAX));
            picked.push((i, Picked::Files(new.into_iter().map(|(f, _)| f).collect())));
        }
        // Nothing new: one batch with no data when a window's watermark moved past where it
        // last closed windows (Spark's no-data batch), so the windows it passed are written.
        let moved = states.values().any(|s| s.watermark_us.is_some() && s.watermark_us != s.closed_us);
        if picked.iter().all(|(_, f)| f.is_empty()) && !moved {
            match trigger {
                Trigger::AvailableNow => break,
                Trigger::IntervalMs(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms.max(200))).await;
                    continue;
                }
            }
        }
        let id = checkpoint.batches;
        if !is_replay {
            save_planned(&dir, id, &streams, &picked)?;
        }
        let work = dir.join("batches").join(id.to_string());
        let outcome = batch(pipeline, &ctx, &values, &session_opts, &streams, &picked, &work, &targets, &state_dir, &journal, &mut checkpoint, &mut states).await;
        let _ = std::fs::remove_dir_all(&work);
        let mut report = outcome?;
        if let Some(r) = crate::node_metrics::registry(&ctx).filter(|r| r.nodes) {
            for (node, mut m) in crate::node_metrics::collect(&r) {
                m.join_strategy = r.join_strategy(&node);
                crate::node_metrics::accumulate(nodes.entry(node).or_default(), &m);
            }
        }
        report.seconds = batch_started.elapsed().as_secs_f64();
        report.rows_per_second = report.rows_in as f64 / report.seconds.max(1e-9);
        for (sink, rows) in &report.rows_out {
            *totals.entry(sink.clone()).or_default() += rows;
        }
        eprintln!("{}", describe(&report));
        served.lock().unwrap_or_else(|e| e.into_inner()).add(&report);
        tracing::info!(batch = report.batch, rows_in = report.rows_in, seconds = report.seconds, "batch committed");
        reports.push(report);
        if let Some(path) = &opts.metrics_file {
            let so_far = summary(pipeline, &values, &totals, &nodes, started, &reports);
            crate::cli::write_metrics(pipeline, &so_far, path)?;
        }
        if let Trigger::IntervalMs(ms) = trigger {
            let next = batch_started + Duration::from_millis(ms);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    drop(locks);
    Ok(summary(pipeline, &values, &totals, &nodes, started, &reports))
}

/// What `run --metrics-bind` serves: this process's batches so far.
#[derive(Default)]
struct Served {
    batches: u64,
    last_batch: Option<u64>,
    last_seconds: f64,
    rows_in: u64,
    rows_out: BTreeMap<String, u64>,
    late: BTreeMap<String, u64>,
    state_rows: BTreeMap<String, u64>,
    watermark_s: BTreeMap<String, f64>,
}

impl Served {
    fn add(&mut self, r: &BatchReport) {
        self.batches += 1;
        self.last_batch = Some(r.batch);
        self.last_seconds = r.seconds;
        self.rows_in += r.rows_in;
        for (sink, n) in &r.rows_out {
            *self.rows_out.entry(sink.clone()).or_default() += n;
        }
        for (window, w) in &r.windows {
            *self.late.entry(window.clone()).or_default() += w.late_rows;
            self.state_rows.insert(window.clone(), w.state_rows);
            if let Some(t) = w.watermark.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
                self.watermark_s.insert(window.clone(), t.timestamp_micros() as f64 / 1e6);
            }
        }
    }

    /// Prometheus' text format.
    fn render(&self, pipeline: &str) -> String {
        use std::fmt::Write;
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let p = esc(pipeline);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{pipeline=\"{p}\"{labels}}} {value}");
            }
        };
        metric("kiln_stream_batches_total", "counter", "Batches this process committed (no-data batches too).", vec![(String::new(), self.batches.to_string())]);
        if let Some(b) = self.last_batch {
            metric("kiln_stream_last_batch", "gauge", "The number of the last batch committed.", vec![(String::new(), b.to_string())]);
            metric("kiln_stream_last_batch_seconds", "gauge", "How long the last batch took, files in to commit.", vec![(String::new(), format!("{:.6}", self.last_seconds))]);
        }
        metric("kiln_stream_rows_in_total", "counter", "Rows the stream sources produced.", vec![(String::new(), self.rows_in.to_string())]);
        metric("kiln_stream_rows_out_total", "counter", "Rows written, per sink.", self.rows_out.iter().map(|(s, n)| (format!(",sink=\"{}\"", esc(s)), n.to_string())).collect());
        metric("kiln_stream_late_rows_total", "counter", "Rows dropped as late, per window.", self.late.iter().map(|(w, n)| (format!(",window=\"{}\"", esc(w)), n.to_string())).collect());
        metric("kiln_stream_state_rows", "gauge", "Rows of open windows kept in the checkpoint, per window.", self.state_rows.iter().map(|(w, n)| (format!(",window=\"{}\"", esc(w)), n.to_string())).collect());
        metric("kiln_stream_watermark_seconds", "gauge", "Each window's watermark, seconds since the epoch (UTC).", self.watermark_s.iter().map(|(w, t)| (format!(",window=\"{}\"", esc(w)), format!("{t:.6}"))).collect());
        out
    }
}

/// The run's report so far: rows per sink and figures per node over all batches,
/// and every batch.
fn summary(pipeline: &Pipeline, values: &Values, totals: &BTreeMap<String, u64>, nodes: &BTreeMap<String, crate::node_metrics::NodeMetrics>, started: Instant, batches: &[BatchReport]) -> Report {
    let sinks = pipeline
        .sinks
        .iter()
        .map(|s| SinkReport { name: s.name.clone(), path: interpolate(&s.path, values, env).unwrap_or_default(), rows: Some(totals.get(&s.name).copied().unwrap_or(0)) })
        .collect();
    let params = values.0.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    Report { sinks, quality: Vec::new(), seconds: started.elapsed().as_secs_f64(), nodes: nodes.clone(), plans: Default::default(), params, batches: batches.to_vec(), cluster_jobs: Vec::new() }
}

/// One line per batch on stderr.
fn describe(r: &BatchReport) -> String {
    let files: u64 = r.files.values().sum();
    let out: u64 = r.rows_out.values().sum();
    let mut line = format!("batch {}: {files} file(s), {} rows in ({:.0} rows/s), {out} rows out, {:.2}s", r.batch, r.rows_in, r.rows_per_second, r.seconds);
    for (name, w) in &r.windows {
        line.push_str(&format!(
            "; window `{name}`: watermark {}, {} state rows, {} late rows dropped",
            w.watermark.as_deref().unwrap_or("none"),
            w.state_rows,
            w.late_rows
        ));
    }
    line
}

/// The files of a stream's directory with the source's extension, relative to
/// it, and when each was last modified. Names starting with `.` or `_` (staging
/// files of writers, `_SUCCESS`) are skipped at every level, as Spark does.
fn listing(s: &Stream) -> Vec<(String, SystemTime)> {
    let StreamKind::Files { dir, ext, .. } = &s.kind else { return Vec::new() };
    crate::sources::files_under(dir, Some(ext))
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(dir).ok()?.to_path_buf();
            if rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with(['.', '_'])) {
                return None;
            }
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            Some((rel.to_string_lossy().into_owned(), modified))
        })
        .collect()
}

/// Runs and commits one batch; updates `checkpoint` and `states` once committed.
#[allow(clippy::too_many_arguments)]
async fn batch(
    pipeline: &Pipeline,
    ctx: &SessionContext,
    values: &Values,
    session_opts: &session::SessionOptions,
    streams: &[Stream],
    picked: &[(usize, Picked)],
    work: &Path,
    targets: &HashMap<String, sinks::Target>,
    state_dir: &Path,
    journal: &Path,
    checkpoint: &mut Checkpoint,
    states: &mut HashMap<String, window::State>,
) -> Result<BatchReport> {
    let id = checkpoint.batches;
    // The new files, linked under the batch directory: the stream sources read it.
    let mut p = pipeline.clone();
    let mut files = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    // Rows in of Kafka sources: the records read (files are counted by their markers).
    let mut records_read: HashMap<String, u64> = HashMap::new();
    for (i, what) in picked {
        let s = &streams[*i];
        let at = work.join(&s.name);
        std::fs::create_dir_all(&at).map_err(|e| Error::io(format!("creating {}", at.display()), e))?;
        let node = p.nodes.iter_mut().find(|n| n.name == s.name).ok_or_else(|| Error::Usage(format!("no source `{}`", s.name)))?;
        let Op::Source(source) = &mut node.op else { continue };
        if what.is_empty() {
            // Nothing new from this stream (a no-data batch, or another stream's batch): no rows.
            source.format = SourceFormat::Inline(Vec::new());
            if let Picked::Files(_) = what {
                files.insert(s.name.clone(), 0);
            }
            continue;
        }
        match (what, &s.kind) {
            (Picked::Files(names), StreamKind::Files { dir, .. }) => {
                for f in names {
                    link(&dir.join(f), &at.join(f))?;
                }
                files.insert(s.name.clone(), names.len() as u64);
                source.path = format!("{}/", at.display());
            }
            (Picked::Kafka(ranges), StreamKind::Kafka(topic)) => {
                // The records, read once, become a Parquet file the batch scans.
                let batch = topic.read(ranges).map_err(|e| Error::in_node(&s.name, e))?;
                records_read.insert(s.name.clone(), batch.num_rows() as u64);
                let path = at.join("records.parquet");
                write_parquet(&path, &source.schema, &[batch])?;
                source.format = SourceFormat::Parquet;
                source.path = path.display().to_string();
                offsets.insert(s.name.clone(), ranges.iter().map(|(p, (from, to))| (*p, [*from, *to])).collect::<BTreeMap<_, _>>());
            }
            _ => return Err(Error::Usage(format!("source `{}`: a batch of the wrong kind", s.name))),
        }
    }
    let registry = crate::node_metrics::registry(ctx);
    if let Some(r) = &registry {
        r.clear();
    }

    // Each window's step, on its input's rows of this batch; its result becomes a
    // Parquet source of the rest of the batch.
    let mut window_reports = BTreeMap::new();
    let mut new_states = HashMap::new();
    if p.nodes.iter().any(|n| matches!(n.op, Op::EventWindow { .. })) {
        let prepared = crate::run::prepare(&p, values, session_opts.spill_dir.as_deref())?;
        let plans = crate::run::planned(&p, ctx, values, &prepared.read_from, None, &Default::default(), None).await?;
        let windows: Vec<(String, String, EventWindow)> = p
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::EventWindow { input, window } => Some((n.name.clone(), input.clone(), window.clone())),
                _ => None,
            })
            .collect();
        for (name, input, w) in windows {
            let plan = plans[&input].clone();
            let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
            let new = DataFrame::new(ctx.state(), plan).collect().await.map_err(|e| Error::in_node(&input, e))?;
            let state = states.remove(&name).unwrap_or_default();
            let step = window::step(ctx, &name, &input, &w, schema, new, state).await.map_err(|e| Error::in_node(&name, e))?;
            let out = work.join("_windows").join(format!("{name}.parquet"));
            write_parquet(&out, &step.output_schema, &step.output)?;
            window_reports.insert(
                name.clone(),
                WindowReport {
                    watermark: step.state.watermark_us.map(format_time),
                    state_rows: step.state_rows,
                    late_rows: step.late_rows,
                    rows_in: step.rows_in,
                    rows_out: step.rows_out,
                },
            );
            let node = p.nodes.iter_mut().find(|n| n.name == name).expect("window node");
            node.op = Op::Source(Source { format: SourceFormat::Parquet, path: out.display().to_string(), schema: step.output_schema.clone(), partitions: Vec::new(), hints: Default::default() });
            new_states.insert(name, step.state);
        }
    }

    // The batch as a batch run: every sink appends, the expectations are checked.
    let prepared = crate::run::prepare(&p, values, session_opts.spill_dir.as_deref())?;
    let mut shared_ids = Vec::new();
    let plans = crate::run::planned(&p, ctx, values, &prepared.read_from, Some(&mut shared_ids), &Default::default(), None).await;
    let staged = match plans {
        Ok(plans) => stage(&p, ctx, &plans, targets, &pipeline.name, &checkpoint.query_id, id, work).await,
        Err(e) => Err(e),
    };
    crate::shared::release(&shared_ids);
    let staged = staged?;
    let rows_in = streams.iter().map(|s| records_read.get(&s.name).copied().unwrap_or_else(|| registry.as_ref().map_or(0, |r| r.node_rows_once(&s.name)))).sum();

    // The new checkpoint, staged beside the state directory, commits with the sinks.
    let mut next = Checkpoint {
        version: 1,
        pipeline: checkpoint.pipeline.clone(),
        fingerprint: checkpoint.fingerprint.clone(),
        batches: id + 1,
        files: checkpoint.files.clone(),
        watermarks: checkpoint.watermarks.clone(),
        closed: checkpoint.closed.clone(),
        offsets: checkpoint.offsets.clone(),
        query_id: checkpoint.query_id.clone(),
    };
    for (i, what) in picked {
        let name = streams[*i].name.clone();
        match what {
            Picked::Files(names) => next.files.entry(name).or_default().extend(names.iter().cloned()),
            Picked::Kafka(ranges) => {
                let at = next.offsets.entry(name).or_default();
                for (p, (_, to)) in ranges {
                    at.insert(*p, *to);
                }
            }
        }
    }
    for (name, s) in &new_states {
        next.watermarks.insert(name.clone(), s.watermark_us);
        next.closed.insert(name.clone(), s.closed_us);
    }
    // Windows that did not run this batch keep their rows.
    let mut rows_of: HashMap<String, Vec<RecordBatch>> = states.iter().map(|(n, s)| (n.clone(), s.rows.clone())).collect();
    rows_of.extend(new_states.iter().map(|(n, s)| (n.clone(), s.rows.clone())));
    let mut rows_out = BTreeMap::new();
    let mut moves = Vec::new();
    let mut consoles = Vec::new();
    let mut sends = Vec::new();
    for s in staged {
        rows_out.insert(s.sink.clone(), s.rows);
        if s.is_remote() {
            sends.push(s);
            continue;
        }
        match s.into_move() {
            Ok(m) => moves.push(m),
            Err(console) => consoles.push(console),
        }
    }
    // Kafka records go out, and Delta versions commit, before the commit that marks
    // the batch done. A process killed in between runs the batch again: Kafka sends
    // it again (at least once, see `sinks::kafka`); a Delta table already holds the
    // batch under the stream's app id and is skipped (exactly once).
    let mut sends = sends.into_iter();
    while let Some(s) = sends.next() {
        if let Err(e) = s.commit_remote().await {
            crate::run::abort_all(sends.collect()).await;
            moves.iter().for_each(|(staging, _, _)| sinks::discard(staging));
            return Err(e);
        }
    }
    commit_state(state_dir, journal, &next, &rows_of, moves)?;
    // Committed: consoles print (at least once: a process killed here prints again).
    for console in consoles {
        console.commit()?;
    }
    *checkpoint = next;
    for (name, s) in new_states {
        states.insert(name, s);
    }
    Ok(BatchReport { batch: id, files, offsets, rows_in, rows_out, seconds: 0.0, rows_per_second: 0.0, windows: window_reports })
}

/// Stages the checkpoint `next` (with each window's open rows) beside the state
/// directory and commits it with the sinks' `moves`, in one journal.
fn commit_state(state_dir: &Path, journal: &Path, next: &Checkpoint, rows: &HashMap<String, Vec<RecordBatch>>, mut moves: Vec<(PathBuf, PathBuf, WriteMode)>) -> Result<()> {
    let staging = sinks::staging_path(state_dir)?;
    let written = (|| -> Result<()> {
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        for (name, batches) in rows {
            write_ipc(&staging.join(format!("{name}.arrow")), batches)?;
        }
        let json = serde_json::to_vec_pretty(next).map_err(|e| Error::Usage(e.to_string()))?;
        std::fs::write(staging.join(STATE_FILE), json).map_err(|e| Error::io(format!("writing {}", staging.display()), e))
    })();
    if let Err(e) = written {
        sinks::discard(&staging);
        moves.iter().for_each(|(staging, _, _)| sinks::discard(staging));
        return Err(e);
    }
    moves.push((staging, state_dir.to_path_buf(), WriteMode::Overwrite));
    sinks::journal::commit_all(journal, &moves)
}

/// Stages every sink of the batch (appending), with the expectations' summaries.
/// Kafka sinks tag their records with the batch; Delta sinks commit it as the
/// stream's application transaction.
async fn stage(
    p: &Pipeline,
    ctx: &SessionContext,
    plans: &HashMap<String, datafusion::logical_expr::LogicalPlan>,
    targets: &HashMap<String, sinks::Target>,
    pipeline: &str,
    query_id: &str,
    batch: u64,
    work: &Path,
) -> Result<Vec<Staged>> {
    let sinks: Vec<_> = p
        .sinks
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if s.format != SinkFormat::Console {
                s.mode = WriteMode::Append;
            }
            s
        })
        .collect();
    let (quality, results) = futures::future::join(
        crate::run::check_quality(p, ctx, plans),
        futures::future::join_all(sinks.iter().map(|sink| {
            let mut target = targets.get(&sink.name).cloned().unwrap_or_else(|| sinks::Target::Local(PathBuf::new()));
            match &mut target {
                sinks::Target::Kafka(k) => {
                    k.tag = format!("{pipeline}/{query_id}/{batch}");
                    k.staging = Some(work.to_path_buf());
                }
                // One app id per sink: two sinks of one table commit separately.
                sinks::Target::Delta { txn, .. } => *txn = Some((format!("kiln-{query_id}-{}", sink.name), batch as i64)),
                _ => {}
            }
            let df = DataFrame::new(ctx.state(), plans[&sink.input].clone());
            // Streaming pipelines run in one process.
            async move { sinks::stage(df, sink, &target, false).await }
        })),
    )
    .await;
    let mut staged = Vec::new();
    let mut failed = None;
    for r in results {
        match r {
            Ok(s) => staged.push(s),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Err(e) = quality {
        failed = failed.or(Some(e));
    }
    if let Some(e) = failed {
        crate::run::abort_all(staged).await;
        return Err(e);
    }
    Ok(staged)
}

/// `from` at `to`: a hard link (no copy) where the file system allows, else a copy.
fn link(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| Error::io(format!("reading {}", from.display()), e))
}

fn load(state_dir: &Path) -> Result<Option<Checkpoint>> {
    let path = state_dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Usage(format!("{} is not a kiln checkpoint: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn read_ipc(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let reader = datafusion::arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| Error::Usage(format!("reading {}: {e}", path.display())))?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::Usage(format!("reading {}: {e}", path.display())))
}

fn write_ipc(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else { return Ok(()) };
    let io = |e: std::io::Error| Error::io(format!("writing {}", path.display()), e);
    let arrow = |e: datafusion::arrow::error::ArrowError| Error::Usage(format!("writing {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = datafusion::arrow::ipc::writer::FileWriter::try_new(file, &first.schema()).map_err(arrow)?;
    for b in batches {
        w.write(b).map_err(arrow)?;
    }
    w.finish().map_err(arrow)
}

fn write_parquet(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let err = |e: parquet::errors::ParquetError| Error::Usage(format!("writing {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).map_err(err)?;
    for b in batches {
        w.write(b).map_err(err)?;
    }
    w.close().map_err(err)?;
    Ok(())
}

/// Microseconds since the epoch as RFC 3339 (UTC).
fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(|| us.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::upgrade_fingerprint;

    #[test]
    fn a_checkpoint_that_named_sources_by_format_takes_the_resolved_lines() {
        let earlier = ["source clicks: json".to_string(), "source orders: kafka topic ${params.topic}".to_string(), "window w over clicks: …".to_string()];
        let now = ["source clicks: json files in /data/clicks".to_string(), "source orders: kafka topic eu".to_string(), "window w over clicks: …".to_string()];
        let mut old = earlier.to_vec();
        upgrade_fingerprint(&mut old, &earlier, &now);
        assert_eq!(old, now);
        // A checkpoint of another format or topic text keeps its lines (and is refused).
        let mut other = vec!["source clicks: csv".to_string(), "source orders: kafka topic us".to_string()];
        upgrade_fingerprint(&mut other, &earlier, &now);
        assert_eq!(other, ["source clicks: csv", "source orders: kafka topic us"]);
    }
}
