//! Kiln's runtime: everything a generated pipeline binary links.
//!
//! A generated job crate builds one [`plan::Pipeline`] value (plain data whose
//! expressions are DataFusion [`Expr`](datafusion::logical_expr::Expr)s) and hands it
//! to [`cli::main`]. From there the runtime builds DataFusion logical plans
//! ([`transforms`]), binds parameters ([`params`]), executes them and commits every
//! sink atomically ([`sinks`]). `kiln check` builds the very same plans (over empty
//! sources) to type-check a spec, so the compiler and the binary cannot disagree.

pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod eager_aggregate;
pub mod error;
pub mod expr;
pub mod first_per_key;
pub mod functions;
pub mod group_sort;
pub mod join_strategy;
mod key_buckets;
pub mod logging;
pub mod models;
pub mod node_metrics;
pub mod params;
pub mod plan;
pub mod progress;
pub mod postgres;
pub mod redact;
pub mod report;
pub mod run;
pub mod session;
pub mod shared;
pub mod sinks;
pub mod sources;
pub mod storage;
pub mod split;
pub mod stats;
pub mod strategy;
pub mod streaming;
pub mod testing;
pub mod transforms;
pub mod udfs;
pub mod unbuilt;
pub mod unspillable;

pub use error::{Error, Result};
/// `#[kiln::udf]` (a Rust function as a vectorized SQL function) and
/// `#[kiln::model]` (a candle model written in Rust).
pub use kiln_macros::{model, udf};
/// candle, for `#[kiln::model]` types.
pub use candle_core as candle;
/// chrono, for `#[kiln::udf]` parameters of type `NaiveDate`.
pub use chrono;

/// Re-exports for generated code and for users of the Rust API.
pub mod prelude {
    pub use crate::expr::*;
    pub use crate::plan::*;
    pub use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
    pub use datafusion::common::ScalarValue;
    pub use datafusion::logical_expr::{Expr, Operator, SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits};
}

/// Includes a pipeline that a build script compiled with `kiln_compiler::Build`:
/// `kiln::include_generated!("etl");` defines the module `etl`.
#[macro_export]
macro_rules! include_generated {
    ($name:literal) => {
        include!(concat!(env!("OUT_DIR"), "/kiln/", $name, ".rs"));
    };
}

/// The version of Kiln this runtime belongs to (shown by `NAME --version`).
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");

pub use datafusion;

/// mimalloc, for a Rust-API pipeline that wants it as its `#[global_allocator]`. Generated
/// jobs keep the system allocator: `bench/allocator.sh` measured mimalloc 0.89x-1.10x the wall
/// time and 1.09x-1.68x the peak RSS of glibc malloc on the guide jobs at 10M rows.
pub use mimalloc::MiMalloc;
