//! A run's commit is all-or-nothing across a crash.
//!
//! Every sink is staged beside its target first. Then, in order:
//!
//! 1. every staged file and directory is fsynced (a power loss cannot lose
//!    what is about to be committed);
//! 2. the journal — each target with its staging path and mode — is written
//!    to a temporary file, fsynced, and renamed to `.FIRST.kiln-journal` beside
//!    the first target: **the commit point**;
//! 3. each sink is moved into place (renames, then the parent directory fsynced);
//! 4. the journal is removed.
//!
//! A run that starts while a journal exists (its targets locked) first rolls it
//! forward: every entry whose staging path still exists is moved into place
//! (an overwrite not yet renamed, or the part files of an append not yet
//! moved). A crash before the commit point leaves no journal: the staged
//! output is thrown away and the previous output restored (`clean_stale_staging`).
//! Either way the targets hold the complete old or the complete new output.
//!
//! `KILN_FAULT=before-journal | after-journal | after-commit-N` makes the
//! process abort at that point (fault-injection tests); it is read nowhere else.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::commit;
use crate::plan::WriteMode;
use crate::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    target: PathBuf,
    staging: PathBuf,
    append: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    entries: Vec<Entry>,
}

/// Where the journal of a run writing `targets` lives: beside the first of them (in name order).
pub fn path(targets: &[PathBuf]) -> Option<PathBuf> {
    let first = targets.iter().min()?;
    let name = first.file_name()?.to_string_lossy().into_owned();
    let parent = first.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.join(format!(".{name}.kiln-journal")))
}

/// Aborts the process when `KILN_FAULT` names this point.
pub fn fault(point: &str) {
    if std::env::var("KILN_FAULT").is_ok_and(|f| f == point) {
        eprintln!("KILN_FAULT={point}: aborting");
        std::process::abort();
    }
}

/// Completes a commit a killed run had reached the commit point of.
pub fn recover(journal: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(journal) else { return Ok(()) };
    let parsed: Journal = serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: unreadable commit journal ({e}); remove it after checking its targets", journal.display())))?;
    let mut done = 0;
    for e in &parsed.entries {
        if e.staging.exists() {
            commit::commit(&e.staging, &e.target, if e.append { WriteMode::Append } else { WriteMode::Overwrite })?;
            sync_parent(&e.target);
            done += 1;
        }
    }
    std::fs::remove_file(journal).map_err(|err| Error::io(format!("removing {}", journal.display()), err))?;
    sync_parent(journal);
    eprintln!("completed the commit of an interrupted run ({done} of {} sink(s) were still to move)", parsed.entries.len());
    Ok(())
}

/// Commits `(staging, target, mode)` moves all-or-nothing across a crash.
pub fn commit_all(journal: &Path, moves: &[(PathBuf, PathBuf, WriteMode)]) -> Result<()> {
    for (staging, _, _) in moves {
        sync_tree(staging)?;
    }
    fault("before-journal");
    let parsed = Journal { entries: moves.iter().map(|(s, t, m)| Entry { target: t.clone(), staging: s.clone(), append: *m == WriteMode::Append }).collect() };
    let text = serde_json::to_string_pretty(&parsed).map_err(|e| Error::Usage(e.to_string()))?;
    let tmp = journal.with_extension("kiln-journal-tmp");
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, journal).map_err(|e| Error::io(format!("writing {}", journal.display()), e))?;
    sync_parent(journal);
    fault("after-journal");
    for (n, (staging, target, mode)) in moves.iter().enumerate() {
        commit::commit(staging, target, *mode)?;
        sync_parent(target);
        fault(&format!("after-commit-{}", n + 1));
    }
    std::fs::remove_file(journal).map_err(|e| Error::io(format!("removing {}", journal.display()), e))?;
    sync_parent(journal);
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// fsyncs every file and directory under `path`.
fn sync_tree(path: &Path) -> Result<()> {
    let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| Error::io(format!("syncing {}", p.display()), e));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?.flatten() {
            sync_tree(&entry.path())?;
        }
    }
    sync(path)
}

/// fsyncs the directory holding `path` (so a rename in it is durable).
fn sync_parent(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}
