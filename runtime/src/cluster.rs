//! Distributed runs on Apache DataFusion Ballista: every generated binary is
//! also a scheduler, an executor and a client (`NAME scheduler | executor |
//! submit`, `NAME run --standalone`).
//!
//! Ballista's own scheduler and executor libraries do the work; Kiln installs
//! the pipeline's functions in the three places a function must be known
//! (the client plans with it, the scheduler decodes the logical plan, each
//! executor decodes its tasks): Kiln's registered `#[kiln::udf]`s and one
//! `kiln_predict_NODE` per `predict` node. Because the executor is the same
//! binary, it has them all.
//!
//! What differs from a local run: join strategy hints are not shipped —
//! the scheduler chooses (sides under `broadcast_threshold` are broadcast, as
//! `auto` does locally, through [`SmallSideHashJoin`] and Ballista's promotion;
//! other joins are sort-merge joins, which spill); Kiln's physical operators
//! (first-per-key, Delta writes) are, through [`crate::codec::KilnPhysicalCodec`].
//! The executors write each sink's files (into its staging path; a Delta
//! sink's into the table, named by no commit yet) and the client commits them
//! only when every job succeeded, as in a local run; with executors on other
//! machines the paths must be shared storage (an object store or a shared file
//! system).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::plan::{Op, Pipeline};
use crate::session::SessionOptions;
use crate::{Error, Result};

pub mod auth;
pub mod planner;
pub mod prom;
pub mod status;

/// Where a run's plans execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// An in-process Ballista scheduler and executor.
    Standalone,
    /// A running scheduler, `host:port`.
    Remote(String),
}

/// The scalar functions plans of `pipeline` may call beyond DataFusion's.
pub fn functions(pipeline: &Pipeline) -> Vec<Arc<ScalarUDF>> {
    let mut out = crate::functions::kiln_udfs();
    for node in &pipeline.nodes {
        if let Op::Predict { model, features, batch_size, .. } = &node.op {
            out.push(Arc::new(ScalarUDF::new_from_impl(crate::models::predict::Predict::new(&node.name, model.clone(), features, *batch_size))));
        }
    }
    out
}

fn ballista_err(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("ballista: {e}"))
}

/// A client session: Kiln's settings and functions, Ballista's configuration.
fn state(pipeline: &Pipeline, opts: &SessionOptions, cluster: &Cluster) -> Result<SessionState> {
    let mut config: SessionConfig = crate::session::config(opts)
        .upgrade_for_ballista()
        .with_ballista_physical_extension_codec(Arc::new(crate::codec::KilnPhysicalCodec::default()))
        .with_ballista_logical_extension_codec(Arc::new(crate::codec::KilnLogicalCodec::default()));
    // Broadcast (CollectLeft) joins for sides under Kiln's threshold, as a local run's `auto`
    // does: DataFusion's and Ballista's thresholds (Ballista's defaults to 128 MB) both.
    let broadcast = pipeline.runtime.broadcast_threshold.unwrap_or(crate::strategy::DEFAULT_BROADCAST_THRESHOLD);
    config.options_mut().optimizer.hash_join_single_partition_threshold = broadcast as usize;
    config = config.set_u64(ballista_core::config::BALLISTA_BROADCAST_JOIN_THRESHOLD_BYTES, broadcast);
    // Ballista 55's adaptive planner loses track of a stage it resubmits after an
    // executor dies (the job never finishes); the static planner reruns it.
    config = config.set_bool(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, false);
    if let Some(n) = opts.target_partitions.or(opts.threads) {
        config = config.with_ballista_standalone_parallelism(n.max(1));
    }
    // With a cluster token, every connection to a remote scheduler and its
    // executors is TLS with the token's identity (`auth`).
    if let (Cluster::Remote(_), Some(auth)) = (cluster, auth::current()) {
        config = config.with_ballista_override_create_grpc_client_endpoint(auth.endpoint_override());
    }
    // The in-process scheduler of `--standalone` plans with this state: Kiln's physical rules.
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(storage_runtime()?)
        .with_default_features()
        .with_physical_optimizer_rules(physical_rules())
        .with_query_planner(Arc::new(planner::SchedulerPlanner))
        .build();
    register(&mut state, pipeline)?;
    Ok(state)
}

/// A runtime environment that resolves object-store URLs (`crate::storage`).
fn storage_runtime() -> datafusion::error::Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    Ok(Arc::new(datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_object_store_registry(crate::storage::registry()).build()?))
}

/// The `storage_options` of a pipeline in a scheduler or executor, which has no
/// run parameters: `${params.X}` takes its default (a path that needs a value
/// it lacks gets the environment's settings alone).
fn configure_storage(pipeline: &Pipeline) {
    let env = |v: &str| std::env::var(v).ok();
    if let Ok(values) = crate::params::resolve(&pipeline.params, &[], env) {
        if let Err(e) = crate::storage::configure_pipeline(pipeline, &values) {
            eprintln!("warning: storage_options: {e}");
        }
    }
}

fn register(state: &mut SessionState, pipeline: &Pipeline) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    for f in functions(pipeline) {
        state.register_udf(f)?;
    }
    for w in crate::functions::window_udfs() {
        state.register_udwf(w)?;
    }
    Ok(())
}

/// A session whose queries run on `cluster`.
pub async fn context(pipeline: &Pipeline, cluster: &Cluster, opts: &SessionOptions) -> Result<SessionContext> {
    let state = state(pipeline, opts, cluster)?;
    let ctx = match cluster {
        Cluster::Standalone => SessionContext::standalone_with_state(state).await?,
        Cluster::Remote(addr) => {
            auth::probe_scheduler(addr, auth::current().as_deref()).await?;
            SessionContext::remote_with_state(&format!("df://{addr}"), state).await?
        }
    };
    // Making the state a Ballista client resets its function list.
    for f in functions(pipeline) {
        ctx.register_udf((*f).clone());
    }
    for w in crate::functions::window_udfs() {
        ctx.register_udwf((*w).clone());
    }
    Ok(ctx)
}

/// The physical rules of a cluster's planning (the scheduler's, and the client's
/// in `--standalone`): a local session's without eager aggregation, and [`SmallSideHashJoin`].
fn physical_rules() -> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = crate::join_strategy::physical_rules();
    // Ballista's plan codec has no PartialReduce aggregate mode.
    rules.retain(|r| r.name() != "kiln_eager_aggregation");
    let at = rules.iter().position(|r| r.name() == "join_selection").map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(SmallSideHashJoin));
    rules
}

/// Ballista plans every join as a sort-merge join (DataFusion's hash join does
/// not spill) and broadcasts only hash joins. This turns a sort-merge join with
/// a side under the broadcast threshold (statistics' bytes, else estimated from rows) into a
/// partitioned hash join, which Ballista's planner then broadcasts, with its own
/// checks of the join type: Spark's plan, a small side broadcast and the rest
/// sort-merged. Runs right after DataFusion's `JoinSelection`, before the sorts
/// a sort-merge join needs are added.
#[derive(Debug)]
pub struct SmallSideHashJoin;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for SmallSideHashJoin {
    fn optimize(&self, plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>, config: &datafusion::config::ConfigOptions) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
        use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
        let ballista = config.extensions.get::<ballista_core::config::BallistaConfig>().cloned().unwrap_or_default();
        let threshold = ballista.broadcast_join_threshold_bytes();
        if threshold == 0 {
            return Ok(plan);
        }
        // As Ballista's planner measures a side: its bytes, else its rows times a
        // width per column (32 bytes for variable-length ones).
        let small = |side: &Arc<dyn ExecutionPlan>| {
            let Ok(stats) = StatisticsContext::new().compute(side.as_ref(), &StatisticsArgs::new()) else { return false };
            match (stats.total_byte_size.get_value(), stats.num_rows.get_value()) {
                (Some(&b), _) if b > 0 => b < threshold,
                (_, Some(&r)) if r > 0 => {
                    let width: usize = side.schema().fields().iter().map(|f| f.data_type().primitive_width().unwrap_or(32)).sum();
                    r.saturating_mul(width.max(8)) < threshold
                }
                _ => false,
            }
        };
        plan.transform_up(|p| {
            let Some(smj) = p.downcast_ref::<SortMergeJoinExec>() else { return Ok(Transformed::no(p)) };
            if !small(smj.left()) && !small(smj.right()) {
                return Ok(Transformed::no(p));
            }
            let join = HashJoinExec::try_new(
                Arc::clone(smj.left()),
                Arc::clone(smj.right()),
                smj.on().to_vec(),
                smj.filter().clone(),
                &smj.join_type(),
                None,
                PartitionMode::Partitioned,
                smj.null_equality(),
                false,
            )?;
            Ok(Transformed::yes(Arc::new(join) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kiln_small_side_hash_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` without Kiln's join hints, and with splits as plain filters (logical
/// nodes only a local session plans).
pub fn without_hints(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = crate::shared::unwrap(crate::split::to_filters(plan)?)?;
    Ok(plan
        .transform_up(|node| match &node {
            LogicalPlan::Extension(e) if e.node.as_any().downcast_ref::<crate::join_strategy::JoinHint>().is_some() => {
                Ok(Transformed::yes(e.node.inputs()[0].clone()))
            }
            _ => Ok(Transformed::no(node)),
        })?
        .data)
}

/// Seconds without a heartbeat after which the scheduler drops an executor.
pub const EXECUTOR_TIMEOUT_S: u64 = 15;

/// Runs a Ballista scheduler on `bind` until the process is stopped.
/// `external_host` is the name executors call it back at (default: the bind address).
/// With `metrics_bind`, it serves Prometheus metrics there ([`prom::SchedulerMetrics`]).
pub async fn scheduler(pipeline: &Pipeline, bind: SocketAddr, external_host: Option<String>, metrics_bind: Option<SocketAddr>) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let auth = auth::current();
    auth::check_bind("--bind", bind, auth.as_deref())?;
    let external_host = advertised(bind, external_host)?;
    // With a token or certificates, Ballista listens privately and the gate takes `bind`.
    let listen = if auth.is_some() { auth::private_address(bind) } else { bind };
    configure_storage(pipeline);
    let funcs = functions(pipeline);
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder = Arc::new(move |config: SessionConfig| {
        use datafusion::execution::FunctionRegistry;
        let state = ballista_core::utils::default_session_builder(config)?;
        // Kiln's physical operators (first-per-key), shipped by KilnPhysicalCodec;
        // object-store URLs resolved as the client and executors resolve them.
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(storage_runtime()?)
            .with_physical_optimizer_rules(physical_rules())
            // Delta sinks written by the executors (`sinks::delta_write`).
            .with_query_planner(Arc::new(planner::SchedulerPlanner))
            .build();
        for f in &funcs {
            state.register_udf(f.clone())?;
        }
        for w in crate::functions::window_udfs() {
            state.register_udwf(w)?;
        }
        Ok(state)
    });
    let config = SchedulerConfig {
        bind_host: listen.ip().to_string(),
        external_host,
        bind_port: bind.port(),
        override_session_builder: Some(session_builder),
        override_create_grpc_client_endpoint: auth.as_ref().map(|a| a.endpoint_override()),
        override_physical_codec: Some(Arc::new(crate::codec::KilnPhysicalCodec::default())),
        // ORC and PostgreSQL tables in the client's logical plan (KilnLogicalCodec).
        override_logical_codec: Some(Arc::new(crate::codec::KilnLogicalCodec::default())),
        // An executor that stops heart-beating for 15 s is lost and its tasks run
        // elsewhere (Ballista's defaults wait 3 minutes; a killed executor hung jobs).
        executor_timeout_seconds: EXECUTOR_TIMEOUT_S,
        expire_dead_executor_interval_seconds: 5,
        ..Default::default()
    };
    config.validate().map_err(ballista_err)?;
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ballista_err)?;
    let jobs = cluster.job_state();
    let config = Arc::new(config);
    // Ballista's `create_scheduler`, with Kiln's metrics hooks.
    let metrics = prom::SchedulerMetrics::new(&pipeline.name);
    let codec = ballista_core::serde::BallistaCodec::new(
        Arc::new(crate::codec::KilnLogicalCodec::default()),
        Arc::new(crate::codec::KilnPhysicalCodec::default()),
    );
    let mut server: status::Server = ballista_scheduler::scheduler_server::SchedulerServer::new(config.scheduler_endpoint(), cluster, codec, config, metrics.clone());
    server.init().await.map_err(ballista_err)?;
    if let Some(addr) = metrics_bind {
        let tasks = server.state.task_manager.clone();
        metrics.count_jobs_with(Arc::new(move || (tasks.running_job_number(), tasks.pending_job_number())));
        let (executors, counted) = (server.state.executor_manager.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(state) = executors.get_executors_state().await {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    let alive: Vec<_> = state.iter().filter(|(_, beat, _)| beat.is_some_and(|b| now.saturating_sub(b).as_secs() <= EXECUTOR_TIMEOUT_S)).collect();
                    counted.set_executors(alive.len() as u64, alive.iter().map(|(m, _, _)| m.specification.vcores as u64).sum());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        let served = metrics.clone();
        prom::serve_text(addr, Arc::new(move || served.render())).await?;
    }
    // Listening before the gate opens: a node the gate admits always finds the server.
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| Error::Usage(format!("cannot listen on {listen}: {e}")))?;
    if let Some(auth) = &auth {
        auth::open_gate(bind, listen, auth).await?;
    }
    let secured = auth.as_ref().map(|a| format!(" (TLS, {} required)", a.proof())).unwrap_or_default();
    eprintln!("{}: scheduler listening on {bind}{secured}", pipeline.name);
    let app = status::router(server, jobs).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await.map_err(|e| Error::Cluster(format!("the scheduler stopped: {e}")))
}

/// The host other processes reach a role at: `--external-host`, else the bind
/// address, which must then be one they can dial (not a wildcard).
fn advertised(bind: SocketAddr, external_host: Option<String>) -> Result<String> {
    match external_host {
        Some(host) => Ok(host),
        None if bind.ip().is_unspecified() => Err(Error::Usage(format!(
            "--bind {bind}: the other processes call this one back at its address, and {} is not one; pass --external-host HOST (a name or IP they reach this machine at)",
            bind.ip()
        ))),
        None => Ok(bind.ip().to_string()),
    }
}

/// An executor's settings (`NAME executor`).
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Where the executor serves task results (Arrow Flight).
    pub bind: SocketAddr,
    /// Its gRPC port (default: the flight port + 1).
    pub grpc_port: Option<u16>,
    /// The host others reach it at (default: the bind address).
    pub external_host: Option<String>,
    /// Concurrent tasks (default: the cores).
    pub slots: Option<usize>,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_bind: Option<SocketAddr>,
    pub memory_limit: Option<u64>,
    pub work_dir: Option<String>,
}

/// Runs a Ballista executor until the process is stopped.
pub async fn executor(pipeline: &Pipeline, opts: &ExecutorOptions) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let (host, port) = opts
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| Error::Usage(format!("--scheduler: expected HOST:PORT, got `{}`", opts.scheduler)))?;
    let mut registry = ballista_core::registry::BallistaFunctionRegistry::default();
    for f in functions(pipeline) {
        registry.scalar_functions.insert(f.name().to_string(), f);
    }
    for w in crate::functions::window_udfs() {
        registry.window_functions.insert(w.name().to_string(), w);
    }
    let slots = opts.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let auth = auth::current();
    auth::check_bind("--bind", opts.bind, auth.as_deref())?;
    let external_host = advertised(opts.bind, opts.external_host.clone())?;
    let grpc_port = match opts.grpc_port {
        Some(p) => p,
        None => opts.bind.port().checked_add(1).ok_or_else(|| Error::Usage("--bind: no port after 65535 for gRPC; pass --grpc-port".into()))?,
    };
    // With a token or certificates, Ballista's two servers listen privately and gates take the public ports.
    let listen = if auth.is_some() { auth::private_address(opts.bind) } else { opts.bind };
    configure_storage(pipeline);
    // Tasks resolve object-store URLs through Kiln's registry (one per executor, so
    // its stores and connections are shared by the tasks); spill files go to the work dir.
    let work_dir = match &opts.work_dir {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir(),
    };
    let stores = crate::storage::registry();
    let runtime_producer: ballista_core::RuntimeProducer = Arc::new(move |_| {
        Ok(Arc::new(
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_temp_file_path(work_dir.clone())
                .with_object_store_registry(stores.clone())
                .build()?,
        ))
    });
    let mut config = ExecutorProcessConfig {
        bind_host: listen.ip().to_string(),
        external_host: Some(external_host),
        port: opts.bind.port(),
        grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        vcores: slots,
        work_dir: opts.work_dir.clone(),
        override_function_registry: Some(Arc::new(registry)),
        override_physical_codec: Some(Arc::new(crate::codec::KilnPhysicalCodec::default())),
        override_logical_codec: Some(Arc::new(crate::codec::KilnLogicalCodec::default())),
        override_runtime_producer: Some(runtime_producer),
        executor_heartbeat_interval_seconds: 3,
        ..Default::default()
    };
    if let Some(auth) = &auth {
        // To the scheduler, and (through each task's session) to other executors' shuffle files.
        let endpoint = auth.endpoint_override();
        config.override_create_grpc_client_endpoint = Some(endpoint.clone());
        config.override_config_producer = Some(Arc::new(move || SessionConfig::new_with_ballista().with_ballista_override_create_grpc_client_endpoint(endpoint.clone())));
        auth::open_gate(opts.bind, listen, auth).await?;
        auth::open_gate(SocketAddr::new(opts.bind.ip(), grpc_port), SocketAddr::new(listen.ip(), grpc_port), auth).await?;
    }
    if let Some(addr) = opts.metrics_bind {
        let registry = prom::Registry::new(&pipeline.name, slots);
        config.override_execution_engine = Some(Arc::new(prom::Engine::new(registry.clone())));
        prom::serve(addr, registry).await?;
        eprintln!("{}: executor metrics at http://{addr}/metrics", pipeline.name);
    }
    if let Some(limit) = opts.memory_limit {
        config.memory_pool_size = Some(limit);
    }
    eprintln!("{}: executor on {} ({slots} slots), scheduler {}", pipeline.name, opts.bind, opts.scheduler);
    start_executor_process(Arc::new(config)).await.map_err(ballista_err)
}
