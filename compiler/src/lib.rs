//! Kiln's compiler: a pipeline of passes over plain data.
//!
//! ```text
//! spec::parse      TOML text          → spec::Spec (spans on every value)
//! resolve          Spec               → resolve::Graph (names, inputs, cycles, order)
//! schemas::read    Spec + disk        → Parquet footer schemas (the only IO, with models::read)
//! models::read     Spec + disk        → safetensors headers of [models.NAME]
//! udfs::read       Spec + disk        → #[kiln::udf] signatures and #[kiln::model] types (syn)
//! typeck           Spec + Graph + …   → kiln::plan::Pipeline (expressions checked by DataFusion)
//! hint_warnings    Pipeline + disk    → join hints that the data's size makes look wrong (kiln::strategy)
//! codegen          Pipeline           → the files of a job crate
//! ```
//!
//! Each pass returns its result together with every diagnostic it found; the
//! CLI ([`cli`]) renders them and drives cargo ([`job`]).
//!
//! ```
//! let text = r#"
//! [pipeline]
//! name = "demo"
//! [sources.people]
//! format = "inline"
//! rows = [ { name = "ada", age = 36 } ]
//! [transforms.adults]
//! type = "filter"
//! input = "people"
//! predicate = "age >= 18"
//! [sinks.out]
//! input = "adults"
//! format = "console"
//! "#;
//! let checked = kiln_compiler::check_text("demo.toml".as_ref(), text, ".".as_ref());
//! assert!(checked.diagnostics.is_empty());
//! let pipeline = checked.pipeline.unwrap();
//! assert_eq!(pipeline.nodes.len(), 2);
//! let info = kiln_compiler::codegen::CrateInfo { spec_path: "demo.toml", runtime_path: "../../runtime", rust: &[] };
//! let files = kiln_compiler::codegen::generate(&pipeline, &info).unwrap();
//! assert!(files[std::path::Path::new("src/main.rs")].contains(r#"col("age").gt_eq(lit(18i64))"#));
//! ```

pub mod cli;
pub mod codegen;
pub mod deploy;
pub mod diag;
pub mod embed;
pub mod home;
pub mod init;
pub mod job;
pub mod models;
pub mod resolve;
pub mod schemas;
pub mod spec;
pub mod typeck;
pub mod udfs;

use std::path::Path;

use sha2::{Digest, Sha256};

use diag::{Diagnostic, SourceFile};
pub use embed::Build;
use kiln::plan::Pipeline;

/// The outcome of checking one spec.
#[derive(Debug)]
pub struct Checked {
    pub file: SourceFile,
    /// Present when there is no error (warnings may remain).
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
    /// The spec's `udfs` files (the generated crate includes and registers them).
    pub rust: Vec<udfs::RustFile>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics as `kiln check` prints them.
    pub fn render(&self, color: bool) -> String {
        diag::render(&self.file, &self.diagnostics, color)
    }
}

/// Hex SHA-256 of a spec's text: the identity `NAME --version` reports.
pub fn spec_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs every pass over a spec's text. `base` is the directory relative paths
/// in the spec are read from (the spec's own directory).
pub fn check_text(path: &Path, text: &str, base: &Path) -> Checked {
    // The passes recurse over TOML values and expression trees: run them on a
    // stack that deep (but bounded, see `typeck::MAX_DEPTH`) input cannot exhaust,
    // and turn a panic into an error instead of aborting `kiln check`.
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new().stack_size(CHECK_STACK).spawn_scoped(scope, || check_text_here(path, text, base)).map(|h| h.join())
    });
    match outcome {
        Ok(Ok(checked)) => checked,
        Ok(Err(panic)) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            internal_error(path, text, format!("internal error: kiln check panicked ({what}); please report it with the spec"))
        }
        Err(e) => internal_error(path, text, format!("internal error: cannot start the checker: {e}")),
    }
}

/// Stack size of the thread `check_text` runs the passes on.
const CHECK_STACK: usize = 256 << 20;

fn internal_error(path: &Path, text: &str, message: String) -> Checked {
    let file = SourceFile { path: path.to_path_buf(), text: text.to_string() };
    Checked { file, pipeline: None, diagnostics: vec![Diagnostic::error("kiln::internal", 0..0, message).label("while checking this spec")], rust: Vec::new() }
}

/// [`check_text`] on the calling thread: for proc macros (`include_pipeline!`),
/// whose proc_macro2 values (read from udf files) live on the compiler's thread.
pub fn check_text_here(path: &Path, text: &str, base: &Path) -> Checked {
    let file = SourceFile { path: path.to_path_buf(), text: text.to_string() };
    let (spec, mut diagnostics) = spec::parse(text);
    let (graph, resolve_diags) = resolve::resolve(&spec);
    diagnostics.extend(resolve_diags);
    let file_schemas = schemas::read(&spec, base);
    let model_files = models::read(&spec, base);
    let (rust, rust_diags) = udfs::read(&spec, base);
    diagnostics.extend(rust_diags);
    let input = typeck::Input { spec: &spec, graph: &graph, file_schemas: &file_schemas, model_files: &model_files, rust: &rust, text, spec_hash: spec_hash(text) };
    let (pipeline, typeck_diags) = typeck::typeck(&input);
    diagnostics.extend(typeck_diags);
    if let Some(p) = &pipeline {
        diagnostics.extend(hint_warnings(&spec, p, base));
    }
    // Whatever the code generator cannot express yet is a check error too.
    if let Some(p) = &pipeline {
        let info = codegen::CrateInfo { spec_path: "", runtime_path: "", rust: &[] };
        if let Err(codegen::Unsupported(what)) = codegen::generate(p, &info) {
            diagnostics.push(
                Diagnostic::error("kiln::unsupported", spec.pipeline.name.span.clone(), format!("kiln cannot generate code for {what} yet"))
                    .label("in this pipeline"),
            );
        }
    }
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    let failed = diagnostics.iter().any(Diagnostic::is_error);
    Checked { file, pipeline: if failed { None } else { pipeline }, diagnostics, rust }
}

/// Join hints that look wrong for the spec's default data, as warnings at the
/// join's `strategy` (the binary decides `auto` joins from the data it reads).
fn hint_warnings(spec: &spec::Spec, pipeline: &kiln::plan::Pipeline, base: &Path) -> Vec<Diagnostic> {
    let Ok(values) = kiln::params::resolve(&pipeline.params, &[], |_| None) else { return Vec::new() };
    let estimates = kiln::stats::estimate(pipeline, &values, base);
    let choices = kiln::strategy::choose(pipeline, &estimates, None);
    choices
        .warnings
        .into_iter()
        .filter_map(|(node, message)| {
            let t = spec.transforms.iter().find(|t| t.name.value == node)?;
            let span = match &t.body {
                spec::TransformBody::Join { strategy: Some(s), .. } => s.span.clone(),
                _ => t.name.span.clone(),
            };
            Some(
                Diagnostic::warning("kiln::suspicious-hint", span, message)
                    .label("on the spec's default data")
                    .help("every partition holds a copy of a broadcast side; strategy = \"shuffle\" (or \"auto\") may suit better"),
            )
        })
        .collect()
}

/// Reads and checks a spec file.
pub fn check_file(path: &Path) -> std::io::Result<Checked> {
    let text = std::fs::read_to_string(path)?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(check_text(path, &text, base))
}

/// [`check_file`] on the calling thread (see [`check_text_here`]).
pub fn check_file_here(path: &Path) -> std::io::Result<Checked> {
    let text = std::fs::read_to_string(path)?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(check_text_here(path, &text, base))
}
