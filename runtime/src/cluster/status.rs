//! A cluster run's jobs and stages, as its scheduler sees them (issue 19; SPEC
//! §10: progress per stage, and `--metrics`'s `nodes` on a cluster too).
//!
//! Kiln's scheduler serves `GET /kiln/jobs?name=PREFIX` beside Ballista's gRPC
//! service, on the same port, so the cluster's gate (TLS with the token's or the
//! operators' certificates) guards it like everything else there. The answer is
//! every job whose name starts with PREFIX: its status, and per stage its state,
//! the partitions done, the rows and bytes it wrote per output partition, and
//! each operator's metrics as Ballista combined them from the finished tasks.
//!
//! The client names each sink's job `kiln/RUN/SINK` (Ballista's
//! `ballista.job.name`) and asks through a channel like the one it submits
//! with (an HTTP/2 GET): while the run lasts for the progress line, at the end
//! for `--metrics` and `--report`. Kiln's node markers travel to the executors
//! ([`crate::codec::KilnPhysicalCodec`]) and count there, so [`nodes`] gives each
//! node the figures a local run gives it: its marker's rows, and the operators
//! between it and the markers below, followed across stages through the
//! shuffle readers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::response::IntoResponse;
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::execution_graph::ExecutionGraphBox;
use ballista_scheduler::state::execution_stage::{ExecutionStage, TaskInfo};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use serde::{Deserialize, Serialize};

use crate::node_metrics::NodeMetrics;
use crate::{Error, Result};

/// The path the scheduler answers on.
pub const PATH: &str = "/kiln/jobs";

/// Kiln's scheduler.
pub type Server = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// One job (`--metrics`: `cluster_jobs[]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    pub job_id: String,
    pub job_name: String,
    /// `queued`, `running`, `successful` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the epoch (0: not yet).
    pub queued_at_ms: u64,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    /// By stage id.
    pub stages: Vec<StageStatus>,
}

/// One stage of a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageStatus {
    pub stage_id: usize,
    /// `pending` (waiting for its inputs), `ready`, `running`, `successful` or `failed`.
    pub state: String,
    pub attempt: usize,
    /// Its tasks' input partitions, and how many of them are done.
    pub partitions: usize,
    pub partitions_done: usize,
    pub tasks_failed: usize,
    /// What it wrote for the next stage (or the client): rows, bytes, rows per output partition.
    pub rows_out: u64,
    pub bytes_out: u64,
    pub output_partition_rows: Vec<u64>,
    /// Wall time of its finished tasks, summed.
    pub task_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its plan, outermost first (pre-order), with each operator's metrics once a task finished.
    pub operators: Vec<OperatorStatus>,
}

/// One operator of a stage's plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OperatorStatus {
    pub depth: usize,
    pub name: String,
    /// The operator's one-line description.
    pub detail: String,
    /// A shuffle reader: the stage it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads_stage: Option<usize>,
    /// A Kiln node marker: the node, and the sink for a sink's top marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    pub output_rows: u64,
    /// CPU time (DataFusion's `elapsed_compute`, plus file scans' decoding time).
    pub compute_ns: u64,
    pub spill_count: u64,
    pub spill_bytes: u64,
    pub spill_rows: u64,
    pub peak_memory_bytes: u64,
    /// Markers only: rows and bytes per partition, and the first and last batch's times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_rows: Vec<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<i64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

// ---------------------------------------------------------------- scheduler

/// The scheduler's routes: Ballista's gRPC service and [`PATH`]. (Ballista's
/// own `start_grpc_service_with_listener` less its REST API, which this build
/// leaves out, and its Flight proxy, which Kiln's configuration never enables.)
pub fn router(server: Server, jobs: Arc<dyn JobState>) -> axum::Router {
    use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
    let config = server.state.config.clone();
    let grpc = SchedulerGrpcServer::new(server.clone())
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(grpc);
    let status = axum::routing::get(move |axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>| {
        let (server, jobs) = (server.clone(), jobs.clone());
        async move {
            let prefix = query.get("name").cloned().unwrap_or_default();
            match jobs_named(&server, jobs.as_ref(), &prefix).await {
                Ok(found) => axum::Json(found).into_response(),
                Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
    });
    routes.routes().into_axum_router().route(PATH, status)
}

/// Every job whose name starts with `prefix`, oldest first.
async fn jobs_named(server: &Server, jobs: &dyn JobState, prefix: &str) -> Result<Vec<JobStatus>> {
    let running = server.state.task_manager.get_running_job_cache();
    let mut out = Vec::new();
    for overview in server.state.task_manager.get_all_jobs().await.map_err(|e| Error::Cluster(e.to_string()))? {
        if !overview.job_name.starts_with(prefix) {
            continue;
        }
        let graph = match running.get(&overview.job_id) {
            Some(cached) => Some(cached.execution_graph.read().await.cloned()),
            None => jobs.get_execution_graph(&overview.job_id).await.map_err(|e| Error::Cluster(e.to_string()))?,
        };
        out.push(job_status(&overview.status, graph.as_ref()));
    }
    out.sort_by_key(|j| (j.queued_at_ms, j.job_id.clone()));
    Ok(out)
}

fn job_status(status: &ballista_core::serde::protobuf::JobStatus, graph: Option<&ExecutionGraphBox>) -> JobStatus {
    use ballista_core::serde::protobuf::job_status::Status;
    let mut job = JobStatus { job_id: status.job_id.clone(), job_name: status.job_name.clone(), ..Default::default() };
    (job.status, job.queued_at_ms, job.started_at_ms, job.ended_at_ms) = match &status.status {
        Some(Status::Queued(q)) => ("queued".into(), q.queued_at, 0, 0),
        Some(Status::Running(r)) => ("running".into(), r.queued_at, r.started_at, 0),
        Some(Status::Successful(s)) => ("successful".into(), s.queued_at, s.started_at, s.ended_at),
        Some(Status::Failed(f)) => {
            job.error = Some(f.error.clone());
            ("failed".into(), f.queued_at, f.started_at, f.ended_at)
        }
        None => ("queued".into(), 0, 0, 0),
    };
    if let Some(graph) = graph {
        let mut stages: Vec<StageStatus> = graph.stages().values().map(stage_status).collect();
        stages.sort_by_key(|s| s.stage_id);
        job.stages = stages;
    }
    job
}

fn stage_status(stage: &ExecutionStage) -> StageStatus {
    let none: &[TaskInfo] = &[];
    let (stage_id, attempt, state, partitions, plan, infos, metrics, error): (usize, usize, &str, usize, &Arc<dyn ExecutionPlan>, &[TaskInfo], Option<&[MetricsSet]>, Option<String>) = match stage {
        ExecutionStage::UnResolved(s) => (s.stage_id, s.stage_attempt_num, "pending", input_partitions(&s.plan), &s.plan, none, None, None),
        ExecutionStage::Resolved(s) => (s.stage_id, s.stage_attempt_num, "ready", s.partitions, &s.plan, none, None, None),
        ExecutionStage::Running(s) => (s.stage_id, s.stage_attempt_num, "running", s.partitions, &s.plan, s.task_infos.as_slice(), s.stage_metrics.as_deref(), None),
        ExecutionStage::Successful(s) => (s.stage_id, s.stage_attempt_num, "successful", s.partitions, &s.plan, s.task_infos.as_slice(), Some(s.stage_metrics.as_slice()), None),
        ExecutionStage::Failed(s) => (s.stage_id, s.stage_attempt_num, "failed", s.partitions, &s.plan, s.task_infos.as_slice(), s.stage_metrics.as_deref(), Some(s.error_message.clone())),
    };
    let mut out = StageStatus { stage_id, attempt, state: state.into(), partitions, error, ..Default::default() };
    // The last successful task of each input slice (a retried slice counts once).
    let mut done: BTreeMap<&[usize], &TaskInfo> = BTreeMap::new();
    for info in infos {
        use ballista_core::serde::protobuf::task_status::Status;
        match &info.task_status {
            Status::Successful(_) => {
                done.insert(info.global_input_partition_ids.as_slice(), info);
            }
            Status::Failed(_) => out.tasks_failed += 1,
            Status::Running(_) => {}
        }
    }
    out.partitions_done = if state == "successful" { partitions } else { done.keys().map(|ids| ids.len().max(1)).sum::<usize>().min(partitions) };
    for info in done.values() {
        if let ballista_core::serde::protobuf::task_status::Status::Successful(ok) = &info.task_status {
            for p in &ok.partitions {
                let i = p.partition_id as usize;
                if out.output_partition_rows.len() <= i {
                    out.output_partition_rows.resize(i + 1, 0);
                }
                out.output_partition_rows[i] += p.num_rows;
                out.rows_out += p.num_rows;
                out.bytes_out += p.num_bytes;
            }
        }
        out.task_ms += info.end_exec_time.saturating_sub(info.start_exec_time) as u64;
    }
    let mut plans = Vec::new();
    preorder(plan, 0, &mut plans);
    // Ballista keeps one combined metrics set per operator that has metrics, in
    // the same order (`ballista_core::utils::collect_plan_metrics`).
    let measured: Vec<bool> = plans.iter().map(|(_, op)| op.metrics().is_some()).collect();
    let mut metrics = metrics.filter(|m| m.len() == measured.iter().filter(|&&m| m).count()).map(|m| m.iter());
    out.operators = plans
        .iter()
        .zip(measured)
        .map(|((depth, op), measured)| operator_status(*depth, op, if measured { metrics.as_mut().and_then(|m| m.next()) } else { None }))
        .collect();
    out
}

/// The tasks of a stage not yet resolved: its plan's input partitions.
fn input_partitions(plan: &Arc<dyn ExecutionPlan>) -> usize {
    plan.children().first().map_or(0, |c| c.properties().partitioning.partition_count())
}

fn preorder<'a>(plan: &'a Arc<dyn ExecutionPlan>, depth: usize, out: &mut Vec<(usize, &'a Arc<dyn ExecutionPlan>)>) {
    out.push((depth, plan));
    for child in plan.children() {
        preorder(child, depth + 1, out);
    }
}

fn operator_status(depth: usize, plan: &Arc<dyn ExecutionPlan>, metrics: Option<&MetricsSet>) -> OperatorStatus {
    use ballista_core::execution_plans::{ShuffleReaderExec, UnresolvedShuffleExec};
    let detail = datafusion::physical_plan::displayable(plan.as_ref()).one_line().to_string();
    let mut op = OperatorStatus { depth, name: plan.name().to_string(), detail: detail.trim_end().to_string(), ..Default::default() };
    op.reads_stage = if let Some(r) = plan.downcast_ref::<ShuffleReaderExec>() {
        Some(r.stage_id)
    } else {
        plan.downcast_ref::<UnresolvedShuffleExec>().map(|r| r.stage_id)
    };
    let marker = plan.downcast_ref::<crate::node_metrics::NodeMetricsExec>();
    if let Some(m) = marker {
        op.node = Some(m.node().to_string());
        op.sink = m.sink().map(str::to_string);
    }
    let Some(set) = metrics else { return op };
    op.output_rows = set.output_rows().unwrap_or(0) as u64;
    let mut nanos = set.elapsed_compute().unwrap_or(0) as u64;
    for metric in set.iter() {
        match metric.value() {
            // File scans time their decoding under this name, not elapsed_compute.
            MetricValue::Time { name, time } if name == "time_elapsed_processing" => nanos += time.value() as u64,
            MetricValue::OutputRows(c) if marker.is_some() => {
                let p = metric.partition().unwrap_or(0);
                if op.partition_rows.len() <= p {
                    op.partition_rows.resize(p + 1, 0);
                }
                op.partition_rows[p] += c.value() as u64;
            }
            MetricValue::Count { name, count } if marker.is_some() && name == "output_bytes" => op.output_bytes += count.value() as u64,
            MetricValue::StartTimestamp(t) if marker.is_some() => {
                if let Some(ns) = t.value().and_then(|v| v.timestamp_nanos_opt()) {
                    op.start_ns = Some(op.start_ns.map_or(ns, |s| s.min(ns)));
                }
            }
            MetricValue::EndTimestamp(t) if marker.is_some() => {
                if let Some(ns) = t.value().and_then(|v| v.timestamp_nanos_opt()) {
                    op.end_ns = Some(op.end_ns.map_or(ns, |e| e.max(ns)));
                }
            }
            _ => {}
        }
    }
    op.compute_ns = nanos;
    op.spill_count = set.spill_count().unwrap_or(0) as u64;
    op.spill_bytes = set.spilled_bytes().unwrap_or(0) as u64;
    op.spill_rows = set.spilled_rows().unwrap_or(0) as u64;
    op.peak_memory_bytes = set.sum(|x| matches!(x.value(), MetricValue::PeakMemoryUsage { .. })).map_or(0, |v| v.as_usize() as u64);
    op
}

// ---------------------------------------------------------------- client

/// A client's line to the scheduler's status.
#[derive(Clone)]
pub struct Client {
    channel: tonic::transport::Channel,
}

impl Client {
    /// Connects to the scheduler at `addr` (`host:port`) as the submitting client does.
    pub async fn connect(addr: &str) -> Result<Client> {
        let channel = super::auth::scheduler_channel(addr, super::auth::current().as_deref()).await?;
        Ok(Client { channel })
    }

    /// Every job whose name starts with `prefix`, oldest first.
    pub async fn jobs(&self, prefix: &str) -> Result<Vec<JobStatus>> {
        use tonic::codegen::Service;
        let failed = |why: String| Error::Cluster(format!("the scheduler's job status: {why}"));
        let mut channel = self.channel.clone();
        let request = axum::http::Request::get(format!("{PATH}?name={}", encode(prefix))).body(tonic::body::Body::empty()).map_err(|e| failed(e.to_string()))?;
        futures::future::poll_fn(|cx| channel.poll_ready(cx)).await.map_err(|e| failed(e.to_string()))?;
        let response = channel.call(request).await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 256 << 20).await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))
    }
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The job name of a sink (`part` = its name) or of the quality checks (`quality`) in this run.
pub fn job_name(pipeline: &str, part: &str) -> String {
    format!("{}{part}", run_prefix(pipeline))
}

/// The prefix of every job name of this run.
pub fn run_prefix(pipeline: &str) -> String {
    format!("kiln/{pipeline}/{}/", crate::logging::run_id())
}

/// The progress line's part for the jobs so far: per job, its stage and partitions.
pub fn progress(jobs: &[JobStatus], prefix: &str) -> String {
    let mut line = String::new();
    for job in jobs {
        let what = job.job_name.strip_prefix(prefix).unwrap_or(&job.job_name);
        let total = job.stages.len();
        let done = job.stages.iter().filter(|s| s.state == "successful").count();
        let written = job.stages.iter().filter(|s| s.state == "successful" || s.state == "running");
        let (rows, bytes): (u64, u64) = written.fold((0, 0), |(r, b), s| (r + s.rows_out, b + s.bytes_out));
        let state = match job.status.as_str() {
            "successful" => "done".to_string(),
            "failed" => "failed".to_string(),
            "queued" => "queued".to_string(),
            _ => match job.stages.iter().find(|s| s.state == "running") {
                Some(s) => format!("stage {} of {total}, {}/{} partitions", done + 1, s.partitions_done, s.partitions),
                None => format!("stage {} of {total}", (done + 1).min(total.max(1))),
            },
        };
        line.push_str(&format!(" · {what} {state}"));
        if rows > 0 {
            line.push_str(&format!(", {} rows ({}) shuffled", crate::report::thousands(rows), crate::report::human_bytes(bytes)));
        }
    }
    line
}

/// Per node, the figures of a local run's `--metrics` (see [`crate::node_metrics`]),
/// from the jobs' markers. A node every job computes (nodes are not shared
/// between sinks on a cluster) gives the rows of one computation (the most any
/// job saw) and the time and spill of all.
pub fn nodes(jobs: &[JobStatus]) -> BTreeMap<String, NodeMetrics> {
    let mut out: BTreeMap<String, NodeMetrics> = BTreeMap::new();
    for job in jobs {
        let mut per_job: BTreeMap<String, NodeMetrics> = BTreeMap::new();
        let mut spans: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
        let stages: HashMap<usize, &StageStatus> = job.stages.iter().map(|s| (s.stage_id, s)).collect();
        // Who a stage's topmost operators belong to: the node above the reader of it.
        let read: std::collections::HashSet<usize> = job.stages.iter().flat_map(|s| s.operators.iter().filter_map(|o| o.reads_stage)).collect();
        let mut queue: Vec<(usize, Option<String>)> = job.stages.iter().filter(|s| !read.contains(&s.stage_id)).map(|s| (s.stage_id, None)).collect();
        let mut visited = std::collections::HashSet::new();
        while let Some((id, inherited)) = queue.pop() {
            let Some(stage) = stages.get(&id) else { continue };
            if !visited.insert(id) {
                continue;
            }
            // owners[d]: the node owning operators below depth d's ancestor.
            let mut owners: Vec<Option<String>> = Vec::new();
            for op in &stage.operators {
                owners.truncate(op.depth);
                let owner = owners.last().cloned().unwrap_or_else(|| inherited.clone());
                if let Some(node) = &op.node {
                    let m = per_job.entry(node.clone()).or_default();
                    if op.sink.is_none() {
                        m.rows_out += op.output_rows;
                        m.bytes_out += op.output_bytes;
                        if m.partition_rows.len() < op.partition_rows.len() {
                            m.partition_rows.resize(op.partition_rows.len(), 0);
                        }
                        for (i, r) in op.partition_rows.iter().enumerate() {
                            m.partition_rows[i] += r;
                        }
                        let span = spans.entry(node.clone()).or_default();
                        if let Some(s) = op.start_ns {
                            span.0 = Some(span.0.map_or(s, |v| v.min(s)));
                        }
                        if let Some(e) = op.end_ns {
                            span.1 = Some(span.1.map_or(e, |v| v.max(e)));
                        }
                    }
                    owners.push(Some(node.clone()));
                    continue;
                }
                if let Some(node) = &owner {
                    let m = per_job.entry(node.clone()).or_default();
                    if m.join_strategy.is_none() {
                        m.join_strategy = join_strategy(op);
                    }
                    m.operators.push(op.name.clone());
                    m.elapsed_ms += op.compute_ns as f64 / 1e6;
                    m.spill_count += op.spill_count;
                    m.spill_bytes += op.spill_bytes;
                    m.spill_rows += op.spill_rows;
                    m.peak_memory_bytes += op.peak_memory_bytes;
                }
                if let Some(child) = op.reads_stage {
                    queue.push((child, owner.clone()));
                }
                owners.push(owner);
            }
        }
        for (node, (s, e)) in spans {
            if let (Some(s), Some(e), Some(m)) = (s, e, per_job.get_mut(&node)) {
                m.wall_ms = (e - s).max(0) as f64 / 1e6;
            }
        }
        for (node, m) in per_job {
            let total = out.entry(node).or_default();
            if m.rows_out >= total.rows_out {
                (total.rows_out, total.bytes_out, total.partition_rows) = (m.rows_out, m.bytes_out, m.partition_rows);
            }
            total.elapsed_ms += m.elapsed_ms;
            total.wall_ms = total.wall_ms.max(m.wall_ms);
            total.spill_count += m.spill_count;
            total.spill_bytes += m.spill_bytes;
            total.spill_rows += m.spill_rows;
            total.peak_memory_bytes = total.peak_memory_bytes.max(m.peak_memory_bytes);
            if total.operators.is_empty() {
                total.operators = m.operators;
            }
            total.join_strategy = total.join_strategy.take().or(m.join_strategy);
        }
    }
    out.values_mut().for_each(NodeMetrics::finish);
    out
}

/// The strategy of a join operator as Ballista's planner chose it on the
/// scheduler (Kiln's hints are not shipped to a cluster; SPEC §4's names).
fn join_strategy(op: &OperatorStatus) -> Option<String> {
    let strategy = match op.name.as_str() {
        "HashJoinExec" if op.detail.contains("mode=CollectLeft") => "broadcast",
        "HashJoinExec" => "shuffle",
        "SortMergeJoinExec" => "sort_merge",
        "NestedLoopJoinExec" | "CrossJoinExec" => "nested_loop",
        _ => return None,
    };
    Some(format!("{strategy} (Ballista's planner: {})", op.name))
}

/// A job's stages as text, each operator with its metrics (the report's plan of a sink on a cluster).
pub fn plan_text(job: &JobStatus) -> String {
    let mut text = String::new();
    for stage in &job.stages {
        text.push_str(&format!(
            "Stage {} ({}, {} partitions, {} rows out, {} task-ms)\n",
            stage.stage_id,
            stage.state,
            stage.partitions,
            crate::report::thousands(stage.rows_out),
            stage.task_ms
        ));
        for op in &stage.operators {
            text.push_str(&format!("{}{}, metrics=[output_rows={}, compute={:.3}ms, spill_bytes={}]\n", "  ".repeat(op.depth + 1), op.detail, op.output_rows, op.compute_ns as f64 / 1e6, op.spill_bytes));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(depth: usize, name: &str) -> OperatorStatus {
        OperatorStatus { depth, name: name.into(), detail: name.into(), compute_ns: 1_000_000, ..Default::default() }
    }

    fn marker(depth: usize, node: &str, rows: Vec<u64>) -> OperatorStatus {
        OperatorStatus { depth, name: "KilnNodeExec".into(), node: Some(node.into()), output_rows: rows.iter().sum(), partition_rows: rows, ..Default::default() }
    }

    /// Stage 2 reads stage 1 through a shuffle; the repartition on top of stage 1
    /// is the consuming node's (`agg`), as in a local plan.
    #[test]
    fn operators_belong_to_the_marker_above_them_across_stages() {
        let reader = OperatorStatus { reads_stage: Some(1), ..op(2, "ShuffleReaderExec") };
        let stage1 = StageStatus { stage_id: 1, operators: vec![op(0, "ShuffleWriterExec"), op(1, "RepartitionExec"), marker(2, "src", vec![3, 4]), op(3, "DataSourceExec")], ..Default::default() };
        let stage2 = StageStatus {
            stage_id: 2,
            operators: vec![op(0, "ShuffleWriterExec"), OperatorStatus { sink: Some("out".into()), ..marker(1, "agg", vec![5]) }, marker(2, "agg", vec![2, 0, 0, 1]), op(3, "AggregateExec"), reader],
            ..Default::default()
        };
        let job = JobStatus { stages: vec![stage1, stage2], ..Default::default() };
        let n = nodes(&[job.clone(), job]);
        assert_eq!((n["src"].rows_out, n["src"].partitions), (7, 2));
        assert_eq!(n["src"].operators, ["DataSourceExec"]);
        assert_eq!((n["agg"].rows_out, n["agg"].partition_rows_max, n["agg"].partition_rows_median), (3, 2, 0));
        assert_eq!(n["agg"].operators, ["AggregateExec", "ShuffleReaderExec", "ShuffleWriterExec", "RepartitionExec"]);
        // Two jobs computed each node: the rows of one, the time of both (4 operators, 1 ms each, twice).
        assert_eq!(n["agg"].elapsed_ms, 8.0);
    }

    #[test]
    fn a_join_nodes_strategy_is_read_from_its_operator() {
        let join = |name: &str, detail: &str| OperatorStatus { detail: detail.into(), ..op(2, name) };
        let stage = |j: OperatorStatus| StageStatus { operators: vec![op(0, "ShuffleWriterExec"), marker(1, "j", vec![1]), j], ..Default::default() };
        let strategy = |j| nodes(&[JobStatus { stages: vec![stage(j)], ..Default::default() }])["j"].join_strategy.clone();
        assert_eq!(strategy(join("HashJoinExec", "HashJoinExec: mode=CollectLeft, join_type=Inner")).as_deref(), Some("broadcast (Ballista's planner: HashJoinExec)"));
        assert_eq!(strategy(join("HashJoinExec", "HashJoinExec: mode=Partitioned, join_type=Left")).as_deref(), Some("shuffle (Ballista's planner: HashJoinExec)"));
        assert_eq!(strategy(join("SortMergeJoinExec", "SortMergeJoinExec: join_type=Inner")).as_deref(), Some("sort_merge (Ballista's planner: SortMergeJoinExec)"));
        assert_eq!(strategy(join("ProjectionExec", "ProjectionExec: expr=[]")), None);
    }

    #[test]
    fn the_progress_names_each_jobs_stage_and_partitions() {
        let stage = |id, state: &str, done, rows: u64| StageStatus { stage_id: id, state: state.into(), partitions: 4, partitions_done: done, rows_out: rows, bytes_out: rows * 1024, ..Default::default() };
        let jobs = vec![
            JobStatus { job_name: "kiln/etl/r1/a".into(), status: "successful".into(), stages: vec![stage(1, "successful", 4, 10)], ..Default::default() },
            JobStatus { job_name: "kiln/etl/r1/b".into(), status: "running".into(), stages: vec![stage(1, "successful", 4, 1500), stage(2, "running", 3, 0), stage(3, "pending", 0, 0)], ..Default::default() },
        ];
        assert_eq!(progress(&jobs, "kiln/etl/r1/"), " · a done, 10 rows (10.0 KB) shuffled · b stage 2 of 3, 3/4 partitions, 1,500 rows (1.5 MB) shuffled");
        assert_eq!(encode("kiln/a b&c"), "kiln/a%20b%26c");
    }
}
