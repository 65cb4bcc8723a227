//! The runtime's error type: every failure a pipeline run can report.

use std::path::PathBuf;

/// Errors of a pipeline run. Each one says what failed in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parameter `{name}`: {message}")]
    Param { name: String, message: String },
    #[error("sink `{sink}`: {path} already exists (mode = \"error_if_exists\")")]
    SinkExists { sink: String, path: PathBuf },
    #[error("node `{node}`: {message}")]
    Node { node: String, message: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{}:{line}: bad row in source `{source_name}`: {message}", file.display())]
    BadRow { source_name: String, file: PathBuf, line: u64, message: String },
    #[error("sink `{sink}`: {message}")]
    Sink { sink: String, message: String },
    #[error("{0}")]
    Usage(String),
    /// The cluster could not be reached or refused this process.
    #[error("{0}")]
    Cluster(String),
    /// An `expect` rule with `on_fail = "fail"` tripped (exit code 3).
    #[error("{0}")]
    Expectation(String),
    #[error("{0} test(s) failed")]
    TestsFailed(usize),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Wraps an error with the node it happened in.
    pub fn in_node(node: &str, err: impl std::fmt::Display) -> Self {
        Error::Node { node: node.to_string(), message: err.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
