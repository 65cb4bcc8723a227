//! The command line of every generated binary: `NAME run | explain | test | --version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[derive(clap::Args, Debug, Clone)]
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
    /// Write what the run did (rows per sink, data-quality summary, seconds) as JSON.
    #[arg(long)]
    metrics: Option<std::path::PathBuf>,
    /// Before running, count every join's keys: partition sizes (max/median) and top keys per
    /// side, and a warning when one key holds more than 20% of a side.
    #[arg(long)]
    skew_report: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline.
    Run(Settings),
    /// Print each sink's logical and physical plan.
    Explain(Settings),
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
        }
    }
}

/// The whole `main` of a generated binary.
pub fn main(pipeline: Pipeline) -> ExitCode {
    crate::models::init_threads();
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
        Command::Run(s) | Command::Explain(s) | Command::Test(s) => s.clone(),
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
    let opts = settings.options();
    let settings_for_run = settings.clone();
    let result = runtime.block_on(async {
        match command {
            Command::Run(_) => run::run(&pipeline, &opts).await.map(|report| {
                for s in &report.sinks {
                    match s.rows {
                        Some(rows) => eprintln!("sink `{}`: {rows} rows -> {}", s.name, s.path),
                        None => eprintln!("sink `{}`: skipped, {} exists (mode = \"ignore\")", s.name, s.path),
                    }
                }
                eprintln!("{}: done in {:.2}s", pipeline.name, report.seconds);
                report
            }).and_then(|report| match &settings_for_run.metrics {
                Some(path) => {
                    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Usage(e.to_string()))?;
                    std::fs::write(path, json).map_err(|e| Error::io(format!("writing {}", path.display()), e))
                }
                None => Ok(()),
            }),
            Command::Explain(_) => run::explain(&pipeline, &opts).await.map(|text| print!("{text}")),
            Command::Test(_) => crate::testing::run_and_report(&pipeline).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::TestsFailed(_)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                Error::Usage(_) | Error::Param { .. } => 2,
                Error::Expectation(_) => 3,
                _ => 1,
            })
        }
    }
}
