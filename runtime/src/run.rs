//! Running a pipeline: plans for every node, then every sink staged and committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use crate::params::{self, Values, interpolate};
use crate::plan::{Op, Pipeline, SinkFormat};
use crate::session::{self, SessionOptions};
use crate::sinks::{self, Staged};
use crate::{Error, Result, sources, transforms};

/// How one run was asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub session: SessionOptions,
    /// `--param NAME=VALUE` pairs.
    pub params: Vec<(String, String)>,
    /// `--skew-report`: count every join's keys before running (one aggregate
    /// pass per join side) and report partition sizes and top keys.
    pub skew_report: bool,
    /// Run on Ballista (`run --standalone`, `submit --scheduler`) instead of in-process.
    pub cluster: Option<crate::cluster::Cluster>,
    /// `explain --analyze`: execute each sink's plan (output discarded) and show operator metrics.
    pub analyze: bool,
    /// `--metrics`/`--report`: collect per-node figures ([`crate::node_metrics`]; local runs).
    pub node_metrics: bool,
    /// Show progress on stderr ([`crate::progress`]; local runs).
    pub progress: bool,
    /// `run --trigger`: a streaming pipeline's trigger instead of the spec's.
    pub trigger: Option<crate::plan::Trigger>,
    /// `--metrics FILE`: a streaming run rewrites it after every batch (a stream may never end).
    pub metrics_file: Option<PathBuf>,
    /// `run --metrics-bind ADDR`: a streaming run serves its batches' figures at
    /// `http://ADDR/metrics` (Prometheus' text format).
    pub metrics_bind: Option<std::net::SocketAddr>,
}

/// What a run did, per sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub sinks: Vec<SinkReport>,
    /// One entry per `expect` node.
    pub quality: Vec<QualityReport>,
    pub seconds: f64,
    /// Per node, when the run collected them (`--metrics`, `--report`; local runs).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub nodes: std::collections::BTreeMap<String, crate::node_metrics::NodeMetrics>,
    /// The executed plan each sink read, with operator metrics (for `--report`).
    #[serde(skip)]
    pub plans: std::collections::BTreeMap<String, String>,
    /// The parameters' values this run used (printed redacted).
    pub params: std::collections::BTreeMap<String, String>,
    /// A streaming run's micro-batches (SPEC §8), like Spark's `StreamingQueryProgress`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<crate::streaming::BatchReport>,
    /// A cluster run's jobs with their stages, as the scheduler reported them (`--metrics`, `--report`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_jobs: Vec<crate::cluster::status::JobStatus>,
}

/// An `expect` node's summary: rows checked and failures per rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityReport {
    pub node: String,
    pub rows: u64,
    pub rules: Vec<RuleReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub on_fail: String,
    /// Rows that broke the rule (for `row_count`: 1 when the count is out of bounds).
    pub failed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    pub name: String,
    pub path: String,
    /// `None` when the sink was skipped (`mode = "ignore"` and the target existed).
    pub rows: Option<u64>,
}

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The logical plan of every node, with parameters bound.
pub async fn node_plans(
    pipeline: &Pipeline,
    ctx: &SessionContext,
    values: &Values,
) -> Result<HashMap<String, LogicalPlan>> {
    node_plans_reading(pipeline, ctx, values, &HashMap::new()).await
}

/// A key holding more than this share of a join side's rows is reported as skew.
pub const SKEW_WARN_SHARE: f64 = 0.2;

/// Per join side: rows, the partition sizes a hash partitioning on the key
/// into `target_partitions` would give (max / median), and the top keys; a
/// warning suggesting `strategy = "salted"` when one key holds more than
/// [`SKEW_WARN_SHARE`] of a side.
async fn skew_report(pipeline: &Pipeline, ctx: &SessionContext, plans: &HashMap<String, LogicalPlan>) -> Result<()> {
    let partitions = ctx.state().config().target_partitions().max(1);
    for node in &pipeline.nodes {
        let Op::Join { left, right, on, strategy, .. } = &node.op else { continue };
        let sides: Vec<(&String, crate::plan::JoinOn)> = match on {
            crate::plan::JoinOn::Using(keys) if keys.len() == 1 => vec![(left, on.clone()), (right, on.clone())],
            crate::plan::JoinOn::Keys { left: l, right: r, .. } if l.len() == 1 => vec![
                (left, on.clone()),
                (right, crate::plan::JoinOn::Keys { left: r.clone(), right: l.clone(), filter: None }),
            ],
            _ => continue,
        };
        for (side, side_on) in sides {
            let profile = key_profile(ctx, plans[side.as_str()].clone(), &side_on, partitions).await.map_err(|e| Error::in_node(&node.name, e))?;
            let total = profile.total;
            let mut sizes = profile.partition_rows;
            sizes.sort_unstable();
            let (max, median) = (sizes[partitions - 1], sizes[(partitions - 1) / 2]);
            let top = profile.top;
            let shown: Vec<String> = top.iter().map(|(k, n)| format!("{k} {:.1}%", *n as f64 * 100.0 / total.max(1) as f64)).collect();
            eprintln!(
                "skew: join `{}`, side `{side}`: {total} rows; {partitions} hash partitions: max {max}, median {median}; top keys: {}",
                node.name,
                shown.join(", ")
            );
            if let Some((k, n)) = top.first() {
                let share = *n as f64 / total.max(1) as f64;
                if share > SKEW_WARN_SHARE && *strategy != crate::plan::JoinStrategy::Salted {
                    let k = match k {
                        datafusion::common::ScalarValue::Utf8(Some(s)) | datafusion::common::ScalarValue::Utf8View(Some(s)) | datafusion::common::ScalarValue::LargeUtf8(Some(s)) => format!("{s:?}"),
                        k => k.to_string(),
                    };
                    eprintln!(
                        "warning: join `{}`: key {k} holds {:.0}% of `{side}`'s rows; consider strategy = \"salted\" with salt = {{ hot_keys = [{k}] }}",
                        node.name,
                        share * 100.0
                    );
                }
            }
        }
    }
    Ok(())
}

/// What `--skew-report` shows of one join side.
struct KeyProfile {
    /// Rows, NULL keys included.
    total: u64,
    /// Rows per partition of a hash repartitioning on the key into `partitions`
    /// (DataFusion's own hash and seed, so these are the partitions a join gets).
    partition_rows: Vec<u64>,
    /// The three most frequent non-null keys, most frequent first.
    top: Vec<(datafusion::common::ScalarValue, u64)>,
}

/// One aggregate pass (rows per key, in the engine: it spills under the memory
/// limit), read as a stream: this process keeps `partitions` counters and three
/// keys, never the set of distinct keys.
async fn key_profile(ctx: &SessionContext, side: LogicalPlan, on: &crate::plan::JoinOn, partitions: usize) -> Result<KeyProfile> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::lit;
    use futures::StreamExt;
    let key = key_expr(&side, on)?;
    let mut stream = DataFrame::new(ctx.state(), side)
        .aggregate(vec![key.alias("__kiln_key")], vec![count(lit(1)).alias("__kiln_rows")])?
        .execute_stream()
        .await?;
    let mut profile = KeyProfile { total: 0, partition_rows: vec![0; partitions], top: Vec::new() };
    let mut hashes = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let keys = batch.column(0);
        let rows = batch.column(1).as_primitive::<Int64Type>();
        hashes.clear();
        hashes.resize(batch.num_rows(), 0u64);
        datafusion::common::hash_utils::create_hashes([keys], datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE.random_state(), &mut hashes)?;
        for (i, hash) in hashes.iter().enumerate() {
            let n = rows.value(i).max(0) as u64;
            profile.total += n;
            if keys.is_null(i) {
                continue;
            }
            profile.partition_rows[(hash % partitions as u64) as usize] += n;
            if profile.top.len() < 3 || n > profile.top[profile.top.len() - 1].1 {
                profile.top.push((datafusion::common::ScalarValue::try_from_array(keys, i)?, n));
                profile.top.sort_by(|a, b| b.1.cmp(&a.1));
                profile.top.truncate(3);
            }
        }
    }
    Ok(profile)
}

/// The left side's join-key values holding at least `threshold` of its rows:
/// (value, rows, total rows), most frequent first. Two passes (the rows, then
/// the keys counted with the threshold applied by the engine), so only hot
/// keys — at most 1/threshold of them — reach this process, whatever the
/// number of distinct keys.
async fn detect_hot_keys(ctx: &SessionContext, left: LogicalPlan, on: &crate::plan::JoinOn, threshold: f64) -> Result<Vec<(datafusion::common::ScalarValue, u64, u64)>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::{col, lit};
    let total = DataFrame::new(ctx.state(), left.clone()).count().await? as u64;
    let min_rows = (threshold * total as f64).ceil().max(1.0) as i64;
    let key = key_expr(&left, on)?;
    let batches = DataFrame::new(ctx.state(), left)
        .aggregate(vec![key.alias("__kiln_key")], vec![count(lit(1)).alias("__kiln_rows")])?
        .filter(col("__kiln_rows").gt_eq(lit(min_rows)).and(col("__kiln_key").is_not_null()))?
        .collect()
        .await?;
    let mut hot = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let rows = b.column(1).as_primitive::<Int64Type>().value(i).max(0) as u64;
            hot.push((datafusion::common::ScalarValue::try_from_array(b.column(0), i)?, rows, total));
        }
    }
    hot.sort_by(|a, b| b.1.cmp(&a.1));
    Ok(hot)
}

/// The expression of a one-key join's key on one side.
fn key_expr(side: &LogicalPlan, on: &crate::plan::JoinOn) -> Result<datafusion::logical_expr::Expr> {
    use datafusion::logical_expr::Expr;
    match on {
        crate::plan::JoinOn::Using(keys) if keys.len() == 1 => {
            let (q, f) = side.schema().qualified_field_with_unqualified_name(&keys[0])?;
            Ok(Expr::Column(datafusion::common::Column::new(q.cloned(), f.name())))
        }
        crate::plan::JoinOn::Keys { left: l, .. } if l.len() == 1 => Ok(l[0].clone()),
        _ => Err(Error::Usage("a key count needs a join on one key".into())),
    }
}

/// The plan of every node as a run makes it: schema drift checked and tolerant
/// CSV sources cleaned first. The cleaned copies live as long as the [`Prepared`].
pub async fn run_plans(pipeline: &Pipeline, ctx: &SessionContext, values: &Values) -> Result<(HashMap<String, LogicalPlan>, Prepared)> {
    let prepared = prepare(pipeline, values, None)?;
    let plans = node_plans_reading(pipeline, ctx, values, &prepared.read_from).await?;
    Ok((plans, prepared))
}

/// A local sink whose plan has a `window` transform (a window with `partition_by`; not a
/// dedupe's row number, which FirstPerKeyExec usually replaces) plans with
/// [`session::WINDOW_FAN_OUT`] times the partitions, when the session's count is Kiln's
/// default ([`session::WindowFanOut`]). Not one that reads a shared node: its other readers
/// may plan with the session's count, and readers planned differently each compute the node
/// ([`crate::shared`]), so it would no longer be computed once.
fn fan_out_windows(state: &mut datafusion::execution::SessionState, plan: &LogicalPlan) {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::Expr;
    if state.config().get_extension::<session::WindowFanOut>().is_none() {
        return;
    }
    let partitioned = |e: &Expr| {
        let e = if let Expr::Alias(a) = e { a.expr.as_ref() } else { e };
        matches!(e, Expr::WindowFunction(w) if !w.params.partition_by.is_empty())
    };
    let windows = plan
        .exists(|p| {
            Ok(matches!(p, LogicalPlan::Window(w) if !w.schema.has_column_with_unqualified_name(transforms::dedupe::ROW_NUMBER) && w.window_expr.iter().any(partitioned)))
        })
        .unwrap_or(false);
    let shared = plan.exists(|p| Ok(matches!(p, LogicalPlan::Extension(e) if e.node.as_any().is::<crate::shared::Shared>()))).unwrap_or(true);
    if windows && !shared {
        let n = state.config().target_partitions();
        state.config_mut().options_mut().execution.target_partitions = n * session::WINDOW_FAN_OUT;
    }
}

/// Size estimates of this run's data and the join strategies they lead to.
/// `memory_limit` is the run's (the `--memory-limit` flag's, else the spec's).
pub fn choices(pipeline: &Pipeline, values: &Values, memory_limit: Option<u64>) -> crate::strategy::Choices {
    let estimates = crate::stats::estimate(pipeline, values, std::path::Path::new(""));
    crate::strategy::choose(pipeline, &estimates, memory_limit)
}

/// The memory limit of a session's pool, if it has one.
fn session_memory_limit(ctx: &SessionContext) -> Option<u64> {
    match ctx.runtime_env().memory_pool.memory_limit() {
        datafusion::execution::memory_pool::MemoryLimit::Finite(n) => Some(n as u64),
        _ => None,
    }
}

/// [`node_plans`], with some sources read from other paths (source name → path).
pub async fn node_plans_reading(
    pipeline: &Pipeline,
    ctx: &SessionContext,
    values: &Values,
    read_from: &HashMap<String, String>,
) -> Result<HashMap<String, LogicalPlan>> {
    crate::storage::configure_pipeline(pipeline, values)?;
    planned(pipeline, ctx, values, read_from, None, &Default::default(), None).await
}

/// How many plans a run executes read each node: the nodes and sinks that name
/// it as an input, and the `expect` summaries, counting only nodes whose
/// results some sink or summary uses.
fn readers<'a>(pipeline: &'a Pipeline, skipped: &std::collections::HashSet<String>) -> HashMap<&'a str, usize> {
    use crate::plan::ExpectOutput;
    let by_name: HashMap<&str, &Op> = pipeline.nodes.iter().map(|n| (n.name.as_str(), &n.op)).collect();
    // Nodes some executed plan contains: ancestors of sinks and of expect summaries.
    let mut live: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let sinks = || pipeline.sinks.iter().filter(|s| !skipped.contains(&s.name));
    let mut stack: Vec<&str> = sinks().map(|s| s.input.as_str()).collect();
    for n in &pipeline.nodes {
        if let Op::Expect { output: ExpectOutput::Passed, .. } = &n.op {
            stack.extend(n.op.inputs());
        }
    }
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(by_name.get(n).map(|op| op.inputs()).unwrap_or_default());
        }
    }
    let mut out: HashMap<&str, usize> = HashMap::new();
    for n in &pipeline.nodes {
        if live.contains(n.name.as_str()) {
            for i in n.op.inputs() {
                *out.entry(i).or_default() += 1;
            }
        }
        if let Op::Expect { output: ExpectOutput::Passed, .. } = &n.op {
            for i in n.op.inputs() {
                *out.entry(i).or_default() += 1;
            }
        }
    }
    for s in sinks() {
        *out.entry(s.input.as_str()).or_default() += 1;
    }
    out
}

/// Plans every node; with `shared`, each node read by several plans is computed
/// once for all of them ([`crate::shared`]), and the ids are pushed there.
pub(crate) async fn planned(
    pipeline: &Pipeline,
    ctx: &SessionContext,
    values: &Values,
    read_from: &HashMap<String, String>,
    mut shared: Option<&mut Vec<u64>>,
    skipped: &std::collections::HashSet<String>,
    checkpoint_dir: Option<&str>,
) -> Result<HashMap<String, LogicalPlan>> {
    let choices = choices(pipeline, values, session_memory_limit(ctx));
    let readers = readers(pipeline, skipped);
    let marking = crate::node_metrics::registry(ctx).is_some_and(|r| r.nodes);
    // Progress counts the rows each source has produced (its estimate of what remains);
    // --metrics reports the join strategies chosen here.
    let registry = crate::node_metrics::registry(ctx);
    if let Some(r) = &registry {
        r.set_join_strategies(&choices.notes);
    }
    let mut plans: HashMap<String, LogicalPlan> = HashMap::new();
    for node in &pipeline.nodes {
        // `auto` joins get the strategy chosen from the data this run reads.
        let chosen;
        let op = match (&node.op, choices.strategies.get(&node.name)) {
            (Op::Join { left, right, how, on, strategy: crate::plan::JoinStrategy::Auto, salt }, Some(s)) => {
                chosen = Op::Join { left: left.clone(), right: right.clone(), how: *how, on: on.clone(), strategy: *s, salt: salt.clone() };
                &chosen
            }
            (op, _) => op,
        };
        // Salted joins: default buckets from the session, hot keys counted if asked.
        let salted;
        let op = match op {
            Op::Join { left, salt: Some(salt), strategy: crate::plan::JoinStrategy::Salted, on, .. } => {
                let mut salt = salt.clone();
                salt.buckets = Some(salt.buckets.unwrap_or(2 * ctx.state().config().target_partitions()));
                if salt.detect {
                    let left_plan = plans.get(left).cloned().ok_or_else(|| Error::in_node(&node.name, "left input not planned"))?;
                    // The count reads the side on its own, not as one of the shared node's readers.
                    let left_plan = crate::shared::unwrap(left_plan)?;
                    let found = detect_hot_keys(ctx, left_plan, on, salt.threshold).await.map_err(|e| Error::in_node(&node.name, e))?;
                    for (key, rows, total) in &found {
                        eprintln!("join `{}`: hot key {key} holds {rows} of {total} rows ({:.1}%): salted", node.name, *rows as f64 * 100.0 / (*total).max(1) as f64);
                    }
                    for (key, _, _) in found {
                        if !salt.hot_keys.contains(&key) {
                            salt.hot_keys.push(key);
                        }
                    }
                }
                let mut op = op.clone();
                if let Op::Join { salt: s, .. } = &mut op {
                    *s = Some(salt);
                }
                salted = op;
                &salted
            }
            op => op,
        };
        // `repartition` with `by` alone: the session's target_partitions.
        let repartition;
        let op = match op {
            Op::Repartition { input, partitions: 0, by } => {
                repartition = Op::Repartition { input: input.clone(), partitions: ctx.state().config().target_partitions(), by: by.clone() };
                &repartition
            }
            op => op,
        };
        // A model's path may name parameters; the model is loaded by the first batch.
        let predict;
        let op = match op {
            Op::Predict { model, .. } if model.path.contains("${") => {
                let mut op = op.clone();
                if let Op::Predict { model, .. } = &mut op {
                    model.path = interpolate(&model.path, values, env).map_err(|e| Error::in_node(&node.name, e))?;
                }
                predict = op;
                &predict
            }
            op => op,
        };
        let plan = match op {
            Op::Source(source) => sources::scan(ctx, &node.name, source, values, read_from.get(&node.name).map(String::as_str))
                .await
                .map_err(|e| Error::in_node(&node.name, e))?,
            op => {
                let inputs = op
                    .inputs()
                    .iter()
                    .map(|i| plans.get(*i).cloned().ok_or_else(|| Error::in_node(&node.name, format!("input `{i}` is not planned yet"))))
                    .collect::<Result<Vec<_>>>()?;
                transforms::build(&node.name, op, &inputs)?
            }
        };
        // `checkpoint = true`: read back the stored result, or compute and store it now.
        let plan = match checkpoint_dir {
            Some(dir) if pipeline.runtime.checkpoints.contains(&node.name) => {
                let bound = plan.with_param_values(values.to_param_values())?;
                crate::checkpoint::apply(ctx, pipeline, &node.name, bound, values, &interpolate(dir, values, env)?).await?
            }
            _ => plan,
        };
        // Per-node metrics: the node's plan inside a transparent marker (after the
        // checkpoint, whose fingerprint is the plan's text: a checkpointed node counts
        // the rows read back).
        let plan = if marking || (matches!(node.op, Op::Source(_)) && registry.as_ref().is_some_and(|r| r.marks_source(&node.name))) { crate::node_metrics::mark(&node.name, plan) } else { plan };
        let plan = match (&mut shared, readers.get(node.name.as_str())) {
            (Some(ids), Some(&n)) if n > 1 => {
                let (plan, id) = crate::shared::share(plan, &node.name, n);
                ids.push(id);
                plan
            }
            _ => plan,
        };
        plans.insert(node.name.clone(), plan);
    }
    for plan in plans.values_mut() {
        *plan = plan.clone().with_param_values(values.to_param_values())?;
    }
    Ok(plans)
}

/// Runs the pipeline: every sink is staged, then all are committed together.
/// If any sink fails, none is committed.
pub async fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<Report> {
    if let Some(streaming) = &pipeline.streaming {
        return crate::streaming::run(pipeline, opts, streaming).await;
    }
    let started = Instant::now();
    tracing::info!(pipeline = %pipeline.name, cluster = opts.cluster.is_some(), "run started");
    let values = params::resolve(&pipeline.params, &opts.params, env)?;
    crate::storage::configure_pipeline(pipeline, &values)?;
    let session_opts = opts.session.clone().over(&pipeline.runtime);
    let ctx = match &opts.cluster {
        None => session::context(&session_opts)?,
        Some(cluster) => crate::cluster::context(pipeline, cluster, &session_opts).await?,
    };
    let estimated = if opts.progress { crate::progress::estimable_sources(pipeline, &values, env) } else { None };
    // On a cluster, node markers count on the executors and the scheduler reports them
    // (`cluster::status`); progress comes from the scheduler alone.
    let remote = matches!(opts.cluster, Some(crate::cluster::Cluster::Remote(_)));
    if (opts.node_metrics || opts.progress) && opts.cluster.is_none() || opts.node_metrics && remote {
        let state = ctx.state_ref();
        let mut state = state.write();
        let config = std::mem::take(state.config_mut());
        *state.config_mut() = crate::node_metrics::enable(config, opts.node_metrics, estimated.is_some() && !remote);
    }
    // Sources on object stores get the checks `prepare` gives local files.
    for node in &pipeline.nodes {
        if let Op::Source(source) = &node.op {
            if let crate::plan::SourceFormat::Postgres(pg) = &source.format {
                crate::postgres::read::check(pg, &source.schema, &values).await.map_err(|e| Error::in_node(&node.name, e))?;
                continue;
            }
            let path = interpolate(&source.path, &values, env)?;
            if crate::storage::is_remote(&path) && !matches!(source.format, crate::plan::SourceFormat::Inline(_)) {
                sources::remote::check(source, &path).await.map_err(|e| Error::in_node(&node.name, e))?;
            }
        }
    }
    let prepared = prepare(pipeline, &values, session_opts.spill_dir.as_deref())?;
    let mut shared_ids = Vec::new();
    // `KILN_SHARED_NODES=off` makes every reader compute shared nodes itself (for comparison).
    let sharing = opts.cluster.is_none() && !opts.skew_report && std::env::var("KILN_SHARED_NODES").map_or(true, |v| v != "off");
    let share = if sharing { Some(&mut shared_ids) } else { None };
    // Every target is held for the whole run (a second run writing it fails at once);
    // then leftovers of a killed run are cleaned up, an interrupted overwrite restored,
    // and only then is `error_if_exists`/`ignore` decided, on the restored target.
    let mut _locks = Vec::new();
    let mut targets = HashMap::new();
    for sink in pipeline.sinks.iter().filter(|s| s.format != SinkFormat::Console) {
        let mut target = sinks::Target::for_sink(sink, |text| interpolate(text, &values, env))?;
        if let sinks::Target::Kafka(k) = &mut target {
            k.tag = format!("{}/run-{}", pipeline.name, crate::logging::run_id());
        }
        if let sinks::Target::Delta { cluster, .. } = &mut target {
            *cluster = opts.cluster.is_some();
        }
        if let sinks::Target::Local(path) = &target {
            _locks.push(sinks::lock(&sink.name, path)?);
        }
        targets.insert(sink.name.clone(), target);
    }
    // A run killed after its commit point is completed first (see `sinks::journal`).
    let local: Vec<PathBuf> = targets.values().filter_map(|t| if let sinks::Target::Local(p) = t { Some(p.clone()) } else { None }).collect();
    let journal = sinks::journal::path(&local);
    if let Some(j) = &journal {
        sinks::journal::recover(j)?;
    }
    let mut skipped = std::collections::HashSet::new();
    for sink in pipeline.sinks.iter().filter(|s| s.format != SinkFormat::Console) {
        let target = &targets[&sink.name];
        target.clean_leftovers().await?;
        // Sinks that will not run (`ignore` on an existing target) are no readers.
        if sinks::precheck(sink, target).await? == sinks::Plan::Skip {
            skipped.insert(sink.name.clone());
        }
    }
    // Checkpoints are written and read by this process: on a cluster, nodes are computed.
    let checkpoints = if opts.cluster.is_none() { pipeline.runtime.checkpoint_dir.as_deref() } else { None };
    let plans = planned(pipeline, &ctx, &values, &prepared.read_from, share, &skipped, checkpoints).await;
    let outcome = match plans {
        Ok(plans) => run_planned(pipeline, opts, &ctx, &values, plans, &prepared, &targets, started, journal.as_deref()).await,
        Err(e) => Err(e),
    };
    crate::shared::release(&shared_ids);
    outcome
}

/// [`run`] once every node is planned.
async fn run_planned(
    pipeline: &Pipeline,
    opts: &RunOptions,
    ctx: &SessionContext,
    values: &Values,
    mut plans: HashMap<String, LogicalPlan>,
    prepared: &Prepared,
    targets: &HashMap<String, sinks::Target>,
    started: Instant,
    journal: Option<&std::path::Path>,
) -> Result<Report> {
    let (ctx, values) = (ctx.clone(), values.clone());
    if opts.cluster.is_some() {
        for plan in plans.values_mut() {
            *plan = crate::cluster::without_hints(plan.clone())?;
        }
    }

    if opts.skew_report {
        skew_report(pipeline, &ctx, &plans).await?;
    }
    // Under a memory limit, say what cannot spill before anything runs.
    if let (None, Some(limit)) = (&opts.cluster, session_memory_limit(&ctx)) {
        for sink in &pipeline.sinks {
            let physical = ctx.state().create_physical_plan(&plans[&sink.input]).await.map_err(|e| Error::in_node(&sink.input, e))?;
            let held = crate::unspillable::holders(&physical);
            if !held.is_empty() {
                eprintln!(
                    "note: memory limit {} MB: sink `{}` runs {}, which cannot spill; past the limit it fails with \"Resources exhausted\"",
                    limit / (1024 * 1024),
                    sink.name,
                    held.join(" and ")
                );
            }
        }
    }
    // Decide every sink's fate before executing anything.
    let mut work = Vec::new();
    let mut reports = Vec::new();
    for sink in &pipeline.sinks {
        let mut path = interpolate(&sink.path, &values, env)?;
        if sink.format == SinkFormat::Postgres {
            // Never the url: it may hold a password.
            path = crate::postgres::write::target(sink, &path);
        }
        let target = targets.get(&sink.name).cloned().unwrap_or_else(|| sinks::Target::Local(PathBuf::new()));
        if let sinks::Target::Kafka(k) = &target {
            path = format!("{}/{}", k.brokers, k.topic);
        }
        if sinks::precheck(sink, &target).await? == sinks::Plan::Skip {
            reports.push(SinkReport { name: sink.name.clone(), path, rows: None });
            continue;
        }
        work.push((sink, target, path));
    }

    // Metrics count the sinks' and summaries' work, not planning-time passes.
    let registry = crate::node_metrics::registry(&ctx);
    if let Some(r) = &registry {
        r.clear();
    }
    // On a cluster, each sink's job is named `kiln/PIPELINE/RUN/SINK` (the quality
    // checks': `…/quality`), which is how the client finds them in the scheduler's status.
    let status = match &opts.cluster {
        Some(crate::cluster::Cluster::Remote(addr)) if opts.progress || opts.node_metrics => match crate::cluster::status::Client::connect(addr).await {
            Ok(client) => Some(client),
            Err(e) => {
                eprintln!("warning: no progress or metrics from the scheduler: {}", crate::redact::text(&e.to_string()));
                None
            }
        },
        _ => None,
    };
    let prefix = crate::cluster::status::run_prefix(&pipeline.name);
    let named = |part: &str| {
        let mut state = ctx.state();
        if opts.cluster.is_some() {
            let _ = state.config_mut().options_mut().set("ballista.job.name", &crate::cluster::status::job_name(&pipeline.name, part));
        }
        state
    };
    let ticker = match (&registry, &status) {
        (_, Some(client)) if opts.progress => Some(crate::progress::Ticker::cluster(pipeline.name.clone(), client.clone(), prefix.clone(), started)),
        (Some(r), _) if opts.progress && opts.cluster.is_none() => Some(crate::progress::Ticker::start(pipeline.name.clone(), r.clone(), started, crate::progress::estimable_sources(pipeline, &values, env))),
        _ => None,
    };
    let quality_ctx = if opts.cluster.is_some() { SessionContext::new_with_state(named("quality")) } else { ctx.clone() };
    // Sinks run concurrently: a small sink's work fills the gaps of a big one's
    // (its single-threaded phases: the end of a sort, the last file's write).
    // Data-quality summaries run with them, reading shared nodes in step with the
    // sinks; a tripped `fail` rule discards every staged sink, so nothing is written.
    let (quality, results) = futures::future::join(
        check_quality(pipeline, &quality_ctx, &plans),
        futures::future::join_all(work.iter().map(|(sink, target, _)| {
            let plan = plans[&sink.input].clone();
            let plan = if registry.is_some() { crate::node_metrics::mark_top(&sink.input, &sink.name, plan) } else { plan };
            let mut state = named(&sink.name);
            if opts.cluster.is_none() {
                fan_out_windows(&mut state, &plan);
            }
            sinks::stage(DataFrame::new(state, plan), sink, target, opts.cluster.is_some())
        })),
    )
    .await;
    if let Some(t) = ticker {
        t.finish().await;
    }
    let mut staged: Vec<Staged> = Vec::new();
    let mut failed = None;
    for r in results {
        match r {
            Ok(s) => staged.push(s),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let quality = match quality {
        Ok(q) => q,
        Err(e) => {
            abort_all(staged).await;
            return Err(e);
        }
    };
    if let Some(e) = failed {
        abort_all(staged).await;
        return Err(locate_bad_row(pipeline, &values, e));
    }
    // Quarantined rows are committed with the sinks: all or nothing.
    for (source, target, bad) in &prepared.quarantines {
        match sinks::stage_with(target, &format!("{source}.quarantine"), bad.len() as u64, |path| sources::csv_errors::write_quarantine(path, bad)) {
            Ok(s) => staged.push(s),
            Err(e) => {
                abort_all(staged).await;
                return Err(e);
            }
        }
    }
    let rows: HashMap<String, u64> = staged.iter().map(|s| (s.sink.clone(), s.rows)).collect();
    commit_staged(staged, journal).await?;
    for (source, target, bad) in &prepared.quarantines {
        eprintln!("source `{source}`: {} bad row(s) quarantined -> {}", bad.len(), crate::redact::text(&target.display().to_string()));
    }
    for (source, skipped) in &prepared.skipped {
        if *skipped > 0 {
            eprintln!("source `{source}`: {skipped} bad row(s) skipped");
        }
    }
    for (sink, _, path) in work {
        reports.push(SinkReport { name: sink.name.clone(), path, rows: rows.get(&sink.name).copied() });
    }
    let (mut nodes, mut plans, mut cluster_jobs) = Default::default();
    if let Some(r) = registry.as_ref().filter(|r| r.nodes) {
        if opts.cluster.is_none() {
            nodes = crate::node_metrics::collect(r);
            plans = crate::node_metrics::plans(r);
            for (node, m) in nodes.iter_mut() {
                m.join_strategy = r.join_strategy(node);
            }
        }
    }
    // A cluster's figures: the scheduler's (Ballista's planner chose its joins).
    if let Some(client) = status.as_ref().filter(|_| opts.node_metrics) {
        match client.jobs(&prefix).await {
            Ok(jobs) => {
                nodes = crate::cluster::status::nodes(&jobs);
                plans = jobs.iter().map(|j| (j.job_name.strip_prefix(&prefix).unwrap_or(&j.job_name).to_string(), crate::cluster::status::plan_text(j))).collect();
                cluster_jobs = jobs;
            }
            Err(e) => eprintln!("warning: no metrics from the scheduler: {}", crate::redact::text(&e.to_string())),
        }
    }
    crate::node_metrics::add_rows_in(pipeline, &mut nodes);
    let params = values.0.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    for r in &reports {
        tracing::info!(sink = %r.name, rows = r.rows, "sink committed");
    }
    tracing::info!(pipeline = %pipeline.name, seconds = started.elapsed().as_secs_f64(), "run finished");
    Ok(Report { sinks: reports, quality, seconds: started.elapsed().as_secs_f64(), nodes, plans, params, batches: Vec::new(), cluster_jobs })
}

/// Throws away every staged sink.
pub(crate) async fn abort_all(staged: Vec<Staged>) {
    futures::future::join_all(staged.into_iter().map(Staged::abort)).await;
}

/// Commits a run's staged sinks, every one or none where a failure can be seen
/// coming (README "Writes are atomic"):
/// 1. object-store sinks are prepared — their parts copied into place, which no
///    reader of their manifests sees yet;
/// 2. the sinks whose commit can be refused commit: Delta tables first (a
///    concurrent writer's conflict), then PostgreSQL transactions (deferred
///    constraints), then Kafka topics (a broker refusing records; sent at least once);
/// 3. the object-store manifests are published (one PUT each, the commit points);
/// 4. console sinks print, and local sinks commit together through `journal`.
///
/// A failure before step 3 undoes every prepared object-store sink and discards the
/// local staging, so those targets keep their output; a sink of step 2 that had
/// committed stays committed (a Delta version, a PostgreSQL transaction and sent
/// records cannot be taken back).
async fn commit_staged(staged: Vec<Staged>, journal: Option<&std::path::Path>) -> Result<()> {
    let (remote, local): (Vec<Staged>, Vec<Staged>) = staged.into_iter().partition(Staged::is_remote);
    let (stores, mut refusable): (Vec<Staged>, Vec<Staged>) = remote.into_iter().partition(Staged::is_object_store);
    refusable.sort_by_key(Staged::commit_order);
    let mut moves = Vec::new();
    let mut consoles = Vec::new();
    for s in local {
        match s.into_move() {
            Ok(m) => moves.push(m),
            Err(console) => consoles.push(console),
        }
    }
    let discard_local = |moves: &[(std::path::PathBuf, std::path::PathBuf, crate::plan::WriteMode)]| moves.iter().for_each(|(staging, _, _)| sinks::discard(staging));
    let undo_all = |prepared: Vec<crate::storage::remote::Prepared>| futures::future::join_all(prepared.into_iter().map(crate::storage::remote::Prepared::undo));
    sinks::journal::fault("staged");
    let mut prepared = Vec::new();
    let mut stores = stores.into_iter();
    while let Some(s) = stores.next() {
        match s.prepare_remote().await {
            Ok(p) => prepared.push(p),
            Err(e) => {
                undo_all(prepared).await;
                abort_all(stores.chain(refusable).collect()).await;
                discard_local(&moves);
                return Err(e);
            }
        }
    }
    sinks::journal::fault("prepared");
    let mut refusable = refusable.into_iter();
    while let Some(s) = refusable.next() {
        if let Err(e) = s.commit_remote().await {
            undo_all(prepared).await;
            abort_all(refusable.collect()).await;
            discard_local(&moves);
            return Err(e);
        }
    }
    let mut prepared = prepared.into_iter();
    while let Some(p) = prepared.next() {
        if let Err(e) = p.publish().await {
            undo_all(prepared.collect()).await;
            discard_local(&moves);
            return Err(e);
        }
    }
    for console in consoles {
        console.commit()?;
    }
    if !moves.is_empty() {
        let fallback;
        let journal = match journal {
            Some(j) => j,
            None => {
                fallback = sinks::journal::path(&moves.iter().map(|(_, t, _)| t.clone()).collect::<Vec<_>>()).ok_or_else(|| Error::Usage("a sink path has no file name".into()))?;
                &fallback
            }
        };
        sinks::journal::commit_all(journal, &moves)?;
    }
    Ok(())
}

/// Evaluates every `expect` node's rules (one aggregate pass each), prints the
/// summary, and fails with [`Error::Expectation`] when a `fail` rule tripped.
pub(crate) async fn check_quality(pipeline: &Pipeline, ctx: &SessionContext, plans: &HashMap<String, LogicalPlan>) -> Result<Vec<QualityReport>> {
    use crate::plan::{ExpectOutput, OnFail, RuleKind};
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    let mut reports = Vec::new();
    let mut tripped = Vec::new();
    // Every summary at once: each reads shared nodes in step with the sinks and the others.
    let expects: Vec<&crate::plan::Node> = pipeline.nodes.iter().filter(|n| matches!(n.op, Op::Expect { output: ExpectOutput::Passed, .. })).collect();
    let collected = futures::future::join_all(expects.iter().map(|node| async move {
        let Op::Expect { input, rules, .. } = &node.op else { return Err(Error::in_node(&node.name, "not an expect node")) };
        let inputs = node.op.inputs();
        let others: Vec<LogicalPlan> = inputs[1..].iter().map(|n| plans[*n].clone()).collect();
        let plan = transforms::expect::summary_plan(plans[input].clone(), rules, &others).map_err(|e| Error::in_node(&node.name, e))?;
        DataFrame::new(ctx.state(), plan).collect().await.map_err(|e| Error::in_node(&node.name, e))
    }))
    .await;
    for (node, batches) in expects.iter().zip(collected) {
        let Op::Expect { rules, .. } = &node.op else { continue };
        let batches = batches?;
        let batch = batches.into_iter().find(|b| b.num_rows() > 0).ok_or_else(|| Error::in_node(&node.name, "no summary row"))?;
        let value = |name: &str| -> u64 {
            batch.column_by_name(name).filter(|c| !c.is_null(0)).map_or(0, |c| {
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64)
                    .map_or(0, |a| a.as_primitive::<Int64Type>().value(0).max(0) as u64)
            })
        };
        let rows = value("rows");
        let mut report = QualityReport { node: node.name.clone(), rows, rules: Vec::new() };
        for (i, rule) in rules.iter().enumerate() {
            let failed = match &rule.kind {
                RuleKind::RowCount { min, max } => u64::from(min.is_some_and(|m| rows < m) || max.is_some_and(|m| rows > m)),
                _ => value(&format!("failed_{i}")),
            };
            let on_fail = format!("{:?}", rule.on_fail).to_lowercase();
            let what = match &rule.kind {
                RuleKind::RowCount { min, max } if failed > 0 => format!("{rows} rows, expected {}..{}", min.map_or(String::new(), |m| m.to_string()), max.map_or(String::new(), |m| m.to_string())),
                RuleKind::RowCount { .. } => format!("{rows} rows"),
                _ => format!("{failed} of {rows} rows failed"),
            };
            eprintln!("expect `{}`: rule `{}` ({on_fail}): {what}", node.name, rule.name);
            if rule.on_fail == OnFail::Fail && failed > 0 {
                tripped.push(format!("expect `{}`: rule `{}` (on_fail = \"fail\"): {what}", node.name, rule.name));
            }
            report.rules.push(RuleReport { rule: rule.name.clone(), on_fail, failed });
        }
        reports.push(report);
    }
    if !tripped.is_empty() {
        return Err(Error::Expectation(format!("{}; nothing was written", tripped.join("; "))));
    }
    Ok(reports)
}

/// What must happen before planning: CSV sources that tolerate bad rows are
/// cleaned into a work directory (removed when this is dropped).
pub struct Prepared {
    /// Source name → the cleaned path to read instead.
    pub(crate) read_from: HashMap<String, String>,
    /// (source, quarantine target, bad rows).
    quarantines: Vec<(String, PathBuf, Vec<sources::csv_errors::BadLine>)>,
    /// (source, rows skipped).
    skipped: Vec<(String, usize)>,
    work: Option<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(dir) = &self.work {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn prepare(pipeline: &Pipeline, values: &Values, spill_dir: Option<&str>) -> Result<Prepared> {
    use crate::plan::{OnError, SourceFormat};
    let mut prepared = Prepared { read_from: HashMap::new(), quarantines: Vec::new(), skipped: Vec::new(), work: None };
    for node in &pipeline.nodes {
        let Op::Source(source) = &node.op else { continue };
        if !matches!(source.format, SourceFormat::Inline(_) | SourceFormat::Postgres(_) | SourceFormat::Kafka(_)) {
            let path = interpolate(&source.path, values, env)?;
            sources::must_exist(&path).map_err(|e| Error::in_node(&node.name, e))?;
            sources::no_skipped_files(&path, &source.format).map_err(|e| Error::in_node(&node.name, e))?;
            sources::drift::check(source, &path).map_err(|e| Error::in_node(&node.name, e))?;
        }
        let SourceFormat::Csv(opts) = &source.format else { continue };
        if opts.on_error == OnError::Fail {
            continue;
        }
        if crate::storage::is_remote(&interpolate(&source.path, values, env)?) {
            return Err(Error::in_node(&node.name, "on_error = \"skip\" or \"quarantine\" cleans local files only (an object-store CSV source takes on_error = \"fail\")"));
        }
        let base = match &prepared.work {
            Some(w) => w.clone(),
            None => {
                let root = spill_dir.map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
                sweep_dead_work_dirs(&root);
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let dir = root.join(format!("kiln-clean-{}-{nanos}", std::process::id()));
                prepared.work = Some(dir.clone());
                dir
            }
        };
        let work = base.join(&node.name);
        std::fs::create_dir_all(&work).map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
        let path = interpolate(&source.path, values, env)?;
        let file_schema = sources::files::file_schema(source);
        let (clean, bad) = sources::csv_errors::clean(&path, &file_schema, opts, &work).map_err(|e| Error::in_node(&node.name, e))?;
        prepared.read_from.insert(node.name.clone(), clean.display().to_string());
        match &opts.on_error {
            OnError::Quarantine(target) => {
                let target = PathBuf::from(interpolate(target, values, env)?);
                prepared.quarantines.push((node.name.clone(), target, bad));
            }
            _ => prepared.skipped.push((node.name.clone(), bad.len())),
        }
    }
    Ok(prepared)
}

/// Removes the cleaning work directories (`kiln-clean-PID-…`) of processes that
/// are gone (killed runs leave them; a finished run removes its own).
fn sweep_dead_work_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("kiln-clean-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A CSV row error, pointed at its file and line when a source holds it.
fn locate_bad_row(pipeline: &Pipeline, values: &Values, err: Error) -> Error {
    let text = err.to_string();
    for node in &pipeline.nodes {
        if let Op::Source(source) = &node.op {
            let Ok(path) = interpolate(&source.path, values, env) else { continue };
            let schema = std::sync::Arc::new(sources::files::file_schema(source));
            let found = match &source.format {
                crate::plan::SourceFormat::Csv(opts) => sources::bad_rows::locate(&text, &path, &source.schema, opts),
                crate::plan::SourceFormat::Json => sources::bad_rows::locate_json(&text, &path, &schema),
                _ => None,
            };
            if let Some(bad) = found {
                return Error::BadRow { source_name: node.name.clone(), file: bad.file, line: bad.line, message: bad.message };
            }
        }
    }
    err
}

/// The optimized logical and physical plan of every sink, as text.
pub async fn explain(pipeline: &Pipeline, opts: &RunOptions) -> Result<String> {
    use std::fmt::Write;
    let values = params::resolve(&pipeline.params, &opts.params, env)?;
    let ctx = session::context(&opts.session.clone().over(&pipeline.runtime))?;
    let plans = node_plans(pipeline, &ctx, &values).await?;
    let choices = choices(pipeline, &values, session_memory_limit(&ctx));
    let mut out = String::new();
    let _ = writeln!(out, "== nodes ==");
    for node in &pipeline.nodes {
        let kind = match &node.op {
            Op::Source(s) => {
                let path = match &s.format {
                    crate::plan::SourceFormat::Postgres(pg) => {
                        let url = interpolate(&pg.url, &values, env).unwrap_or_default();
                        format!("{} on {}", pg.table.as_deref().unwrap_or("(query)"), crate::postgres::describe(&url))
                    }
                    _ => interpolate(&s.path, &values, env).unwrap_or_else(|_| s.path.clone()),
                };
                format!("{} source {path}", crate::plan::format_name(&s.format))
            }
            Op::Join { how, strategy, .. } => {
                let strategy = match strategy {
                    crate::plan::JoinStrategy::Auto => "auto".to_string(),
                    crate::plan::JoinStrategy::Shuffle => "shuffle".to_string(),
                    crate::plan::JoinStrategy::SortMerge => "sort-merge".to_string(),
                    crate::plan::JoinStrategy::Salted => "salted".to_string(),
                    crate::plan::JoinStrategy::Broadcast { side } => format!("broadcast of the {side:?} side").to_lowercase(),
                };
                format!("join <- {} ({}, strategy {strategy})", node.op.inputs().join(", "), how.name())
            }
            op => format!("{} <- {}", op.kind(), op.inputs().join(", ")),
        };
        let columns: Vec<String> =
            plans[&node.name].schema().fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
        let _ = writeln!(out, "{}: {kind}\n    ({})", node.name, columns.join(", "));
        for (_, note) in choices.notes.iter().filter(|(n, _)| *n == node.name) {
            let _ = writeln!(out, "    {note}");
        }
    }
    for sink in &pipeline.sinks {
        let mut state = ctx.state();
        fan_out_windows(&mut state, &plans[&sink.input]);
        let df = DataFrame::new(state, plans[&sink.input].clone());
        let logical = df.clone().into_optimized_plan()?;
        let physical = df.create_physical_plan().await?;
        let physical = if opts.analyze {
            let started = Instant::now();
            let mut stream = datafusion::physical_plan::execute_stream(physical.clone(), ctx.task_ctx())?;
            let mut rows = 0;
            while let Some(batch) = futures::StreamExt::next(&mut stream).await {
                rows += batch?.num_rows();
            }
            let metrics = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(physical.as_ref()).indent(true);
            format!("(analyzed: {rows} rows in {:.3}s, nothing written)\n{metrics}", started.elapsed().as_secs_f64())
        } else {
            datafusion::physical_plan::displayable(physical.as_ref()).indent(true).to_string()
        };
        let mut path = interpolate(&sink.path, &values, env).unwrap_or_else(|_| sink.path.clone());
        if sink.format == SinkFormat::Postgres {
            path = crate::postgres::write::target(sink, &path);
        }
        if sink.format == SinkFormat::Kafka {
            path = format!("{path}/{}", interpolate(&sink.table, &values, env).unwrap_or_else(|_| sink.table.clone()));
        }
        let _ = writeln!(out, "== sink `{}` ({:?} {path}) <- `{}` ==", sink.name, sink.format, sink.input);
        let _ = writeln!(out, "-- logical plan --\n{}", logical.display_indent());
        let _ = writeln!(out, "-- physical plan --\n{physical}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::functions_window::expr_fn::row_number;
    use datafusion::logical_expr::{ExprFunctionExt, LogicalPlanBuilder, col, lit};

    use super::*;

    /// `values (1, 2)` as columns a, b, with a row number over `partition_by`, named `name`.
    fn numbered(partition_by: Vec<datafusion::logical_expr::Expr>, name: &str) -> LogicalPlan {
        let rn = row_number().partition_by(partition_by).order_by(vec![col("b").sort(true, true)]).build().unwrap().alias(name);
        let values = LogicalPlanBuilder::values(vec![vec![lit(1i64), lit(2i64)]]).unwrap().project(vec![col("column1").alias("a"), col("column2").alias("b")]).unwrap();
        values.window(vec![rn]).unwrap().build().unwrap()
    }

    fn partitions_for(opts: &SessionOptions, plan: &LogicalPlan) -> (usize, usize) {
        let ctx = session::context(opts).unwrap();
        let mut state = ctx.state();
        let before = state.config().target_partitions();
        fan_out_windows(&mut state, plan);
        (before, state.config().target_partitions())
    }

    #[test]
    fn only_windows_over_partitions_plan_with_more_partitions_and_only_by_default() {
        let window = numbered(vec![col("a")], "rank");
        let (n, fanned) = partitions_for(&SessionOptions::default(), &window);
        assert_eq!(fanned, n * session::WINDOW_FAN_OUT);
        // A window over the whole input, and a dedupe's row number: one partition per core.
        for plan in [numbered(vec![], "rank"), numbered(vec![col("a")], transforms::dedupe::ROW_NUMBER)] {
            let (n, kept) = partitions_for(&SessionOptions::default(), &plan);
            assert_eq!(kept, n);
        }
        // A window over a shared node: its other readers plan with one partition per core.
        let (shared, _) = crate::shared::share(numbered(vec![col("a")], "inner"), "x", 2);
        let over_shared = LogicalPlanBuilder::from(shared).window(vec![row_number().partition_by(vec![col("a")]).order_by(vec![col("b").sort(true, true)]).build().unwrap().alias("rank")]).unwrap().build().unwrap();
        let (n, kept) = partitions_for(&SessionOptions::default(), &over_shared);
        assert_eq!(kept, n);
        // A count someone chose, and a memory limit, are kept.
        assert_eq!(partitions_for(&SessionOptions { target_partitions: Some(3), ..Default::default() }, &window), (3, 3));
        let (n, kept) = partitions_for(&SessionOptions { memory_limit: Some(1 << 30), ..Default::default() }, &window);
        assert_eq!(kept, n);
    }
}
