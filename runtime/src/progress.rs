//! Progress on the terminal (SPEC §10: "long runs show progress"): one line on
//! stderr, redrawn every quarter second, with the time so far and the rows each
//! sink has received, so a long run never looks hung:
//!
//! ```text
//! etl: 12.4 s · by_category 1,204,331 rows, 61.2 MB · ~8 s left (sources 61%)
//! ```
//!
//! The estimate of what remains needs the input's size: when every source is
//! a local Parquet file or directory, their footers give the rows (read in the
//! background as the run starts), each source's marker counts the rows it has
//! produced, and the time left is the time so far scaled by the share not yet
//! read. Reading is most of a typical job; what follows the last row (a
//! sort's merge, the commit) is not in the estimate, and once every row is read
//! the line says `sources read`. No estimate for CSV/JSON (their row count is
//! not known without reading them) or object stores.
//!
//! Shown when stderr is a terminal; `--quiet` or `KILN_PROGRESS=never` hides
//! it, `KILN_PROGRESS=always` shows it anyway (logs of CI jobs).
//! `KILN_PROGRESS_MS` sets the interval. The rows come from the counting marker
//! on top of each sink's plan ([`crate::node_metrics::mark_top`]); the line is
//! erased when the run ends. On a cluster (`submit`), the line comes from the
//! scheduler's job and stage status instead ([`Ticker::cluster`]): per sink,
//! its stage, the partitions done and the rows shuffled so far:
//!
//! ```text
//! etl: 8.1 s · by_category stage 2 of 3, 5/8 partitions, 1,204,331 rows (61.2 MB) shuffled
//! ```

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node_metrics::Registry;

/// Whether this run shows progress.
pub fn wanted(quiet: bool) -> bool {
    match std::env::var("KILN_PROGRESS").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => !quiet && std::io::stderr().is_terminal(),
    }
}

/// Redraws the line until dropped.
pub struct Ticker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    /// `sources`: every source's node and local Parquet path, when all are (for the estimate).
    pub fn start(name: String, registry: Arc<Registry>, started: Instant, sources: Option<Vec<(String, std::path::PathBuf)>>) -> Ticker {
        let every = interval_ms(250);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        // Rows per source node, from the footers (None until read, or when unknown).
        let totals: Arc<std::sync::Mutex<Option<Vec<(String, u64)>>>> = Arc::default();
        if let Some(sources) = sources.filter(|s| !s.is_empty()) {
            let totals = totals.clone();
            tokio::task::spawn_blocking(move || {
                let counted: Option<Vec<(String, u64)>> = sources.into_iter().map(|(node, path)| Some((node, parquet_rows(&path)?))).collect();
                *totals.lock().unwrap_or_else(|e| e.into_inner()) = counted;
            });
        }
        let task = tokio::spawn(async move {
            let draw = || {
                let elapsed = started.elapsed().as_secs_f64();
                let mut line = format!("{name}: {elapsed:.1} s");
                for (sink, rows, bytes) in registry.sink_rows() {
                    line.push_str(&format!(" · {sink} {} rows, {}", crate::report::thousands(rows), crate::report::human_bytes(bytes)));
                }
                if let Some(totals) = totals.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let total: u64 = totals.iter().map(|(_, t)| t).sum();
                    // A source read by several sinks counts each reading; at most its rows.
                    let read: u64 = totals.iter().map(|(node, t)| registry.node_rows(node).min(*t)).sum();
                    line.push_str(&estimate(elapsed, read, total));
                }
                show(&line);
            };
            let mut interval = tokio::time::interval(Duration::from_millis(every));
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = interval.tick() => draw(),
                }
            }
            // The final counts, drawn once before the line is erased (a terminal
            // recording shows where the run ended, however short it was).
            draw();
            show("");
        });
        Ticker { stop: Some(stop), task: Some(task) }
    }

    /// A cluster run's line: each job's stage and partitions, as the scheduler
    /// reports them (`cluster::status`), asked once a second (`KILN_PROGRESS_MS`).
    pub fn cluster(name: String, client: crate::cluster::status::Client, prefix: String, started: Instant) -> Ticker {
        let every = interval_ms(1000);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut jobs = Vec::new();
            let draw = |jobs: &[crate::cluster::status::JobStatus]| show(&format!("{name}: {:.1} s{}", started.elapsed().as_secs_f64(), crate::cluster::status::progress(jobs, &prefix)));
            let mut interval = tokio::time::interval(Duration::from_millis(every));
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = interval.tick() => {
                        // A failed ask keeps the last answer (the line still counts the time).
                        if let Ok(now) = client.jobs(&prefix).await {
                            jobs = now;
                        }
                        draw(&jobs);
                    }
                }
            }
            if let Ok(now) = client.jobs(&prefix).await {
                jobs = now;
            }
            draw(&jobs);
            show("");
        });
        Ticker { stop: Some(stop), task: Some(task) }
    }

    /// Stops and erases the line (before the run's summary lines are printed).
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Milliseconds between redraws: `KILN_PROGRESS_MS`, else `default` (at least 10).
fn interval_ms(default: u64) -> u64 {
    std::env::var("KILN_PROGRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(default).max(10)
}

/// Replaces the line on stderr with `line` (redacted; empty erases it).
fn show(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{}", crate::redact::text(line));
    let _ = err.flush();
}

/// The line's estimate: ` · ~N s left (sources P%)`, ` · sources read`, or
/// nothing while too little has been read to say (under 2%, or half a second).
pub fn estimate(elapsed: f64, read: u64, total: u64) -> String {
    if total == 0 {
        return String::new();
    }
    if read >= total {
        return " · sources read".into();
    }
    let share = read as f64 / total as f64;
    if share < 0.02 || elapsed < 0.5 {
        return String::new();
    }
    let left = elapsed * (1.0 - share) / share;
    let left = if left >= 90.0 { format!("{:.0} min", left / 60.0) } else { format!("{left:.0} s") };
    format!(" · ~{left} left (sources {:.0}%)", share * 100.0)
}

/// The sources whose rows are known before the run, for the estimate: every source
/// a local Parquet file or directory (their footers' counts), else none. Only then
/// are sources marked (see `node_metrics::Registry::sources`).
pub fn estimable_sources(pipeline: &crate::plan::Pipeline, values: &crate::params::Values, env: impl Fn(&str) -> Option<String> + Copy) -> Option<Vec<(String, std::path::PathBuf)>> {
    use crate::plan::{Op, SourceFormat};
    pipeline
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Source(s) => Some((n.name.clone(), s)),
            _ => None,
        })
        .map(|(name, s)| match s.format {
            SourceFormat::Parquet => crate::params::interpolate(&s.path, values, env).ok().filter(|p| !crate::storage::is_remote(p)).map(|p| (name, std::path::PathBuf::from(p))),
            _ => None,
        })
        .collect()
}

/// Rows in the Parquet file(s) at `path`, from their footers.
fn parquet_rows(path: &std::path::Path) -> Option<u64> {
    let files = crate::sources::files_under(path, Some("parquet"));
    if files.is_empty() {
        return None;
    }
    let mut rows = 0u64;
    for f in files {
        let file = std::fs::File::open(&f).ok()?;
        let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file).ok()?;
        rows += meta.file_metadata().num_rows().max(0) as u64;
    }
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::estimate;

    #[test]
    fn the_time_left_scales_the_time_so_far_by_the_share_not_read() {
        assert_eq!(estimate(10.0, 250, 1000), " · ~30 s left (sources 25%)");
        assert_eq!(estimate(60.0, 100, 1000), " · ~9 min left (sources 10%)");
        assert_eq!(estimate(5.0, 1000, 1000), " · sources read");
        assert_eq!(estimate(5.0, 10, 1000), "");
        assert_eq!(estimate(0.1, 500, 1000), "");
        assert_eq!(estimate(5.0, 0, 0), "");
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
