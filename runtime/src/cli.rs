//! The command line of every generated binary: `NAME run | explain | test | --version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::redact;
use crate::plan::Pipeline;
use crate::run::{self, RunOptions};
use crate::session::{SessionOptions, parse_size};
use crate::Error;

#[derive(Parser, Debug)]
#[command(disable_version_flag = true)]
struct Cli {
    /// Print the Kiln version and the hash of the spec this binary was built from.
    #[arg(long = "version", short = 'V')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct Settings {
    /// Set a parameter: --param NAME=VALUE (repeatable; beats the param's env variable and default).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Worker threads and target partitions (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Memory limit, e.g. 4GB; operators that can spill do so past it.
    #[arg(long, value_parser = parse_memory)]
    memory_limit: Option<u64>,
    /// Write what the run did as JSON: rows per sink, data-quality summary, seconds, and per
    /// node rows, bytes, time, spill and partition sizes (format in the README, version 1).
    #[arg(long, value_name = "FILE.json")]
    metrics: Option<std::path::PathBuf>,
    /// Write a self-contained HTML page about the run: the DAG, per-node figures, partition
    /// sizes, data quality, the executed plans.
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
    /// No progress line on the terminal.
    #[arg(long)]
    quiet: bool,
    /// Before running, count every join's keys: partition sizes (max/median) and top keys per
    /// side, and a warning when one key holds more than 20% of a side.
    #[arg(long)]
    skew_report: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    settings: Settings,
    /// Run on an in-process Ballista scheduler and executor (as a cluster would).
    #[arg(long)]
    standalone: bool,
    /// A streaming pipeline's trigger instead of the spec's: `available_now` (read what is
    /// there, then exit) or an interval such as `10s` (SPEC §8).
    #[arg(long, value_parser = parse_trigger)]
    trigger: Option<crate::plan::Trigger>,
    /// A streaming pipeline serves its batches' figures at http://ADDR/metrics for
    /// Prometheus (batches, rows in and out, late rows, state rows, watermarks).
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<std::net::SocketAddr>,
}

fn parse_trigger(text: &str) -> std::result::Result<crate::plan::Trigger, String> {
    crate::plan::Trigger::parse(text).ok_or_else(|| format!("`{text}` is neither available_now nor a duration such as 10s"))
}

#[derive(clap::Args, Debug, Clone)]
struct ExplainArgs {
    #[command(flatten)]
    settings: Settings,
    /// Also run every sink's plan (writing nothing) and show each operator's metrics: rows, time, memory.
    #[arg(long)]
    analyze: bool,
}

/// Certificates an operator issues, instead of a token (SPEC §10's shared secret).
#[derive(clap::Args, Debug, Clone, Default)]
struct TlsArgs {
    /// This process's certificate (PEM; a chain allowed), presented to every peer; with --tls-key and --tls-ca it replaces the token.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The CA (PEM) that must have signed every peer's certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name clients check every server's certificate against (default: the host they connect to).
    #[arg(long, value_name = "NAME", requires = "tls_cert")]
    tls_server_name: Option<String>,
}

impl TlsArgs {
    fn files(&self) -> Option<crate::cluster::auth::TlsFiles> {
        Some(crate::cluster::auth::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            ca: self.tls_ca.clone()?,
            server_name: self.tls_server_name.clone(),
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
struct SubmitArgs {
    #[command(flatten)]
    settings: Settings,
    /// The scheduler, HOST:PORT.
    #[arg(long)]
    scheduler: String,
    /// The cluster's shared secret (default: $KILN_CLUSTER_TOKEN); required to listen on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct SchedulerArgs {
    /// Address to listen on (SPEC §10: loopback unless said otherwise).
    #[arg(long, default_value = "127.0.0.1:50050")]
    bind: std::net::SocketAddr,
    /// Host name or IP executors reach this scheduler at (default: the bind address; required with a wildcard bind).
    #[arg(long)]
    external_host: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (jobs, pending tasks, executors).
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<std::net::SocketAddr>,
    /// The cluster's shared secret (default: $KILN_CLUSTER_TOKEN); required to listen on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct ExecutorArgs {
    /// The scheduler, HOST:PORT.
    #[arg(long)]
    scheduler: String,
    /// Address for task results (Arrow Flight); the gRPC port is the next one unless --grpc-port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    bind: std::net::SocketAddr,
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Host name or IP the scheduler and other executors reach this one at (default: the bind address).
    #[arg(long)]
    external_host: Option<String>,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    slots: Option<usize>,
    /// Memory for task execution, e.g. 4GB; operators that can spill do so past it.
    #[arg(long, value_parser = parse_memory)]
    memory_limit: Option<u64>,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (tasks, rows, bytes, spills, compute time).
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<std::net::SocketAddr>,
    /// The cluster's shared secret (default: $KILN_CLUSTER_TOKEN); required to listen on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline.
    Run(RunArgs),
    /// Run the pipeline on a Ballista cluster (this binary is the client).
    Submit(SubmitArgs),
    /// Be a Ballista scheduler for this pipeline's jobs.
    Scheduler(SchedulerArgs),
    /// Be a Ballista executor (this binary holds the pipeline's functions and models).
    Executor(ExecutorArgs),
    /// Print each sink's logical and physical plan.
    Explain(ExplainArgs),
    /// Run the spec's [[tests]] (exit 1 when one fails).
    Test(Settings),
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

fn parse_memory(text: &str) -> Result<u64, String> {
    parse_size(text).ok_or_else(|| format!("`{text}` is not a size such as 512MB or 4GB"))
}

impl Settings {
    fn options(&self) -> RunOptions {
        RunOptions {
            session: SessionOptions {
                threads: self.threads,
                target_partitions: self.threads,
                memory_limit: self.memory_limit,
                ..SessionOptions::default()
            },
            params: self.params.clone(),
            skew_report: self.skew_report,
            cluster: None,
            analyze: false,
            node_metrics: self.metrics.is_some() || self.report.is_some(),
            progress: crate::progress::wanted(self.quiet),
            trigger: None,
            metrics_file: self.metrics.clone(),
            metrics_bind: None,
        }
    }
}

/// The whole `main` of a generated binary.
pub fn main(pipeline: Pipeline) -> ExitCode {
    crate::models::init_threads();
    // Kiln, Ballista and DataFusion log through `log`/`tracing`: warnings by default, KILN_LOG=info
    // (or any filter) for more, KILN_LOG_FORMAT=json for JSON lines; every line carries the run id.
    crate::logging::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    if cli.version {
        println!("{} (kiln {}, spec sha256:{})", pipeline.name, crate::KILN_VERSION, pipeline.spec_hash);
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("usage: {} run | explain | --version (see --help)", pipeline.name);
        return ExitCode::from(2);
    };
    let settings = match &command {
        Command::Run(r) => r.settings.clone(),
        Command::Submit(s) => s.settings.clone(),
        Command::Explain(e) => e.settings.clone(),
        Command::Test(s) => s.clone(),
        Command::Scheduler(_) | Command::Executor(_) => Settings::default(),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = settings.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The cluster token (SPEC §10): read once, before any role starts.
    let identity = match &command {
        Command::Submit(a) => Some((a.auth_token_file.clone(), a.tls.files())),
        Command::Scheduler(a) => Some((a.auth_token_file.clone(), a.tls.files())),
        Command::Executor(a) => Some((a.auth_token_file.clone(), a.tls.files())),
        _ => None,
    };
    if let Some((file, tls)) = identity {
        if let Err(e) = crate::cluster::auth::init(file.as_deref(), tls.as_ref()) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let mut opts = settings.options();
    opts.cluster = match &command {
        Command::Run(r) if r.standalone => Some(crate::cluster::Cluster::Standalone),
        Command::Submit(s) => Some(crate::cluster::Cluster::Remote(s.scheduler.clone())),
        _ => None,
    };
    opts.analyze = matches!(&command, Command::Explain(e) if e.analyze);
    if let Command::Run(r) = &command {
        if r.trigger.is_some() && pipeline.streaming.is_none() {
            eprintln!("error: --trigger is for streaming pipelines ([pipeline] mode = \"streaming\")");
            return ExitCode::from(2);
        }
        opts.trigger = r.trigger;
        if r.metrics_bind.is_some() && pipeline.streaming.is_none() {
            eprintln!("error: run --metrics-bind serves a streaming pipeline's figures; a batch run writes them with --metrics FILE.json");
            return ExitCode::from(2);
        }
        opts.metrics_bind = r.metrics_bind;
    }
    opts.progress = opts.progress && matches!(&command, Command::Run(_) | Command::Submit(_));
    let settings_for_run = settings.clone();
    let result = runtime.block_on(async {
        match command {
            Command::Scheduler(a) => crate::cluster::scheduler(&pipeline, a.bind, a.external_host, a.metrics_bind).await,
            Command::Executor(a) => {
                let external = a.external_host.clone();
                let opts = crate::cluster::ExecutorOptions {
                    scheduler: a.scheduler,
                    bind: a.bind,
                    grpc_port: a.grpc_port,
                    external_host: external,
                    slots: a.slots,
                    memory_limit: a.memory_limit,
                    work_dir: a.work_dir,
                    metrics_bind: a.metrics_bind,
                };
                crate::cluster::executor(&pipeline, &opts).await
            }
            Command::Run(_) | Command::Submit(_) => run::run(&pipeline, &opts).await.map(|report| {
                for s in &report.sinks {
                    match s.rows {
                        Some(rows) => eprintln!("sink `{}`: {rows} rows -> {}", s.name, redact::text(&s.path)),
                        None => eprintln!("sink `{}`: skipped, {} exists (mode = \"ignore\")", s.name, redact::text(&s.path)),
                    }
                }
                eprintln!("{}: done in {:.2}s", pipeline.name, report.seconds);
                report
            }).and_then(|report| {
                if let Some(path) = &settings_for_run.metrics {
                    write_metrics(&pipeline, &report, path)?;
                }
                if let Some(path) = &settings_for_run.report {
                    write_output(path, &crate::report::html(&pipeline, &report, &report.params))?;
                    eprintln!("report -> {}", path.display());
                }
                Ok(())
            }),
            Command::Explain(_) => run::explain(&pipeline, &opts).await.map(|text| print!("{}", redact::text(&text))),
            Command::Test(_) => crate::testing::run_and_report(&pipeline).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::TestsFailed(_)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", redact::text(&e.to_string()));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `--metrics FILE.json`: the run's report (format in the README, version 1). A
/// streaming run also rewrites it after every batch.
pub(crate) fn write_metrics(pipeline: &Pipeline, report: &run::Report, path: &std::path::Path) -> crate::Result<()> {
    let mut json = serde_json::json!({ "version": 1, "run_id": crate::logging::run_id(), "pipeline": pipeline.name, "spec_sha256": pipeline.spec_hash });
    if let (Some(obj), Ok(serde_json::Value::Object(fields))) = (json.as_object_mut(), serde_json::to_value(report)) {
        obj.extend(fields);
    }
    // Each string is redacted before serialization escapes it.
    redact_strings(&mut json);
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Usage(e.to_string()))?;
    write_output(path, &text)
}

/// Every string in `v` (keys too) with environment values replaced by their templates.
fn redact_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = redact::text(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_strings),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut item) in entries {
                redact_strings(&mut item);
                map.insert(redact::text(&k), item);
            }
        }
        _ => {}
    }
}

/// Writes a metrics or report file whole (a temporary file renamed into place).
fn write_output(path: &std::path::Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("kiln-tmp");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The exit code SPEC §10 gives an error: 2 bad usage, 3 a tripped `fail` rule, 1 anything else.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Usage(_) | Error::Param { .. } => 2,
        Error::Expectation(_) => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod metrics_json_tests {
    #[test]
    fn json_strings_are_redacted_before_they_are_escaped() {
        crate::redact::remember("q\"uo\\te-secret-9b2c", "${env.KILN_JSON_TEST_PW}");
        let mut v = serde_json::json!({ "params": { "pw": "q\"uo\\te-secret-9b2c" }, "sinks": [{ "path": "/x/q\"uo\\te-secret-9b2c" }] });
        super::redact_strings(&mut v);
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("9b2c"), "{text}");
        assert!(text.contains("${env.KILN_JSON_TEST_PW}"), "{text}");
    }
}
