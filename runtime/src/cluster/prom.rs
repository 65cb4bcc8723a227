//! Prometheus metrics of a long-lived executor or scheduler (issue 19): `NAME
//! executor --metrics-bind ADDR` and `NAME scheduler --metrics-bind ADDR` serve
//! `GET /metrics` in Prometheus' text format ([`SchedulerMetrics`] for the latter).
//!
//! No exporter crate: the counters come from Ballista's own task results. The
//! executor's execution engine is wrapped ([`Engine`]) so that every finished
//! task adds its shuffle output (rows, bytes) and its operators' metrics
//! (compute time, spills) to a [`Registry`]; a few lines of tokio serve it.
//! Executor-wide totals carry no job label; per-job series are kept for the
//! most recent jobs only ([`JOBS_KEPT`]), so a long-lived executor's series do
//! not grow without bound.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ballista_core::JobId;
use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_executor::execution_engine::{DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;

/// Jobs whose per-stage series are kept.
pub const JOBS_KEPT: usize = 32;

/// What tasks of one stage (or of all, for the totals) added up to.
#[derive(Debug, Default, Clone)]
struct Counts {
    succeeded: u64,
    failed: u64,
    rows: u64,
    bytes: u64,
    spills: u64,
    spilled_bytes: u64,
    compute_ns: u64,
    task_seconds: f64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.spills += other.spills;
        self.spilled_bytes += other.spilled_bytes;
        self.compute_ns += other.compute_ns;
        self.task_seconds += other.task_seconds;
    }
}

/// The executor's counters.
#[derive(Debug)]
pub struct Registry {
    pipeline: String,
    slots: usize,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: Counts,
    /// (job, stage) → counts, oldest job first.
    stages: VecDeque<(String, usize, Counts)>,
}

impl Registry {
    pub fn new(pipeline: &str, slots: usize) -> Arc<Registry> {
        Arc::new(Registry { pipeline: pipeline.to_string(), slots, started: Instant::now(), state: Mutex::default() })
    }

    fn record(&self, job: &str, stage: usize, result: &Result<Vec<ShuffleWritePartition>>, metrics: &[MetricsSet], seconds: f64) {
        let mut c = Counts { task_seconds: seconds, ..Counts::default() };
        match result {
            Ok(parts) => {
                c.succeeded = 1;
                c.rows = parts.iter().map(|p| p.num_rows).sum();
                c.bytes = parts.iter().map(|p| p.num_bytes).sum();
            }
            Err(_) => c.failed = 1,
        }
        for m in metrics {
            c.spills += m.spill_count().unwrap_or(0) as u64;
            c.spilled_bytes += m.spilled_bytes().unwrap_or(0) as u64;
            c.compute_ns += m.elapsed_compute().unwrap_or(0) as u64;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total.add(&c);
        match state.stages.iter_mut().find(|(j, s, _)| j == job && *s == stage) {
            Some((_, _, counts)) => counts.add(&c),
            None => {
                state.stages.push_back((job.to_string(), stage, c));
                // Forget the oldest jobs beyond JOBS_KEPT.
                let mut jobs: Vec<String> = Vec::new();
                for (j, _, _) in state.stages.iter().rev() {
                    if !jobs.contains(j) {
                        jobs.push(j.clone());
                    }
                }
                if jobs.len() > JOBS_KEPT {
                    jobs.truncate(JOBS_KEPT);
                    state.stages.retain(|(j, _, _)| jobs.contains(j));
                }
            }
        }
    }

    /// The counters in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let p = escape(&self.pipeline);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, total: String, per_stage: &dyn Fn(&Counts) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{pipeline=\"{p}\"}} {total}");
            for (job, stage, c) in &state.stages {
                let _ = writeln!(out, "{name}{{pipeline=\"{p}\",job=\"{}\",stage=\"{stage}\"}} {}", escape(job), per_stage(c));
            }
        };
        let t = &state.total;
        family("kiln_executor_tasks_succeeded_total", "counter", "Tasks this executor finished.", t.succeeded.to_string(), &|c| c.succeeded.to_string());
        family("kiln_executor_tasks_failed_total", "counter", "Tasks this executor ran that failed.", t.failed.to_string(), &|c| c.failed.to_string());
        family("kiln_executor_output_rows_total", "counter", "Rows the tasks wrote as their stage's output (shuffle files).", t.rows.to_string(), &|c| c.rows.to_string());
        family("kiln_executor_output_bytes_total", "counter", "Bytes of the tasks' stage output.", t.bytes.to_string(), &|c| c.bytes.to_string());
        family("kiln_executor_spills_total", "counter", "Times an operator spilled to disk.", t.spills.to_string(), &|c| c.spills.to_string());
        family("kiln_executor_spilled_bytes_total", "counter", "Bytes operators spilled to disk.", t.spilled_bytes.to_string(), &|c| c.spilled_bytes.to_string());
        family("kiln_executor_compute_seconds_total", "counter", "CPU time operators spent computing (DataFusion's elapsed_compute).", secs(t.compute_ns), &|c| secs(c.compute_ns));
        family("kiln_executor_task_seconds_total", "counter", "Wall time of the tasks.", format!("{:.6}", t.task_seconds), &|c| format!("{:.6}", c.task_seconds));
        let _ = writeln!(out, "# HELP kiln_executor_slots Concurrent tasks this executor runs.\n# TYPE kiln_executor_slots gauge\nkiln_executor_slots{{pipeline=\"{p}\"}} {}", self.slots);
        let _ = writeln!(
            out,
            "# HELP kiln_executor_uptime_seconds Seconds since the executor started.\n# TYPE kiln_executor_uptime_seconds gauge\nkiln_executor_uptime_seconds{{pipeline=\"{p}\"}} {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

/// The scheduler's counters (`NAME scheduler --metrics-bind ADDR`): jobs by
/// outcome and their time, from Ballista's metrics hooks; jobs running and
/// queued, executors alive and their cores, read at each scrape.
pub struct SchedulerMetrics {
    pipeline: String,
    started: Instant,
    submitted: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// Queued to finished, over completed jobs (milliseconds).
    completed_ms: AtomicU64,
    pending_tasks: AtomicU64,
    /// Refreshed every few seconds (the executors' state is read asynchronously).
    executors: AtomicU64,
    vcores: AtomicU64,
    jobs: Mutex<Option<Arc<dyn Fn() -> (usize, usize) + Send + Sync>>>,
}

use std::sync::atomic::{AtomicU64, Ordering};

impl SchedulerMetrics {
    pub fn new(pipeline: &str) -> Arc<SchedulerMetrics> {
        Arc::new(SchedulerMetrics {
            pipeline: pipeline.to_string(),
            started: Instant::now(),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            completed_ms: AtomicU64::new(0),
            pending_tasks: AtomicU64::new(0),
            executors: AtomicU64::new(0),
            vcores: AtomicU64::new(0),
            jobs: Mutex::new(None),
        })
    }

    /// Where the running and queued job counts come from (the scheduler's task manager).
    pub fn count_jobs_with(&self, jobs: Arc<dyn Fn() -> (usize, usize) + Send + Sync>) {
        *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some(jobs);
    }

    /// The executors alive (a heartbeat within the timeout) and their cores.
    pub fn set_executors(&self, alive: u64, vcores: u64) {
        self.executors.store(alive, Ordering::Relaxed);
        self.vcores.store(vcores, Ordering::Relaxed);
    }

    /// The counters in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let p = escape(&self.pipeline);
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{pipeline=\"{p}\"}} {value}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        one("kiln_scheduler_jobs_submitted_total", "counter", "Jobs planned and handed to the executors.", get(&self.submitted));
        one("kiln_scheduler_jobs_completed_total", "counter", "Jobs that finished successfully.", get(&self.completed));
        one("kiln_scheduler_jobs_failed_total", "counter", "Jobs that failed.", get(&self.failed));
        one("kiln_scheduler_jobs_cancelled_total", "counter", "Jobs cancelled.", get(&self.cancelled));
        one("kiln_scheduler_completed_job_seconds_total", "counter", "Queued-to-finished time of the completed jobs, summed.", format!("{:.3}", self.completed_ms.load(Ordering::Relaxed) as f64 / 1e3));
        one("kiln_scheduler_pending_tasks", "gauge", "Tasks ready to run that wait for a free executor slot.", get(&self.pending_tasks));
        if let Some(jobs) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let (running, queued) = jobs();
            one("kiln_scheduler_jobs_running", "gauge", "Jobs running now.", running.to_string());
            one("kiln_scheduler_jobs_queued", "gauge", "Jobs accepted and not yet planned.", queued.to_string());
        }
        one("kiln_scheduler_executors", "gauge", "Executors alive (a heartbeat within the timeout).", get(&self.executors));
        one("kiln_scheduler_executor_cores", "gauge", "Cores (Ballista vcores) of the executors alive.", get(&self.vcores));
        one("kiln_scheduler_uptime_seconds", "gauge", "Seconds since the scheduler started.", format!("{:.3}", self.started.elapsed().as_secs_f64()));
        out
    }
}

impl ballista_scheduler::metrics::SchedulerMetricsCollector for SchedulerMetrics {
    fn record_submitted(&self, _job_id: &JobId, _queued_at: u64, _submitted_at: u64) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    fn record_completed(&self, _job_id: &JobId, queued_at: u64, completed_at: u64) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.completed_ms.fetch_add(completed_at.saturating_sub(queued_at), Ordering::Relaxed);
    }

    fn record_failed(&self, _job_id: &JobId, _queued_at: u64, _failed_at: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn record_cancelled(&self, _job_id: &JobId) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    fn set_pending_tasks_queue_size(&self, value: u64) {
        self.pending_tasks.store(value, Ordering::Relaxed);
    }

    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        Ok(Some((self.render().into_bytes(), "text/plain; version=0.0.4".into())))
    }
}

fn secs(ns: u64) -> String {
    format!("{:.6}", ns as f64 / 1e9)
}

/// A label value, escaped as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Ballista's execution engine, each task recorded in the registry.
pub struct Engine {
    inner: DefaultExecutionEngine,
    registry: Arc<Registry>,
}

impl Engine {
    pub fn new(registry: Arc<Registry>) -> Engine {
        Engine { inner: DefaultExecutionEngine::new(), registry }
    }
}

impl ExecutionEngine for Engine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let job = job_id.to_string();
        let inner = self.inner.create_query_stage_exec(job_id, stage_id, task_id, global_output_partition_ids, plan, work_dir, config)?;
        Ok(Arc::new(Recorded { inner, job, stage: stage_id, registry: self.registry.clone() }))
    }
}

#[derive(Debug)]
struct Recorded {
    inner: Arc<dyn QueryStageExecutor>,
    job: String,
    stage: usize,
    registry: Arc<Registry>,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for Recorded {
    async fn execute_query_stage(&self, task_id: usize, context: Arc<TaskContext>) -> Result<Vec<ShuffleWritePartition>> {
        let start = Instant::now();
        let result = self.inner.execute_query_stage(task_id, context).await;
        self.registry.record(&self.job, self.stage, &result, &self.inner.collect_plan_metrics(), start.elapsed().as_secs_f64());
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<ballista_core::serde::protobuf::WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<ballista_core::serde::protobuf::TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

/// Serves `GET /metrics` on `bind` until the process stops (anything else: 404).
pub async fn serve(bind: SocketAddr, registry: Arc<Registry>) -> crate::Result<()> {
    serve_text(bind, Arc::new(move || registry.render())).await
}

/// Serves `GET /metrics` with what `render` says at each scrape (Prometheus' text format).
pub async fn serve_text(bind: SocketAddr, render: Arc<dyn Fn() -> String + Send + Sync>) -> crate::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| crate::Error::Usage(format!("--metrics-bind: cannot listen on {bind}: {e}")))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let render = render.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // The request line and headers (a scrape sends no body).
                while len < buf.len() {
                    match tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf[len..])).await {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if request.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
                    ("200 OK", render())
                } else {
                    ("404 Not Found", "not found: the metrics are at /metrics\n".to_string())
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_counts_jobs_by_outcome_and_reads_the_gauges_at_each_scrape() {
        use ballista_scheduler::metrics::SchedulerMetricsCollector;
        let m = SchedulerMetrics::new("etl");
        let (a, b) = (JobId::new("a"), JobId::new("b"));
        m.record_submitted(&a, 0, 5);
        m.record_submitted(&b, 0, 5);
        m.record_completed(&a, 1_000, 3_500);
        m.record_failed(&b, 1_000, 1_200);
        m.set_pending_tasks_queue_size(3);
        m.set_executors(2, 8);
        let text = m.render();
        assert!(!text.contains("jobs_running"), "no task manager yet: {text}");
        m.count_jobs_with(Arc::new(|| (4, 1)));
        let text = m.render();
        for line in [
            "kiln_scheduler_jobs_submitted_total{pipeline=\"etl\"} 2",
            "kiln_scheduler_jobs_completed_total{pipeline=\"etl\"} 1",
            "kiln_scheduler_jobs_failed_total{pipeline=\"etl\"} 1",
            "kiln_scheduler_completed_job_seconds_total{pipeline=\"etl\"} 2.500",
            "kiln_scheduler_pending_tasks{pipeline=\"etl\"} 3",
            "kiln_scheduler_jobs_running{pipeline=\"etl\"} 4",
            "kiln_scheduler_jobs_queued{pipeline=\"etl\"} 1",
            "kiln_scheduler_executors{pipeline=\"etl\"} 2",
            "kiln_scheduler_executor_cores{pipeline=\"etl\"} 8",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Ballista's own metrics endpoint would serve the same text.
        assert_eq!(m.gather_metrics().unwrap().unwrap().1, "text/plain; version=0.0.4");
    }

    #[test]
    fn counts_add_up_per_stage_and_in_total_and_old_jobs_are_forgotten() {
        let r = Registry::new("etl", 2);
        let part = |rows, bytes| ShuffleWritePartition { num_rows: rows, num_bytes: bytes, ..Default::default() };
        r.record("j1", 1, &Ok(vec![part(10, 100), part(5, 50)]), &[], 0.5);
        r.record("j1", 1, &Ok(vec![part(1, 10)]), &[], 0.25);
        r.record("j1", 2, &Err(datafusion::error::DataFusionError::Execution("boom".into())), &[], 0.1);
        let text = r.render();
        assert!(text.contains("kiln_executor_output_rows_total{pipeline=\"etl\"} 16\n"), "{text}");
        assert!(text.contains("kiln_executor_output_rows_total{pipeline=\"etl\",job=\"j1\",stage=\"1\"} 16\n"), "{text}");
        assert!(text.contains("kiln_executor_tasks_succeeded_total{pipeline=\"etl\",job=\"j1\",stage=\"1\"} 2\n"), "{text}");
        assert!(text.contains("kiln_executor_tasks_failed_total{pipeline=\"etl\",job=\"j1\",stage=\"2\"} 1\n"), "{text}");
        assert!(text.contains("kiln_executor_task_seconds_total{pipeline=\"etl\"} 0.850000\n"), "{text}");
        for j in 0..JOBS_KEPT + 3 {
            r.record(&format!("k{j}"), 1, &Ok(vec![part(1, 1)]), &[], 0.0);
        }
        let text = r.render();
        assert!(!text.contains("job=\"j1\"") && !text.contains("job=\"k2\",") && text.contains("job=\"k3\",") && text.contains(&format!("job=\"k{}\",", JOBS_KEPT + 2)), "{text}");
        // Totals keep everything.
        assert!(text.contains(&format!("kiln_executor_tasks_succeeded_total{{pipeline=\"etl\"}} {}\n", JOBS_KEPT + 3 + 2)), "{text}");
    }
}
