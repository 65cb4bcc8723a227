//! Sources: turning a [`Source`] into a logical plan over its data.
//!
//! Every node's plan is aliased to the node's name, so its columns can be
//! qualified by it (`transactions.amount`).

pub mod bad_rows;
pub mod csv_errors;
#[cfg(feature = "delta")]
pub mod delta;
#[cfg(not(feature = "delta"))]
use crate::unbuilt::delta_source as delta;
pub mod drift;
pub mod files;
mod inline;
pub mod orc;
pub mod remote;

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use crate::params::{Values, interpolate};
use crate::plan::{Source, SourceFormat};
use crate::Result;

/// The plan that reads `source` (named `name`) with the run's parameter values.
/// `read_from` replaces the source's path (the cleaned copy of a CSV source
/// that skips bad rows).
pub async fn scan(
    ctx: &SessionContext,
    name: &str,
    source: &Source,
    params: &Values,
    read_from: Option<&str>,
) -> Result<LogicalPlan> {
    let env = |var: &str| std::env::var(var).ok();
    let plan = match &source.format {
        SourceFormat::Inline(rows) => inline::scan(&source.schema, rows)?,
        // The streaming driver reads each batch's records and scans them as Parquet;
        // elsewhere (`explain`) a topic is planned as no rows of its schema.
        SourceFormat::Kafka(_) => return empty(name, source),
        SourceFormat::Postgres(pg) => {
            // `${env.X}` stays in the url: each process (an executor, on a cluster)
            // resolves it from its own environment when it connects.
            let keep_env = |var: &str| Some(format!("${{env.{var}}}"));
            let spec = crate::postgres::read::PgTableSpec {
                url: interpolate(&pg.url, params, keep_env)?,
                relation: crate::postgres::relation(pg.table.as_deref(), pg.query.as_deref()),
                what: pg.table.as_ref().map_or("query".to_string(), |t| format!("table {t}")),
                partition_column: pg.partition_column.clone(),
                partitions: pg.partitions,
                lower_bound: pg.lower_bound,
                upper_bound: pg.upper_bound,
            };
            let table = crate::postgres::read::PgTable::new(spec, source.schema.clone());
            ctx.read_table(std::sync::Arc::new(table))?.into_unoptimized_plan()
        }
        SourceFormat::Delta(travel) => {
            let location = interpolate(&source.path, params, env)?;
            let provider = delta::provider(ctx, &location, travel, &source.schema).await?;
            // The pinned columns, as pinned: columns added to the table since `kiln check`
            // are not read, and partition values come out of their dictionaries.
            let found = provider.schema();
            let columns: Vec<datafusion::logical_expr::Expr> = source
                .schema
                .fields()
                .iter()
                .map(|f| {
                    let c = datafusion::logical_expr::col(datafusion::common::Column::new_unqualified(f.name()));
                    match found.field_with_name(f.name()) {
                        Ok(have) if have.data_type() != f.data_type() => datafusion::logical_expr::cast(c, f.data_type().clone()).alias(f.name()),
                        _ => c,
                    }
                })
                .collect();
            ctx.read_table(provider)?.select(columns)?.into_unoptimized_plan()
        }
        _ => {
            let mut path = match read_from {
                Some(p) => p.to_string(),
                None => interpolate(&source.path, params, env)?,
            };
            // A prefix on an object store is read as a directory: DataFusion decides
            // by a trailing `/` (without one it first asks for an object by that name).
            if crate::storage::is_remote(&path) && !path.ends_with('/') && !path.contains(['*', '?', '[']) && crate::storage::is_prefix(&path).await? {
                path.push('/');
            }
            files::scan(ctx, &path, source).await?
        }
    };
    Ok(LogicalPlanBuilder::from(plan).alias(name)?.build()?)
}

/// A local path that names nothing fails the run (as Spark's "Path does not
/// exist"), rather than reading no rows. A glob's fixed prefix must exist; an
/// existing but empty directory is zero rows.
pub fn must_exist(path: &str) -> Result<()> {
    if path.contains("://") {
        return Ok(());
    }
    let fixed = match path.find(['*', '?', '[']) {
        Some(i) => path[..i].rsplit_once('/').map_or(".", |(dir, _)| if dir.is_empty() { "/" } else { dir }),
        None => path,
    };
    if std::path::Path::new(fixed).exists() {
        Ok(())
    } else {
        Err(crate::Error::Read { path: path.to_string(), message: "no such file or directory".into() })
    }
}

/// Whether `name` matches `pattern`: `*` is any run of characters but `/`, `?`
/// one character, `[abc]` one of those; the rest literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != '/').any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => match p.iter().position(|&c| c == ']') {
                Some(end) if !n.is_empty() => p[1..end].contains(&n[0]) && go(&p[end + 1..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// A directory source reads the files ending in the format's extension
/// (`.csv`, `.parquet`, …). A data file without one (`part-00000`, as Hadoop
/// tools write) would be skipped silently: it fails the run before anything
/// is read, naming it. Hidden (`.x`) and marker (`_SUCCESS`) files are not data.
pub fn no_skipped_files(path: &str, format: &SourceFormat) -> Result<()> {
    let p = std::path::Path::new(path);
    let ext = match format {
        SourceFormat::Csv(_) => "csv",
        SourceFormat::Parquet => "parquet",
        SourceFormat::Json => "json",
        SourceFormat::Avro => "avro",
        SourceFormat::Orc => "orc",
        SourceFormat::Inline(_) | SourceFormat::Postgres(_) | SourceFormat::Delta(_) | SourceFormat::Kafka(_) => return Ok(()),
    };
    if path.contains("://") || !p.is_dir() {
        return Ok(());
    }
    let skipped: Vec<String> = files_under(p, None)
        .into_iter()
        .filter(|f| f.extension().is_none_or(|x| x != ext))
        .filter(|f| !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(['.', '_'])))
        .map(|f| f.display().to_string())
        .collect();
    match skipped.first() {
        None => Ok(()),
        Some(first) => Err(crate::Error::Read {
            path: path.to_string(),
            message: format!(
                "{} file(s) in it do not end in .{ext} and would not be read, e.g. {first}; rename them, or name them with a glob (path = \"{path}/*\")",
                skipped.len()
            ),
        }),
    }
}

/// An empty plan with the source's pinned schema: what `kiln check` plans against.
pub fn empty(name: &str, source: &Source) -> Result<LogicalPlan> {
    let schema = datafusion::common::DFSchema::try_from(source.schema.as_ref().clone())?;
    let plan = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: std::sync::Arc::new(schema),
    });
    Ok(LogicalPlanBuilder::from(plan).alias(name)?.build()?)
}

/// The file-name ending a listing should filter on: none for a single file or a
/// glob (take what the user named), `default` for a directory.
fn listing_extension<'a>(path: &str, default: &'a str) -> &'a str {
    let is_dir = path.ends_with('/') || std::path::Path::new(path).is_dir();
    if is_dir { default } else { "" }
}

/// The files a source path names: the file itself, or the files under a
/// directory (partition directories included; hidden files such as staging
/// leftovers skipped), sorted; only those ending in `.ext` when given.
pub fn files_under(path: &std::path::Path, ext: Option<&str>) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    // A glob: the files under its fixed prefix that match it.
    let text = path.to_string_lossy();
    if let Some(i) = text.find(['*', '?', '[']) {
        let dir = text[..i].rsplit_once('/').map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
        return files_under(std::path::Path::new(dir), ext).into_iter().filter(|f| glob_match(&text, &f.to_string_lossy())).collect();
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    // A directory reached twice (a symlink cycle, or two links to one place) is listed once.
    let mut seen = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir.canonicalize().unwrap_or_else(|_| dir.clone())) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && ext.is_none_or(|ext| p.extension().is_some_and(|x| x == ext))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
