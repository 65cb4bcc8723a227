//! A run's commit is all-or-nothing across a crash.
//!
//! Every sink is staged beside its target first. Then, in order:
//!
//! 1. every staged file and directory is fsynced (a power loss cannot lose
//!    what is about to be committed);
//! 2. the journal — per target: its staging path, where its old output goes
//!    aside, whether it existed, and (append) the files to move in — is written
//!    to a temporary file, fsynced and renamed to `.FIRST.kiln-journal` beside
//!    the first target;
//! 3. each sink is moved into place (overwrite: target aside, staging onto the
//!    target; append: the staged part files into the target), each directory
//!    fsynced;
//! 4. the journal is marked done (rewritten and renamed again): **the commit
//!    point**;
//! 5. the old outputs are removed, then the journal.
//!
//! A run that starts while a journal exists (its targets locked) first settles
//! it: marked done, the removal of old outputs is finished; not done, every
//! move is undone — new outputs removed, old ones put back, appended files
//! taken out — so the targets hold exactly what they held before the killed
//! run. A scheduler's retry then writes its output once (an append is not
//! doubled). A crash before step 2 leaves no journal; the next run removes the
//! staging (`clean_stale_staging`).
//!
//! `KILN_FAULT=before-journal | after-journal | after-commit-N | after-done`
//! makes the process abort at that point (fault-injection tests), and so do
//! `staged` (every sink staged: Delta files written and held, nothing
//! committed) and `prepared` (object-store parts copied into place, no
//! manifest written) in `run::commit_staged`; it is read nowhere else.
//! `KILN_PAUSE=POINT:MS` waits there instead (a concurrent writer in a test).

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
    /// Where an overwritten target's old output is moved aside.
    old: PathBuf,
    /// Whether the target existed before this run.
    existed: bool,
    /// Append: the staged files, relative to the staging directory.
    files: Vec<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    entries: Vec<Entry>,
    /// Every move is done: the run is committed.
    done: bool,
}

/// Where the journal of a run writing `targets` lives: beside the first of them (in name order).
pub fn path(targets: &[PathBuf]) -> Option<PathBuf> {
    let first = targets.iter().min()?;
    let name = first.file_name()?.to_string_lossy().into_owned();
    let parent = first.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.join(format!(".{name}.kiln-journal")))
}

/// Aborts the process when `KILN_FAULT` names this point; waits when
/// `KILN_PAUSE=POINT:MS` does (a test's concurrent writer acts meanwhile).
pub fn fault(point: &str) {
    if std::env::var("KILN_FAULT").is_ok_and(|f| f == point) {
        eprintln!("KILN_FAULT={point}: aborting");
        std::process::abort();
    }
    if let Some(ms) = std::env::var("KILN_PAUSE").ok().and_then(|p| p.strip_prefix(point)?.strip_prefix(':')?.parse::<u64>().ok()) {
        eprintln!("KILN_PAUSE={point}: waiting {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Settles the commit of a run that was killed during it (see the module docs).
pub fn recover(journal: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(journal) else { return Ok(()) };
    let parsed: Journal = serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: unreadable commit journal ({e}); remove it after checking its targets", journal.display())))?;
    if parsed.done {
        for e in &parsed.entries {
            commit::remove(&e.old);
        }
        eprintln!("finished the commit of an interrupted run ({} sink(s))", parsed.entries.len());
    } else {
        for e in parsed.entries.iter().rev() {
            undo(e)?;
            sync_parent(&e.target);
        }
        eprintln!("rolled back the commit of an interrupted run: {} sink(s) hold their previous output", parsed.entries.len());
    }
    std::fs::remove_file(journal).map_err(|err| Error::io(format!("removing {}", journal.display()), err))?;
    sync_parent(journal);
    Ok(())
}

/// Puts one entry's target back as it was before the run.
fn undo(e: &Entry) -> Result<()> {
    if e.append {
        for f in &e.files {
            let (moved, staged) = (e.target.join(f), e.staging.join(f));
            if moved.exists() && !staged.exists() {
                commit::remove(&moved);
            }
        }
        commit::remove(&e.staging);
        return Ok(());
    }
    if e.old.exists() {
        // Aside (and maybe replaced): the old output goes back.
        if e.target.exists() {
            commit::remove(&e.target);
        }
        commit::rename(&e.old, &e.target)?;
    } else if !e.existed && !e.staging.exists() && e.target.exists() {
        // A target this run created.
        commit::remove(&e.target);
    }
    commit::remove(&e.staging);
    Ok(())
}

/// Commits `(staging, target, mode)` moves all-or-nothing across a crash.
pub fn commit_all(journal: &Path, moves: &[(PathBuf, PathBuf, WriteMode)]) -> Result<()> {
    let mut entries = Vec::new();
    for (staging, target, mode) in moves {
        sync_tree(staging)?;
        let append = *mode == WriteMode::Append && target.is_dir() && staging.is_dir();
        if *mode == WriteMode::Append && target.exists() && !append {
            return Err(Error::Usage(format!("cannot append to {}: it is a single file (append needs a directory of part files)", target.display())));
        }
        let files = if append { relative_files(staging, staging) } else { Vec::new() };
        entries.push(Entry { target: target.clone(), staging: staging.clone(), append, old: commit::sibling(target, commit::OLD)?, existed: target.exists(), files });
    }
    fault("before-journal");
    let mut record = Journal { entries, done: false };
    write_journal(journal, &record)?;
    fault("after-journal");
    if let Err(e) = move_all(&record) {
        // An error mid-way (a failed rename): undo what moved, now.
        let _ = recover(journal);
        return Err(e);
    }
    record.done = true;
    write_journal(journal, &record)?;
    fault("after-done");
    for e in &record.entries {
        commit::remove(&e.old);
    }
    std::fs::remove_file(journal).map_err(|e| Error::io(format!("removing {}", journal.display()), e))?;
    sync_parent(journal);
    Ok(())
}

fn move_all(record: &Journal) -> Result<()> {
    for (n, e) in record.entries.iter().enumerate() {
        if e.append {
            for f in &e.files {
                let dest = e.target.join(f);
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir).map_err(|err| Error::io(format!("creating {}", dir.display()), err))?;
                }
                commit::rename(&e.staging.join(f), &dest)?;
            }
            commit::remove(&e.staging);
        } else {
            if e.existed {
                commit::rename(&e.target, &e.old)?;
            }
            commit::rename(&e.staging, &e.target)?;
        }
        sync_parent(&e.target);
        fault(&format!("after-commit-{}", n + 1));
    }
    Ok(())
}

/// Files under `dir`, relative to `root`, in name order.
pub(super) fn relative_files(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(relative_files(root, &p));
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
    out
}

fn write_journal(journal: &Path, record: &Journal) -> Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(|e| Error::Usage(e.to_string()))?;
    let tmp = journal.with_extension("kiln-journal-tmp");
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, journal).map_err(|e| Error::io(format!("writing {}", journal.display()), e))?;
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
