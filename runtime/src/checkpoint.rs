//! `checkpoint = true` (SPEC §4): a transform's result is written to
//! `[runtime] checkpoint_dir` when a run computes it, and a later run whose
//! inputs did not change reads it back instead of computing it again — so a
//! rerun after a failure resumes from the checkpoints it had reached (Spark's
//! eager `checkpoint()`, kept across runs).
//!
//! `DIR/NODE/` holds the node's rows as Parquet part files and
//! `_KILN_CHECKPOINT`, the fingerprint of what produced them: the node's plan
//! with parameters bound, and the name, size and modification time of every
//! file its sources read (for an upstream checkpoint, its fingerprint). A new
//! checkpoint is written beside the old one and renamed into place, so a
//! killed run leaves the previous checkpoint or none, never a partial one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sha2::{Digest, Sha256};

use crate::params::{Values, interpolate};
use crate::plan::{Op, Pipeline, SourceFormat};
use crate::{Error, Result};

const MARKER: &str = "_KILN_CHECKPOINT";

/// `plan` (node `name`'s, parameters bound) read from its checkpoint when the
/// checkpoint's fingerprint matches, else computed, written, and read back.
pub async fn apply(ctx: &SessionContext, pipeline: &Pipeline, name: &str, plan: LogicalPlan, values: &Values, dir: &str) -> Result<LogicalPlan> {
    let target = Path::new(dir).join(name);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir}"), e))?;
    // One run at a time per checkpoint; leftovers of killed runs are swept.
    let _lock = crate::sinks::lock(name, &target)?;
    crate::sinks::clean_stale_staging(&target);
    let fingerprint = fingerprint(pipeline, name, &plan, values, dir)?;
    let stored = std::fs::read_to_string(target.join(MARKER)).ok();
    if fingerprint.is_some() && stored == fingerprint {
        eprintln!("checkpoint `{name}`: inputs unchanged, reading {}", crate::redact::text(&target.display().to_string()));
    } else {
        // An input that cannot be listed (a glob, an object store) is never trusted unchanged.
        let written = fingerprint.unwrap_or_else(|| "unverifiable".to_string());
        write(ctx, &plan, &target, &written).await.map_err(|e| Error::in_node(name, e))?;
        eprintln!("checkpoint `{name}`: written to {}", crate::redact::text(&target.display().to_string()));
    }
    let read = read(ctx, name, &plan, &target).await?;
    // Part files come back in no particular order: a sort node is sorted again.
    match pipeline.nodes.iter().find(|n| n.name == name).map(|n| &n.op) {
        Some(Op::Sort { order_by, .. }) => Ok(LogicalPlanBuilder::from(read).sort(order_by.clone())?.build()?),
        _ => Ok(read),
    }
}

/// The identity of what the node's rows are computed from.
/// `None` when some input cannot be listed (a glob or an object-store path).
fn fingerprint(pipeline: &Pipeline, name: &str, plan: &LogicalPlan, values: &Values, dir: &str) -> Result<Option<String>> {
    let mut h = Sha256::new();
    h.update(crate::KILN_VERSION.as_bytes());
    // The plan without the per-process ids of shared nodes and splits, nor metrics markers.
    let stable = crate::node_metrics::unmark(crate::shared::unwrap(crate::split::to_filters(plan.clone())?)?)?;
    h.update(stable.display_indent_schema().to_string().as_bytes());
    // Rust functions' bodies are in the binary: a rebuilt binary recomputes.
    if !crate::functions::kiln_udfs().is_empty() {
        if let Some(meta) = std::env::current_exe().ok().and_then(|p| std::fs::metadata(p).ok()) {
            h.update(format!("{:?}{}", meta.modified().ok(), meta.len()).as_bytes());
        }
    }
    let file_identity = |h: &mut Sha256, f: &Path| -> Result<()> {
        let meta = std::fs::metadata(f).map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        h.update(format!("{}\0{}\0{modified}\n", f.display(), meta.len()).as_bytes());
        Ok(())
    };
    let env = |v: &str| std::env::var(v).ok();
    let mut seen = HashSet::new();
    let mut stack = vec![name.to_string()];
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if n != name && pipeline.runtime.checkpoints.contains(&n) {
            // An upstream checkpoint stands for everything above it.
            h.update(std::fs::read(Path::new(dir).join(&n).join(MARKER)).unwrap_or_default());
            continue;
        }
        let Some(node) = pipeline.nodes.iter().find(|x| x.name == n) else { continue };
        // Everything the node says (inline rows, reader options, rules, model paths…).
        h.update(format!("{:?}", node.op).as_bytes());
        match &node.op {
            // A database table has no file identity to compare: never reused.
            Op::Source(s) if matches!(s.format, SourceFormat::Postgres(_)) => return Ok(None),
            Op::Source(s) if !matches!(s.format, SourceFormat::Inline(_)) => {
                let path = interpolate(&s.path, values, env)?;
                if path.contains("://") || path.contains(['*', '?', '[']) {
                    return Ok(None);
                }
                h.update(path.as_bytes());
                for f in crate::sources::files_under(Path::new(&path), None) {
                    file_identity(&mut h, &f)?;
                }
            }
            Op::Predict { model, .. } => {
                file_identity(&mut h, Path::new(&interpolate(&model.path, values, env)?))?;
                stack.extend(node.op.inputs().into_iter().map(String::from));
            }
            op => stack.extend(op.inputs().into_iter().map(String::from)),
        }
    }
    Ok(Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

/// Computes `plan` into `target` (beside it first, then renamed into place).
async fn write(ctx: &SessionContext, plan: &LogicalPlan, target: &Path, fingerprint: &str) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging: PathBuf = parent.join(format!(".{file_name}.kiln-staging-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
    let written = async {
        DataFrame::new(ctx.state(), plan.clone()).write_parquet(&staging.display().to_string(), DataFrameWriteOptions::new(), None).await?;
        std::fs::write(staging.join(MARKER), fingerprint).map_err(|e| Error::io(format!("writing {}", staging.display()), e))?;
        let aside = parent.join(format!(".{file_name}.kiln-old-{}-{nanos}", std::process::id()));
        if target.exists() {
            std::fs::rename(target, &aside).map_err(|e| Error::io(format!("moving {} aside", target.display()), e))?;
        }
        std::fs::rename(&staging, target).map_err(|e| Error::io(format!("renaming into {}", target.display()), e))?;
        let _ = std::fs::remove_dir_all(&aside);
        Ok::<(), Error>(())
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

/// The checkpoint's rows, with the node's schema, under the node's name.
async fn read(ctx: &SessionContext, name: &str, plan: &LogicalPlan, target: &Path) -> Result<LogicalPlan> {
    let schema = plan.schema().as_arrow().clone();
    let opts = ParquetReadOptions::default().schema(&schema).file_extension(".parquet");
    let df = ctx.read_parquet(target.display().to_string(), opts).await.map_err(|e| Error::in_node(name, e))?;
    Ok(LogicalPlanBuilder::from(df.into_unoptimized_plan()).alias(name)?.build()?)
}
