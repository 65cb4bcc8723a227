//! Building a DataFusion session with Kiln's settings.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::plan::RuntimeOptions;
use crate::Result;

/// Rows per batch unless `[runtime] batch_size` or a flag says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 65536;

/// The settings one run uses: the spec's `[runtime]`, overridden by flags.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub threads: Option<usize>,
    pub target_partitions: Option<usize>,
    pub batch_size: Option<usize>,
    pub memory_limit: Option<u64>,
    pub spill_dir: Option<String>,
}

impl SessionOptions {
    /// Flags (`self`) win over the spec's `[runtime]` defaults.
    pub fn over(mut self, defaults: &RuntimeOptions) -> Self {
        self.target_partitions = self.target_partitions.or(defaults.target_partitions);
        self.batch_size = self.batch_size.or(defaults.batch_size);
        self.memory_limit = self.memory_limit.or(defaults.memory_limit);
        self.spill_dir = self.spill_dir.clone().or_else(|| defaults.spill_dir.clone());
        self
    }
}

/// Partitions per core for a sink whose plan has a `window` transform (`run::fan_out_windows`).
/// A window sorts its input per partition by its keys, and DataFusion's sort merges one
/// sorted run per input batch: 4x the partitions means a quarter of the runs per merge. The
/// windows job at 10M rows: 3.78 s vs 4.30 s (median of 2 alternating runs each,
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS=8` vs 2); etl, whose hash aggregates and writers do
/// not gain from more partitions, keeps one per core.
pub const WINDOW_FAN_OUT: usize = 4;

/// Marks a session whose `target_partitions` is Kiln's choice (one per core) and that has
/// no memory limit: only there does a sink with windows plan with [`WINDOW_FAN_OUT`] times
/// as many. A spec's, a flag's or `DATAFUSION_*`'s partition count is used as given, and a
/// memory limit keeps the plans `bench/scale.sh` measured spilling.
#[derive(Debug)]
pub struct WindowFanOut;

/// Session configuration shared by runs and by `kiln check`: Spark's semantics
/// where Spark and DataFusion differ (SPEC.md §11).
///
/// Any DataFusion option can also be set through `DATAFUSION_*` environment
/// variables (`DATAFUSION_EXECUTION_BATCH_SIZE=65536`), for tuning; Kiln's own
/// settings are applied on top.
pub fn config(opts: &SessionOptions) -> SessionConfig {
    let base = SessionConfig::from_env().unwrap_or_else(|e| {
        eprintln!("warning: ignoring DATAFUSION_* settings: {e}");
        SessionConfig::new()
    });
    let mut config = base.with_information_schema(false);
    let partitions = opts.target_partitions.or(opts.threads);
    if let Some(n) = partitions {
        config = config.with_target_partitions(n.max(1));
    } else if opts.memory_limit.is_none() && std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
        config = config.with_extension(Arc::new(WindowFanOut));
    }
    // Larger batches than DataFusion's 8192 mean fewer sorted runs to merge in
    // sorts (windows, dedupe): 20-25% faster at 10M rows, same peak memory
    // (measured: bench/results, ARCHITECTURE.md). An explicit setting wins.
    let env_batch = std::env::var_os("DATAFUSION_EXECUTION_BATCH_SIZE").is_some();
    match opts.batch_size {
        Some(n) => config = config.with_batch_size(n.max(1)),
        None if !env_batch => config = config.with_batch_size(DEFAULT_BATCH_SIZE),
        None => {}
    }
    let options = config.options_mut();
    // Spark: nulls sort first ascending, last descending.
    options.sql_parser.default_null_ordering = "nulls_min".to_string();
    config
}

/// A session for running a pipeline.
pub fn context(opts: &SessionOptions) -> Result<SessionContext> {
    let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(crate::storage::registry());
    if let Some(limit) = opts.memory_limit {
        // Fair, not greedy: a plan with several spilling operators (the dedupe's sort and the
        // aggregate's, one of each per partition) gives each its share, so none grows past it
        // and leaves another without the memory its merge needs (with DataFusion's default
        // greedy pool, the etl job at 100M rows under 1GB failed in 1.5 s).
        use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
        let pool = TrackConsumersPool::new(FairSpillPool::new(limit as usize), std::num::NonZeroUsize::new(5).expect("5 > 0"));
        runtime = runtime.with_memory_pool(std::sync::Arc::new(pool));
    }
    if let Some(dir) = &opts.spill_dir {
        runtime = runtime.with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.into()])),
        );
    }
    let mut state = SessionStateBuilder::new()
        .with_config(config(opts))
        .with_runtime_env(Arc::new(runtime.build()?))
        .with_default_features()
        .with_query_planner(Arc::new(crate::join_strategy::KilnQueryPlanner))
        .with_physical_optimizer_rules(crate::join_strategy::physical_rules())
        .build();
    crate::functions::install(&mut state);
    Ok(SessionContext::new_with_state(state))
}

/// Parses sizes such as `512MB`, `4GB`, `1.5GiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" | "kib" => 1024.0,
        "mb" | "m" | "mib" => 1024.0 * 1024.0,
        "gb" | "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "tb" | "t" | "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    Some((num * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GB"), Some(4 << 30));
        assert_eq!(parse_size("512 MB"), Some(512 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4 parsecs"), None);
    }
}
