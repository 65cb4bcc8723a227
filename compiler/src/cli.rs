//! The `kiln` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{Checked, check_file, job};

#[derive(Parser, Debug)]
#[command(name = "kiln", version, about = "Compile declarative pipeline specs into native DataFusion binaries")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check specs without reading data or running cargo: every error at once.
    Check {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
    },
    /// Generate the job crate and build it; prints the binary's path last. Outside
    /// the Kiln checkout, the crate is built in Kiln's home (`$KILN_HOME`, default
    /// ~/.cache/kiln) and the binary copied to ./target/kiln/NAME.
    Build {
        spec: PathBuf,
        #[arg(long)]
        release: bool,
        /// The Kiln workspace to generate into (default: Kiln's home, or the checkout kiln was built from when run inside it).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Build, then run the binary from the spec's directory; ARGS go to its `run`.
    Run {
        spec: PathBuf,
        #[arg(long)]
        release: bool,
        #[arg(long)]
        workspace: Option<PathBuf>,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print each sink's plan (reads file listings, not data).
    Explain {
        spec: PathBuf,
        /// --param NAME=VALUE
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Run the specs' [[tests]] in-process, without a cargo build; exit 1 if any fails.
    Test {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
    },
    /// Write a starter spec NAME.toml.
    New { name: String },
    /// Start using Kiln in a repository (default: the current directory): a starter
    /// pipeline with tests and sample data, .gitignore entries, and a GitHub Actions
    /// workflow that checks and tests every spec. Existing files are kept.
    Init {
        dir: Option<PathBuf>,
        /// Where the workflow's `cargo install --git` gets Kiln.
        #[arg(long, value_name = "URL")]
        kiln_git: Option<String>,
        /// The commit or tag of it the workflow installs (default: the commit this kiln
        /// was installed from with `cargo install --git`, else the default branch).
        #[arg(long, value_name = "REV")]
        kiln_rev: Option<String>,
    },
    /// Write Kubernetes manifests (scheduler, executors, a submit Job) and a Dockerfile.
    Deploy {
        spec: PathBuf,
        /// Directory to write them to.
        #[arg(long)]
        k8s: PathBuf,
        /// Container image of the binary (default: NAME:latest).
        #[arg(long)]
        image: Option<String>,
        /// A PersistentVolumeClaim mounted in every pod (CLAIM or CLAIM:/mount/path,
        /// default mount /data), for specs that read and write a shared file system
        /// instead of an object store.
        #[arg(long, value_name = "CLAIM[:MOUNT]")]
        shared_volume: Option<String>,
        /// Authenticate the cluster with the operator's certificates instead of a token: a
        /// `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt, as cert-manager writes it)
        /// whose certificate carries the name NAME-cluster.
        #[arg(long, value_name = "SECRET")]
        tls_secret: Option<String>,
        /// A binary already built (kiln build SPEC --release): the Dockerfile copies it
        /// in and states the glibc it needs. Default: the Dockerfile builds it inside
        /// the image (the binary then runs on the image's glibc, whatever built it).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Where the in-image build's `cargo install --git` gets Kiln.
        #[arg(long, value_name = "URL")]
        kiln_git: Option<String>,
        /// The commit or tag of it the image installs (default: the commit this kiln was
        /// installed from with `cargo install --git`, else the default branch).
        #[arg(long, value_name = "REV")]
        kiln_rev: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Check { specs } => check(&specs),
        Command::Build { spec, release, workspace } => match build(&spec, release, workspace.as_deref()) {
            Ok((binary, _lock)) => {
                println!("{}", binary.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { spec, release, workspace, args } => {
            let (binary, lock) = match build(&spec, release, workspace.as_deref()) {
                Ok(b) => b,
                Err(code) => return code,
            };
            let dir = spec_dir(&spec);
            eprintln!("running {} run {} (in {})", binary.display(), args.join(" "), dir.display());
            let mut cmd = std::process::Command::new(&binary);
            cmd.arg("run").args(&args).current_dir(&dir);
            match start_and_wait(cmd, lock) {
                Ok(status) => ExitCode::from(status.code().map_or(1, |c| c as u8)),
                Err(e) => {
                    eprintln!("error: cannot run {}: {e}", binary.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Explain { spec, params } => explain(&spec, &params),
        Command::New { name } => new(&name),
        Command::Init { dir, kiln_git, kiln_rev } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            if let Some(note) = kiln_git.is_none().then(|| crate::init::fallback_note("the workflow")).flatten() {
                eprintln!("{note}");
            }
            match crate::init::init(&dir, kiln_git.as_deref().unwrap_or(crate::init::default_git()), kiln_rev.as_deref().unwrap_or(crate::init::default_rev())) {
                Ok(written) => {
                    for w in &written {
                        println!("{}", w.display());
                    }
                    eprintln!("next: kiln check pipelines/orders.toml && kiln test pipelines/orders.toml && kiln run pipelines/orders.toml");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Deploy { spec, k8s, image, shared_volume, tls_secret, binary, kiln_git, kiln_rev } => {
            let docker = match binary {
                Some(b) => match std::fs::read(&b) {
                    Ok(bytes) => {
                        let min_glibc = crate::deploy::min_glibc(&bytes);
                        match min_glibc {
                            Some((a, m)) if (a, m) > crate::deploy::IMAGE_GLIBC => eprintln!("warning: {} needs glibc {a}.{m}, newer than the image's; build it inside the image (omit --binary)", b.display()),
                            Some((a, m)) => eprintln!("{} needs glibc {a}.{m} or newer", b.display()),
                            None => eprintln!("{} needs no particular glibc (no versioned glibc symbols)", b.display()),
                        }
                        crate::deploy::Docker::Prebuilt { min_glibc }
                    }
                    Err(e) => {
                        eprintln!("error: cannot read {}: {e}", b.display());
                        return ExitCode::from(2);
                    }
                },
                None => {
                    if let Some(note) = kiln_git.is_none().then(|| crate::init::fallback_note("the Dockerfile")).flatten() {
                        eprintln!("{note}");
                    }
                    let (a, m) = crate::deploy::IMAGE_GLIBC;
                    eprintln!("the image builds the binary (Debian trixie): it needs the image's own glibc {a}.{m}, whatever machine builds it");
                    crate::deploy::Docker::Build {
                        spec: spec.to_string_lossy().replace('\\', "/").trim_start_matches("./").to_string(),
                        kiln_git: kiln_git.unwrap_or_else(|| crate::init::default_git().to_string()),
                        kiln_rev: kiln_rev.unwrap_or_else(|| crate::init::default_rev().to_string()),
                    }
                }
            };
            deploy(&spec, &k8s, image.as_deref(), shared_volume.as_deref(), tls_secret, docker)
        }
        Command::Test { specs } => test(&specs),
    }
}

fn deploy(spec: &Path, dir: &Path, image: Option<&str>, shared_volume: Option<&str>, tls_secret: Option<String>, docker: crate::deploy::Docker) -> ExitCode {
    match write_manifests(spec, dir, image, shared_volume, tls_secret, docker) {
        Ok(code) | Err(code) => code,
    }
}

fn write_manifests(spec: &Path, dir: &Path, image: Option<&str>, shared_volume: Option<&str>, tls_secret: Option<String>, docker: crate::deploy::Docker) -> Result<ExitCode, ExitCode> {
    let checked = load(spec)?;
    let pipeline = report(&checked)?;
    let (parsed, _) = crate::spec::parse(&checked.file.text);
    let sizing = crate::deploy::Sizing::from_spec(&parsed);
    let image = image.map_or_else(|| format!("{}:latest", pipeline.name.replace('_', "-")), str::to_string);
    // The submit Job passes every parameter that has an environment variable and a default,
    // at its default (a parameter without one must be set when the Job is applied).
    let env: Vec<(String, String)> = pipeline
        .params
        .iter()
        .filter_map(|p| Some((p.env.clone()?, p.default.as_ref()?.to_string())))
        .collect();
    // On a cluster each pod has its own disk: a local path is lost output (or unread
    // input) unless every pod mounts the same volume.
    let shared_volume = shared_volume.map(|v| match v.split_once(':') {
        Some((claim, mount)) => (claim.to_string(), mount.to_string()),
        None => (v.to_string(), "/data".to_string()),
    });
    if shared_volume.is_none() {
        let defaults = |text: &str| crate::schemas::substitute_defaults(&parsed, text);
        let sources = pipeline.nodes.iter().filter_map(|n| match &n.op {
            kiln::plan::Op::Source(s) if !matches!(s.format, kiln::plan::SourceFormat::Inline(_)) => Some((format!("source `{}`", n.name), s.path.clone())),
            _ => None,
        });
        let sinks = pipeline.sinks.iter().filter(|s| !matches!(s.format, kiln::plan::SinkFormat::Console | kiln::plan::SinkFormat::Kafka)).map(|s| (format!("sink `{}`", s.name), s.path.clone()));
        let local: Vec<String> = sources.chain(sinks).filter(|(_, p)| !kiln::storage::is_remote(&defaults(p))).map(|(what, p)| format!("{what} ({})", defaults(&p))).collect();
        if !local.is_empty() {
            eprintln!(
                "error: on a cluster each pod has its own disk, and these paths are local: {}\n  help: use s3://, gs:// or az:// paths (set the parameters' defaults or env), or mount one volume in every pod with --shared-volume CLAIM[:MOUNT]",
                local.join(", ")
            );
            return Err(ExitCode::from(1));
        }
    }
    let environment = crate::deploy::Environment { params: env, secrets: env_references(&checked.file.text), shared_volume, tls_secret: tls_secret.clone(), docker };
    let files = crate::deploy::k8s(&pipeline.name, &image, &sizing, &environment);
    match crate::deploy::write(dir, &files) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            let identity = match &tls_secret {
                None => format!("the cluster's token (kubectl create secret generic {} --from-literal=token=$(openssl rand -hex 32))", crate::deploy::token_secret_name(&pipeline.name)),
                Some(secret) => format!(
                    "the cluster's certificate in the kubernetes.io/tls Secret {secret} (tls.crt, tls.key, ca.crt; its certificate must carry the DNS name {} and allow server and client use)",
                    crate::deploy::cluster_tls_name(&pipeline.name)
                ),
            };
            eprintln!(
                "{} executor(s) x {} cores, {} MB each (--memory-limit {} MB); build the image (see {}), create the Secret {} (the spec's ${{env.X}} values and AWS_*/GOOGLE_*/AZURE_* credentials: kubectl create secret generic {} --from-literal=KEY=VALUE ...) and {identity}, then kubectl apply -f {}",
                sizing.executors,
                sizing.cores,
                sizing.memory_bytes >> 20,
                sizing.memory_limit() >> 20,
                dir.join("Dockerfile").display(),
                crate::deploy::secret_name(&pipeline.name),
                crate::deploy::secret_name(&pipeline.name),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The variables a spec reads as `${env.X}`, in order of first use.
fn env_references(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("${env.") {
        let rest = &text[i + 6..];
        if let Some(end) = rest.find('}') {
            let name = rest[..end].to_string();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn spec_dir(spec: &Path) -> PathBuf {
    match spec.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn load(spec: &Path) -> Result<Checked, ExitCode> {
    match check_file(spec) {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", spec.display());
            Err(ExitCode::from(2))
        }
    }
}

/// Prints diagnostics; the pipeline when there is no error.
fn report(checked: &Checked) -> Result<&kiln::plan::Pipeline, ExitCode> {
    if !checked.diagnostics.is_empty() {
        eprint!("{}", checked.render(std::io::stderr().is_terminal()));
    }
    match &checked.pipeline {
        Some(p) if !checked.has_errors() => Ok(p),
        Some(_) => Err(ExitCode::from(1)),
        None if checked.has_errors() => Err(ExitCode::from(1)),
        None => {
            eprintln!("error: internal: {} produced no pipeline and no error", checked.file.path.display());
            Err(ExitCode::from(1))
        }
    }
}

fn check(specs: &[PathBuf]) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for spec in specs {
        match load(spec) {
            Err(c) => return c,
            Ok(checked) => match report(&checked) {
                Ok(_) => eprintln!("{}: ok", spec.display()),
                Err(c) => code = c,
            },
        }
    }
    code
}

/// Builds the spec's job; returns the binary and the lock on its crate, to hold until
/// the binary has been started (in a checkout, the path is the target directory's,
/// which another build of the same name may overwrite).
fn build(spec: &Path, release: bool, workspace: Option<&Path>) -> Result<(PathBuf, std::fs::File), ExitCode> {
    let checked = load(spec)?;
    let pipeline = report(&checked)?;
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(1)
    };
    let ws = job::locate(workspace).map_err(fail)?;
    let shown = spec.display().to_string();
    let lock = ws.lock(&pipeline.name).map_err(fail)?;
    let dir = ws.write_crate(pipeline, &shown, &checked.rust).map_err(fail)?;
    eprintln!("generated {}", dir.display());
    Ok((ws.cargo_build(&pipeline.name, release).map_err(fail)?, lock))
}

/// Starts `binary` while the build's lock is held, then lets go of it and waits.
fn start_and_wait(mut cmd: std::process::Command, lock: std::fs::File) -> std::io::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn()?;
    drop(lock);
    child.wait()
}

/// Runs every spec's tests with the same plan construction the binary uses.
fn test(specs: &[PathBuf]) -> ExitCode {
    let start_dir = std::env::current_dir().ok();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut all_passed = true;
    for spec in specs {
        if let Some(dir) = &start_dir {
            let _ = std::env::set_current_dir(dir);
        }
        let checked = match load(spec) {
            Ok(c) => c,
            Err(c) => return c,
        };
        let pipeline = match report(&checked) {
            Ok(p) => p,
            Err(c) => return c,
        };
        if pipeline.tests.is_empty() {
            println!("{}: no [[tests]]", spec.display());
            continue;
        }
        // #[kiln::udf] bodies exist only in the job binary: build it and run its tests.
        if checked.rust.iter().any(|f| !f.udfs.is_empty() || !f.models.is_empty()) {
            if let Some(dir) = &start_dir {
                let _ = std::env::set_current_dir(dir);
            }
            let (binary, lock) = match build(spec, false, None) {
                Ok(b) => b,
                Err(c) => return c,
            };
            println!("{}: (its #[kiln::udf]s run in {})", spec.display(), binary.display());
            let mut cmd = std::process::Command::new(&binary);
            cmd.arg("test").current_dir(spec_dir(spec));
            let status = start_and_wait(cmd, lock);
            all_passed &= status.is_ok_and(|s| s.success());
            continue;
        }
        println!("{}:", spec.display());
        // Fixture paths are relative to the spec's directory.
        if let Err(e) = std::env::set_current_dir(spec_dir(spec)) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        let outcomes = runtime.block_on(kiln::testing::run_all(pipeline));
        all_passed &= kiln::testing::report(&outcomes, &mut std::io::stdout());
    }
    if all_passed { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn explain(spec: &Path, params: &[String]) -> ExitCode {
    let checked = match load(spec) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let pipeline = match report(&checked) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut pairs = Vec::new();
    for p in params {
        match p.split_once('=') {
            Some((k, v)) => pairs.push((k.to_string(), v.to_string())),
            None => {
                eprintln!("error: --param expects NAME=VALUE, got `{p}`");
                return ExitCode::from(2);
            }
        }
    }
    // Relative paths in a spec are relative to the spec's directory.
    if let Err(e) = std::env::set_current_dir(spec_dir(spec)) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let opts = kiln::run::RunOptions { params: pairs, ..Default::default() };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(kiln::run::explain(pipeline, &opts)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

const STARTER: &str = r#"# A Kiln pipeline. `kiln check NAME.toml` validates it; `kiln run NAME.toml` builds and runs it.
[pipeline]
name = "NAME"
description = "A starter pipeline: edit the source, add transforms, point the sink somewhere."

[sources.people]
format = "inline"
rows = [
  { name = "ada", age = 36 },
  { name = "linus", age = 17 },
]

[transforms.adults]
type = "filter"
input = "people"
predicate = "age >= 18"

[sinks.show]
input = "adults"
format = "console"
"#;

fn new(name: &str) -> ExitCode {
    let mut d = crate::diag::Diags::default();
    if !crate::spec::check_name(&crate::spec::Sp::new(name.to_string(), 0..0), "pipeline", &mut d) {
        eprintln!("error: `{name}` is not a valid pipeline name (lowercase letters, digits and `_`, starting with a letter)");
        return ExitCode::from(2);
    }
    let path = PathBuf::from(format!("{name}.toml"));
    if path.exists() {
        eprintln!("error: {} already exists", path.display());
        return ExitCode::from(2);
    }
    match std::fs::write(&path, STARTER.replace("NAME", name)) {
        Ok(()) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}
