//! Moving staged output into place.
//!
//! `overwrite`: the old target is renamed aside, the staging path renamed onto
//! the target, then the old one removed. Both renames are within one directory,
//! so each is atomic; between them the target is briefly absent, never partial.
//! `append`: staged part files (and partition directories) are moved into the
//! existing target one by one; their names are unique per write.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::plan::WriteMode;
use crate::{Error, Result};

const STAGING: &str = "kiln-staging";
pub(super) const OLD: &str = "kiln-old";

pub(super) fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Usage(format!("sink path `{}` has no file name", target.display())))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.{tag}-{}-{nanos}", name.to_string_lossy(), std::process::id())))
}

/// A fresh staging path beside `target` (its parent directory is created).
pub fn staging_path(target: &Path) -> Result<PathBuf> {
    let path = sibling(target, STAGING)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    Ok(path)
}

/// Holds `target` for this run: an exclusive lock on `.NAME.kiln-lock` beside
/// it, held until the returned guard is dropped (or the process dies), which
/// also removes the file. A second run writing the same target fails at once
/// with a clear message, before it reads or touches anything; staging left
/// beside a target whose lock is free belongs to a run that is gone.
pub fn lock(sink: &str, target: &Path) -> Result<TargetLock> {
    use std::os::unix::fs::MetadataExt;
    let (Some(name), Some(parent)) = (target.file_name(), target.parent()) else {
        return Err(Error::Sink { sink: sink.to_string(), message: format!("{} is not a path to write", target.display()) });
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let path = parent.join(format!(".{}.kiln-lock", name.to_string_lossy()));
    loop {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Sink {
                    sink: sink.to_string(),
                    message: format!("another run is writing {} (it holds {}); wait for it to finish, or stop it", target.display(), path.display()),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
        // The holder before us removes the file as it finishes: a lock on a removed
        // file is no lock; take the one now at the path.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(TargetLock { path, _file: file });
        }
    }
}

/// A target held by this run (see [`lock`]).
#[derive(Debug)]
pub struct TargetLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still held; the lock goes with the file handle right after.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes staging and set-aside paths that killed runs left beside `target`.
pub fn clean_stale_staging(target: &Path) {
    let (Some(name), Some(parent)) = (target.file_name(), target.parent()) else { return };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = file.strip_prefix(&prefix) {
            if rest.starts_with(STAGING) {
                remove(&entry.path());
            } else if rest.starts_with(OLD) && !target.exists() {
                // Killed between the two renames of an overwrite: bring the old output back.
                let _ = std::fs::rename(entry.path(), target);
            } else if rest.starts_with(OLD) {
                remove(&entry.path());
            }
        }
    }
}

/// A cluster's write staged per task attempt (`staging/ATTEMPT/…`, see
/// [`super::files_write`]): the parts of `attempts` (those that succeeded) move
/// up to `staging/…`, and every attempt directory goes, lost attempts' with it.
pub(super) fn keep_attempts(staging: &Path, attempts: &[String]) -> Result<()> {
    fn lift(from: &Path, to: &Path) -> Result<()> {
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(format!("listing {}", from.display()), e))? {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
            let dest = to.join(entry.file_name());
            if entry.path().is_dir() {
                std::fs::create_dir_all(&dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
                lift(&entry.path(), &dest)?;
            } else {
                rename(&entry.path(), &dest)?;
            }
        }
        Ok(())
    }
    for attempt in attempts {
        let dir = staging.join(attempt);
        if dir.is_dir() {
            lift(&dir, staging)?;
        }
    }
    let entries = std::fs::read_dir(staging).map_err(|e| Error::io(format!("listing {}", staging.display()), e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(super::files_write::ATTEMPT_PREFIX) {
            remove(&entry.path());
        }
    }
    Ok(())
}

pub(super) fn remove(path: &Path) {
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

pub(super) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))
}

pub(super) fn commit(staging: &Path, target: &Path, mode: WriteMode) -> Result<()> {
    if mode == WriteMode::Append && target.is_dir() && staging.is_dir() {
        merge_into(staging, target)?;
        remove(staging);
        return Ok(());
    }
    if mode == WriteMode::Append && target.exists() {
        remove(staging);
        return Err(Error::Usage(format!(
            "cannot append to {}: it is a single file (append needs a directory of part files)",
            target.display()
        )));
    }
    if target.exists() {
        let old = sibling(target, OLD)?;
        rename(target, &old)?;
        if let Err(e) = rename(staging, target) {
            let _ = std::fs::rename(&old, target);
            return Err(e);
        }
        remove(&old);
    } else {
        rename(staging, target)?;
    }
    Ok(())
}

fn merge_into(from: &Path, into: &Path) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        let dest = into.join(entry.file_name());
        if entry.path().is_dir() && dest.is_dir() {
            merge_into(&entry.path(), &dest)?;
        } else {
            rename(&entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// For `overwrite_partitions`: every file of `target` in a partition (its first
/// `depth` `key=value` directories) that the staged output does not hold is
/// hard-linked (or, across file systems, copied) into `staging`, which then
/// replaces the target whole: the untouched partitions survive, the commit
/// stays one atomic rename. Files outside partition directories are kept too.
pub(super) fn keep_other_partitions(target: &Path, staging: &Path, depth: usize) -> Result<()> {
    if !target.is_dir() {
        return Ok(());
    }
    let partition = |rel: &Path| -> PathBuf { rel.components().take(depth).collect() };
    let staged: std::collections::HashSet<PathBuf> = super::journal::relative_files(staging, staging).iter().map(|r| partition(r)).collect();
    for rel in super::journal::relative_files(target, target) {
        let hidden = rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        let in_partition = rel.components().count() > depth;
        if hidden || (in_partition && staged.contains(&partition(&rel))) {
            continue;
        }
        let (from, to) = (target.join(&rel), staging.join(&rel));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn overwrite_replaces_whole_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        write(&target.join("old.parquet"), "old");
        let staging = staging_path(&target).unwrap();
        write(&staging.join("k=1/new.parquet"), "new");
        commit(&staging, &target, WriteMode::Overwrite).unwrap();
        assert!(!target.join("old.parquet").exists());
        assert_eq!(std::fs::read_to_string(target.join("k=1/new.parquet")).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn append_merges_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        write(&target.join("k=1/a.parquet"), "a");
        let staging = staging_path(&target).unwrap();
        write(&staging.join("k=1/b.parquet"), "b");
        write(&staging.join("k=2/c.parquet"), "c");
        commit(&staging, &target, WriteMode::Append).unwrap();
        for f in ["k=1/a.parquet", "k=1/b.parquet", "k=2/c.parquet"] {
            assert!(target.join(f).exists(), "{f}");
        }
        assert!(!staging.exists());
    }

    #[test]
    fn stale_staging_is_cleaned_and_interrupted_overwrite_restored() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let stale = sibling(&target, STAGING).unwrap();
        write(&stale.join("part.parquet"), "half");
        let old = sibling(&target, OLD).unwrap();
        write(&old.join("part.parquet"), "previous");
        clean_stale_staging(&target);
        assert!(!stale.exists());
        assert_eq!(std::fs::read_to_string(target.join("part.parquet")).unwrap(), "previous");
    }
}
