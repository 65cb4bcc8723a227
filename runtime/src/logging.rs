//! Logs (issue 19): `KILN_LOG` is the filter (a tracing `EnvFilter`: `info`,
//! `kiln=debug,ballista=info`, …; warnings by default), `KILN_LOG_FORMAT=json`
//! writes one JSON object per line instead of text. Every line carries the
//! process's run id, which `--metrics` and `--report` carry too, so a run's
//! logs, metrics and report can be matched: `"run_id":"…"` first in each JSON
//! object, `run=…` first on each text line.

use std::io::Write;
use std::sync::OnceLock;

static RUN_ID: OnceLock<String> = OnceLock::new();

/// This process's run id: the start time (ms since the epoch, hex) and the pid.
pub fn run_id() -> &'static str {
    RUN_ID.get_or_init(|| {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("{ms:x}-{}", std::process::id())
    })
}

/// Installs the subscriber (once per process; later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let json = std::env::var("KILN_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only on a terminal (a log file or a pipe gets plain text).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi && !json).with_writer(move || Tagged { json });
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

/// stderr, with the run id put first in every line the formatter writes
/// (tracing-subscriber's fmt layer writes each event with one `write_all`).
struct Tagged {
    json: bool,
}

impl Write for Tagged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = buf.len();
        // SPEC §10: no `${env.X}` value in any log line, whoever logged it (DataFusion and
        // Ballista log paths and plans at debug): each line is redacted as a whole.
        let redacted = crate::redact::text(&String::from_utf8_lossy(buf));
        let buf = redacted.as_bytes();
        let mut err = std::io::stderr().lock();
        match (self.json, buf.first()) {
            (true, Some(b'{')) => {
                err.write_all(b"{\"run_id\":\"")?;
                err.write_all(run_id().as_bytes())?;
                err.write_all(b"\",")?;
                err.write_all(&buf[1..])?;
            }
            (false, Some(_)) => {
                err.write_all(b"run=")?;
                err.write_all(run_id().as_bytes())?;
                err.write_all(b" ")?;
                err.write_all(buf)?;
            }
            _ => err.write_all(buf)?,
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
