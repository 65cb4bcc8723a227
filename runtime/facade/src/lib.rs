//! Kiln for Rust users: the crate to depend on (SPEC.md §9).
//!
//! Everything of the runtime (`kiln-runtime`, which generated job binaries
//! link directly), `#[kiln::udf]`, `#[kiln::model]`, and
//! [`include_pipeline!`]. That macro links the compiler, which links the
//! runtime: it cannot live in the runtime itself, hence this crate.
//!
//! ```ignore
//! kiln::include_pipeline!("specs/etl.toml");   // checked during cargo build
//! let report = etl::run(&[("input", "data/transactions.csv")]).await?;
//! ```

pub use kiln_pipeline_macro::include_pipeline;
pub use runtime::*;
