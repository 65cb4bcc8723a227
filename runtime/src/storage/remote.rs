//! Committing a sink on an object store, which has no rename.
//!
//! A run writes its part files under `TARGET/_kiln_staging/RUN/` (hidden: a
//! `_` name is skipped by Kiln, DataFusion, Spark and Hive readers alike). When
//! every sink of the run is staged, each object-store sink commits:
//!
//! 1. every staged object is copied (server side) to its place under `TARGET/`;
//!    the names are new (DataFusion's parts, and Kiln's Avro parts, carry a
//!    write id), so no committed file is overwritten; a target Kiln has not
//!    committed before first gets a manifest naming what it holds. On a
//!    cluster, parts are staged per task attempt (`RUN/ATTEMPT/…`) and only the
//!    attempts that succeeded are copied, without their attempt directory: a
//!    task rerun because its executor died leaves the lost attempt's parts
//!    behind, never in the output ([`crate::sinks::files_write`]);
//! 2. `TARGET/_kiln_manifest.json` is written in one PUT, naming every file of
//!    the new output (for `append`, the old ones too): this is the commit point;
//! 3. `TARGET/_SUCCESS` is written (for tools that wait for Hadoop's marker);
//! 4. files the manifest does not name (the replaced output) are deleted, and
//!    the staging prefix with them.
//!
//! A run killed anywhere leaves either the old manifest or the new one; the
//! next run that writes the target finishes the job (removes staging
//! leftovers and every file its manifest does not name) before anything else.
//! Kiln's readers list through the manifest ([`super::manifest`]), so they see
//! the old output or the new, never a mix. A reader that ignores the manifest
//! (Spark, DuckDB, `aws s3 ls`) sees, during step 1 to 4 of a commit or after a
//! run killed in them, the old files and the new side by side; outside those
//! windows exactly one output.
//!
//! One writer per target at a time (as with Spark's committers): object stores
//! offer no lock Kiln can rely on across providers, and two runs committing the
//! same target at once may delete each other's files. A single-file sink is one
//! server-side copy of a staged object, atomic by itself.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::Location;
use super::manifest::{self, MANIFEST, Manifest};
use crate::plan::WriteMode;
use crate::{Error, Result};

/// The hidden prefix staged parts are written under.
pub const STAGING: &str = "_kiln_staging";

/// Concurrent requests of one commit step.
const CONCURRENCY: usize = 16;

/// A sink's target on an object store.
#[derive(Debug, Clone)]
pub struct Target {
    pub loc: Location,
    /// The target is one object, not a prefix of part files.
    pub single_file: bool,
}

impl Target {
    pub fn new(loc: Location, single_file: bool) -> Self {
        Target { loc, single_file }
    }

    /// The prefix staged output goes under: beside a single file, inside a directory.
    fn staging_root(&self) -> Location {
        if self.single_file { self.loc.parent().join(STAGING) } else { self.loc.join(STAGING) }
    }

    /// Where this run writes: a prefix of parts, or the staged single object.
    pub fn staging(&self, run: &str) -> Location {
        let dir = self.staging_root().join(run);
        if self.single_file {
            let name = self.loc.url.rsplit('/').next().unwrap_or("data");
            dir.join(name)
        } else {
            dir
        }
    }

    /// Whether the target holds output (for `error_if_exists` and `ignore`).
    pub async fn exists(&self) -> Result<bool> {
        if self.single_file {
            return Ok(self.loc.head().await?.is_some());
        }
        Ok(self.loc.list_all().await?.iter().any(|(rel, _)| !rel.starts_with(STAGING)))
    }

    /// Finishes what a killed run left: staged parts are removed, and a target
    /// with a manifest loses every file the manifest does not name.
    pub async fn recover(&self) -> Result<()> {
        let root = self.staging_root();
        let name = self.loc.url.rsplit('/').next().unwrap_or_default().to_string();
        let leftovers: Vec<_> = root
            .list_all()
            .await?
            .into_iter()
            .filter(|(rel, _)| !self.single_file || rel.ends_with(&format!("/{name}")))
            .map(|(_, m)| m.location)
            .collect();
        delete(&self.loc, leftovers).await?;
        if self.single_file {
            return Ok(());
        }
        if let Some(m) = manifest::read(self.loc.raw.as_ref(), &self.loc.path).await.map_err(|e| super::read_error(&self.loc.url, e))? {
            let named: BTreeSet<String> = m.files.into_iter().collect();
            let strays = self.loc.list_all().await?.into_iter().filter(|(rel, _)| is_data(rel) && !named.contains(rel)).map(|(_, m)| m.location).collect();
            delete(&self.loc, strays).await?;
        }
        Ok(())
    }

    /// Moves the output staged at `staging` into place (see the module's protocol):
    /// [`Target::prepare`], then [`Prepared::publish`]. `partition_depth` is the
    /// number of `key=value` directory levels (for `overwrite_partitions`).
    /// `attempts`: the output was staged per task attempt (`staging/ATTEMPT/…`),
    /// and only these attempts are committed.
    pub async fn commit(&self, staging: &Location, mode: WriteMode, rows: u64, run: &str, partition_depth: usize, attempts: Option<&[String]>) -> Result<()> {
        self.prepare(staging, mode, rows, run, partition_depth, attempts).await?.publish().await
    }

    /// Step 1 of the commit: the staged parts copied to their places under the
    /// target, which no reader of the manifest sees yet. [`Prepared::publish`]
    /// makes them the output; [`Prepared::undo`] deletes them (a run whose other
    /// sink failed after this one was prepared).
    pub async fn prepare(&self, staging: &Location, mode: WriteMode, rows: u64, run: &str, partition_depth: usize, attempts: Option<&[String]>) -> Result<Prepared> {
        let prepared = |files: BTreeSet<String>, existing: Vec<(String, object_store::ObjectMeta)>, copies: Vec<String>| Prepared {
            target: self.clone(),
            staging: staging.clone(),
            run: run.to_string(),
            rows,
            files,
            existing,
            copies,
        };
        if self.single_file {
            // One server-side copy is the whole commit, made by `publish`.
            return Ok(prepared(BTreeSet::new(), Vec::new(), Vec::new()));
        }
        let existing = self.loc.list_all().await?;
        let old: Vec<String> = match manifest::read(self.loc.raw.as_ref(), &self.loc.path).await.map_err(|e| super::read_error(&self.loc.url, e))? {
            Some(m) => m.files,
            None => {
                // A target Kiln has not committed yet: a manifest naming what is there
                // now comes first, so parts copied by a run killed in step 1 are known
                // strays to the next run (and invisible to readers), not adopted output.
                let files: Vec<String> = existing.iter().map(|(rel, _)| rel.clone()).filter(|rel| is_data(rel)).collect();
                write_manifest(&self.loc, &Manifest { version: 1, run: String::new(), files: files.clone(), rows: 0 }).await?;
                files
            }
        };
        // (staged, committed) relative paths.
        let staged: Vec<(String, String)> = staging
            .list_all()
            .await?
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| !rel.is_empty())
            .filter_map(|rel| match attempts {
                None => Some((rel.clone(), rel)),
                Some(attempts) => {
                    let (attempt, part) = rel.split_once('/')?;
                    attempts.iter().any(|a| a == attempt).then(|| (rel.clone(), part.to_string()))
                }
            })
            .collect();
        let new: Vec<String> = staged.iter().map(|(_, to)| to.clone()).collect();
        let keep: Vec<String> = match mode {
            WriteMode::Append => old.clone(),
            WriteMode::OverwritePartitions => {
                let replaced: BTreeSet<&str> = new.iter().map(|f| partition_of(f, partition_depth)).collect();
                old.iter().filter(|f| !replaced.contains(partition_of(f, partition_depth))).cloned().collect()
            }
            _ => Vec::new(),
        };
        // The copies that are new objects (an undo deletes only these).
        let copies: Vec<String> = new.iter().filter(|rel| !existing.iter().any(|(r, _)| r == *rel)).cloned().collect();
        // 1. Copy the staged parts into place.
        let raw = self.loc.raw.clone();
        let copied = futures::stream::iter(staged.iter().map(|(from, to)| {
            let (from, to) = (staging.join(from).path, self.loc.join(to).path);
            let raw = raw.clone();
            async move { raw.copy(&from, &to).await }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await;
        if let Err(e) = copied {
            // The copies are strays (the manifest does not name them): removed now, or by the next run.
            let _ = delete(&self.loc, copies.iter().map(|rel| self.loc.join(rel).path).collect()).await;
            return Err(super::read_error(&self.loc.url, e));
        }
        let files: BTreeSet<String> = keep.into_iter().chain(new).collect();
        Ok(prepared(files, existing, copies))
    }

    /// Removes a run's staged output.
    pub async fn abort(&self, staging: &Location) -> Result<()> {
        if self.single_file {
            return delete(&self.loc, vec![staging.path.clone()]).await;
        }
        let staged = staging.list_all().await?.into_iter().map(|(_, m)| m.location).collect();
        delete(&self.loc, staged).await
    }
}

/// Writes a target's manifest in one PUT.
/// An object-store sink whose parts are in place and not yet its output
/// ([`Target::prepare`]).
#[derive(Debug)]
pub struct Prepared {
    target: Target,
    staging: Location,
    run: String,
    rows: u64,
    /// The files the new manifest names.
    files: BTreeSet<String>,
    /// What the target held before (its files are deleted unless the manifest names them).
    existing: Vec<(String, object_store::ObjectMeta)>,
    /// The copies step 1 made.
    copies: Vec<String>,
}

impl Prepared {
    /// Steps 2 to 4: the manifest naming the new output (the commit point), then
    /// `_SUCCESS`, the replaced files and the staging prefix deleted.
    pub async fn publish(self) -> Result<()> {
        let Prepared { target, staging, run, rows, files, existing, .. } = self;
        let loc = &target.loc;
        if target.single_file {
            loc.raw.copy(&staging.path, &loc.path).await.map_err(|e| super::read_error(&loc.url, e))?;
            // Committed: a staged object left behind is removed by the next run.
            if let Err(e) = delete(loc, vec![staging.path.clone()]).await {
                eprintln!("warning: {} is committed, but removing its staged copy failed ({e}); the next run that writes it finishes", crate::redact::text(&loc.url));
            }
            return Ok(());
        }
        // 2. The commit point: the manifest names the new output.
        write_manifest(loc, &Manifest { version: 1, run, files: files.iter().cloned().collect(), rows }).await?;
        // 3 and 4 tidy up after the commit point: a failure there is a warning (the output
        // is committed; the next run that writes the target finishes the cleanup).
        let tidy = async {
            loc.raw.put(&loc.path.clone().join("_SUCCESS"), PutPayload::default()).await.map_err(|e| super::read_error(&loc.url, e))?;
            let gone: Vec<_> = existing.into_iter().filter(|(rel, _)| is_data(rel) && !files.contains(rel)).map(|(_, m)| m.location).collect();
            delete(loc, gone).await?;
            target.abort(&staging).await
        };
        if let Err(e) = tidy.await {
            eprintln!("warning: {} is committed, but cleaning up after it failed ({e}); the next run that writes it finishes", crate::redact::text(&loc.url));
        }
        Ok(())
    }

    /// Deletes the copies and the staged parts: the target keeps its output. What a
    /// failed delete leaves are strays its manifest does not name, which the next run
    /// that writes the target removes.
    pub async fn undo(self) {
        let loc = &self.target.loc;
        let _ = delete(loc, self.copies.iter().map(|rel| loc.join(rel).path).collect()).await;
        let _ = self.target.abort(&self.staging).await;
    }
}

async fn write_manifest(loc: &Location, m: &Manifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(m).map_err(|e| Error::Usage(format!("manifest: {e}")))?;
    loc.raw.put(&loc.path.clone().join(MANIFEST), PutPayload::from(body)).await.map_err(|e| super::read_error(&loc.url, e)).map(drop)
}

/// A relative path that is data: not staging, not a manifest or marker.
fn is_data(rel: &str) -> bool {
    !rel.is_empty() && !rel.starts_with(STAGING) && !rel.rsplit('/').next().is_some_and(manifest::is_bookkeeping)
}

/// The `key=value/...` directories of a part file, `depth` levels deep.
fn partition_of(file: &str, depth: usize) -> &str {
    let mut end = 0;
    for (i, _) in file.match_indices('/').take(depth) {
        end = i;
    }
    &file[..end]
}

async fn delete(loc: &Location, paths: Vec<object_store::path::Path>) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
    // An object already gone (removed by an earlier, interrupted attempt) is fine.
    loc.raw
        .delete_stream(stream)
        .map(|r| match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        })
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
        .map_err(|e| super::read_error(&loc.url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_the_leading_directories() {
        assert_eq!(partition_of("day=1/kind=a/x.parquet", 2), "day=1/kind=a");
        assert_eq!(partition_of("day=1/kind=a/x.parquet", 1), "day=1");
        assert_eq!(partition_of("x.parquet", 0), "");
        assert!(is_data("day=1/x.parquet") && !is_data("_kiln_manifest.json") && !is_data("_kiln_staging/r/x.parquet") && !is_data("_SUCCESS"));
    }

    /// A cluster's commit copies the parts of the attempts that succeeded, without
    /// their attempt directory, and none of a lost attempt's; staging is emptied.
    #[tokio::test]
    async fn only_successful_attempts_are_committed() {
        let raw: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(object_store::memory::InMemory::new());
        let loc = Location { url: "s3://b/out".into(), store: raw.clone(), raw: raw.clone(), path: "out".into() };
        let target = Target::new(loc.clone(), false);
        let staging = target.staging("run1");
        for part in ["attempt-lost/day=1/a.parquet", "attempt-ok/day=1/b.parquet", "attempt-ok/day=2/c.parquet"] {
            raw.put(&staging.join(part).path, PutPayload::from_static(b"x")).await.unwrap();
        }
        target.commit(&staging, WriteMode::Overwrite, 3, "run1", 1, Some(&["attempt-ok".to_string()])).await.unwrap();
        let mut listed: Vec<String> = loc.list_all().await.unwrap().into_iter().map(|(rel, _)| rel).collect();
        listed.sort();
        assert_eq!(listed, ["_SUCCESS", "_kiln_manifest.json", "day=1/b.parquet", "day=2/c.parquet"]);
        let m = manifest::read(raw.as_ref(), &loc.path).await.unwrap().unwrap();
        assert_eq!(m.files, ["day=1/b.parquet", "day=2/c.parquet"]);
    }
}
