//! Progress on the terminal (SPEC §10: "long runs show progress"): one line on
//! stderr, redrawn every quarter second, with the time so far and the rows each
//! sink has received, so a long run never looks hung:
//!
//! ```text
//! etl: 12.4 s · by_category 1,204,331 rows · quality 1,204,331 rows
//! ```
//!
//! Shown when stderr is a terminal; `--quiet` or `KILN_PROGRESS=never` hides
//! it, `KILN_PROGRESS=always` shows it anyway (logs of CI jobs).
//! `KILN_PROGRESS_MS` sets the interval. The rows come from the counting marker
//! on top of each sink's plan ([`crate::node_metrics::mark_top`]); the line is
//! erased when the run ends. Local runs only: on a cluster the markers would
//! have to travel to the executors (no codec yet), so there is no line.

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
    pub fn start(name: String, registry: Arc<Registry>, started: Instant) -> Ticker {
        let every = std::env::var("KILN_PROGRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(250u64);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let draw = || {
                let mut line = format!("{name}: {:.1} s", started.elapsed().as_secs_f64());
                for (sink, rows) in registry.sink_rows() {
                    line.push_str(&format!(" · {sink} {} rows", crate::report::thousands(rows)));
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{}", crate::redact::text(&line));
                let _ = err.flush();
            };
            let mut interval = tokio::time::interval(Duration::from_millis(every.max(10)));
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
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
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

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
