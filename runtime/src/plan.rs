//! The pipeline IR: what a spec means, as plain data.
//!
//! The compiler builds a [`Pipeline`] from a checked spec; the generated binary
//! constructs the same value in Rust code. Expressions are DataFusion [`Expr`]s,
//! already parsed and type-checked by the compiler; nothing here parses SQL or TOML.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, SortExpr, WindowFrame};

/// A whole pipeline: its nodes in dependency order and the sinks that consume them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// Hex SHA-256 of the spec text the binary was generated from.
    pub spec_hash: String,
    pub params: Vec<Param>,
    pub runtime: RuntimeOptions,
    /// Sources and transforms, every node after all of its inputs.
    pub nodes: Vec<Node>,
    pub sinks: Vec<Sink>,
    /// `[[tests]]`, run by `kiln test` and `NAME test`.
    pub tests: Vec<TestCase>,
    /// `[pipeline] mode = "streaming"` (SPEC §8): run in micro-batches.
    pub streaming: Option<Streaming>,
}

/// A streaming pipeline's settings (SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Streaming {
    /// `[pipeline] trigger`; `run --trigger` overrides it.
    pub trigger: Trigger,
    /// The sources read as streams (directories of files), each with the most
    /// files one batch takes (`max_files_per_trigger`; all new files when unset).
    pub sources: Vec<(String, Option<usize>)>,
}

/// When micro-batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Everything present at start, in as many batches as the limits need; then exit.
    AvailableNow,
    /// A batch at most every so many milliseconds (0: as soon as the last one committed).
    IntervalMs(u64),
}

impl Trigger {
    /// `"available_now"` or a duration (`"10s"`, `"500ms"`, `"1m"`).
    pub fn parse(text: &str) -> Option<Trigger> {
        match text.trim() {
            "available_now" => Some(Trigger::AvailableNow),
            t => parse_duration_us(t).filter(|us| *us >= 0).map(|us| Trigger::IntervalMs((us / 1000) as u64)),
        }
    }
}

/// A duration such as `"5m"`, `"10s"`, `"250ms"`, `"1h"`, `"2d"` or `"90us"`, in microseconds.
pub fn parse_duration_us(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let per = match unit.trim() {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(per)
}

/// An event-time window aggregate (SPEC §8): rows grouped by the windows their
/// `time_column` falls in (`[start, end)`, aligned to the Unix epoch) and by `keys`.
/// Output: `window_start`, `window_end`, the keys, the aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWindow {
    pub time_column: String,
    /// Window length, microseconds.
    pub size_us: i64,
    /// Step between window starts, microseconds (= `size_us` for tumbling windows).
    pub slide_us: i64,
    /// How far behind the largest event time seen the watermark trails, microseconds
    /// (streaming only; a batch run groups every row).
    pub watermark_us: i64,
    /// `partition_by`: group keys, aliased to their output names.
    pub keys: Vec<Expr>,
    /// Aliased aggregate expressions.
    pub aggregates: Vec<Expr>,
    pub output_mode: OutputMode,
}

/// When a streaming window's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Once, final, when the watermark passes the window's end.
    Append,
    /// Every batch that changed the window, with its value so far.
    Update,
}

/// One `[[tests]]` entry: sources replaced by test data, expectations on nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    /// Source name → its rows in this test. Sources not listed are empty.
    pub inputs: Vec<(String, TestData)>,
    pub expect: Vec<TestExpect>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestData {
    /// One `ScalarValue` per column of the node's schema.
    Rows(Vec<Vec<ScalarValue>>),
    /// A fixture file (csv with header, json lines, or parquet, by extension).
    File(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestExpect {
    pub node: String,
    pub rows: Option<TestData>,
    pub count: Option<u64>,
    /// Rows must come in the given order.
    pub ordered: bool,
}

/// A `[params.NAME]` entry. Its value is chosen at run time:
/// `--param NAME=v` beats the `env` variable, which beats `default`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub data_type: DataType,
    pub default: Option<ScalarValue>,
    pub env: Option<String>,
    pub description: String,
}

/// `[runtime]` defaults; the binary's flags override them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeOptions {
    pub target_partitions: Option<usize>,
    pub batch_size: Option<usize>,
    /// Bytes; operators that can spill do so past it.
    pub memory_limit: Option<u64>,
    pub spill_dir: Option<String>,
    /// Bytes: an `auto` join broadcasts a side under this (default 10 MB).
    pub broadcast_threshold: Option<u64>,
    /// Where the `checkpoints` nodes' results are kept between runs.
    pub checkpoint_dir: Option<String>,
    /// Transforms with `checkpoint = true`.
    pub checkpoints: Vec<String>,
    /// `storage_options` of sources and sinks: (path, options), values may hold
    /// `${env.X}`; applied per bucket (see `storage`).
    pub storage: Vec<(String, Vec<(String, String)>)>,
}

/// One source or transform. Its output is visible to later nodes under `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
}

/// What a node does. Transforms name their inputs by node name.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Source(Source),
    Filter { input: String, predicate: Expr },
    Select { input: String, columns: Vec<Expr> },
    /// Adds or replaces columns in order; later entries see earlier ones.
    WithColumns { input: String, columns: Vec<(String, Expr)> },
    Drop { input: String, columns: Vec<String> },
    Rename { input: String, columns: Vec<(String, String)> },
    Cast { input: String, columns: Vec<(String, DataType)> },
    FillNull { input: String, values: Vec<(String, ScalarValue)> },
    /// One row per `keys` (all columns when empty).
    Dedupe { input: String, keys: Vec<String>, keep: Keep, order_by: Vec<SortExpr> },
    /// `aggregates` are aliased aggregate expressions; `having` refers to output names.
    Aggregate { input: String, group_by: Vec<Expr>, aggregates: Vec<Expr>, having: Option<Expr> },
    /// The input plus one column per window function, all over one window.
    /// `frame: None` is SQL's default frame.
    Window {
        input: String,
        partition_by: Vec<Expr>,
        order_by: Vec<SortExpr>,
        frame: Option<WindowFrame>,
        columns: Vec<(String, WindowCall)>,
    },
    /// `salt` is set when the spec declares it (`strategy = "salted"`, or hot keys).
    Join { left: String, right: String, how: JoinHow, on: JoinOn, strategy: JoinStrategy, salt: Option<Salt> },
    /// `by_name`: columns matched by name (missing ones are null), else by position.
    Union { inputs: Vec<String>, by_name: bool, distinct: bool },
    Sort { input: String, order_by: Vec<SortExpr> },
    Limit { input: String, n: usize },
    /// Hash-partitioned on `by` when given, else round-robin.
    Repartition { input: String, partitions: usize, by: Vec<Expr> },
    /// Fewer partitions (round-robin; DataFusion has no narrow coalesce).
    Coalesce { input: String, partitions: usize },
    /// A query over the inputs, planned at compile time and carried as a
    /// datafusion-proto logical plan whose table scans name the inputs.
    /// `query` is the spec's text, kept for `explain` and for readers of the generated code.
    Sql { inputs: Vec<String>, query: String, plan: Vec<u8> },
    /// Data-quality rules. The node `NAME` is the rows that pass every `drop`
    /// and `quarantine` rule; `NAME.quarantine` (`output: Quarantined`) is the
    /// rows that broke a `quarantine` rule, with `_failed_rules`.
    Expect { input: String, rules: Vec<Rule>, output: ExpectOutput },
    /// Model inference: the input plus `output` (a score), or for a model with
    /// several outputs `output` (the class, argmax) and `output_probability`.
    Predict { input: String, model: Model, features: Features, output: String, batch_size: usize },
    /// A `window` with a `time_column` (SPEC §8).
    EventWindow { input: String, window: EventWindow },
}

/// `[models.NAME]`: a model read from a safetensors file, checked at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Model {
    pub name: String,
    /// The safetensors file (relative to the working directory at run time), or an object-store URL.
    pub path: String,
    pub architecture: Architecture,
    pub device: ModelDevice,
    /// Features the model takes and values it returns per row (from the weights' shapes).
    pub inputs: usize,
    pub outputs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `weight` (outputs × inputs) and `bias` (outputs): x·Wᵀ + b.
    Linear,
    /// A linear layer then sigmoid (one output) or softmax (several).
    Logistic,
    /// `layers = [16, 32, 1]`: tensors `layers.{i}.weight` / `layers.{i}.bias`,
    /// `activation` between layers, `output_activation` after the last.
    Mlp { layers: Vec<usize>, activation: Activation, output_activation: Activation },
    /// A Rust type marked `#[kiln::model]`, registered by the generated binary.
    Custom(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Relu,
    Sigmoid,
    Tanh,
    Gelu,
    Softmax,
}

impl Activation {
    pub const NAMES: &[&str] = &["identity", "relu", "sigmoid", "tanh", "gelu", "softmax"];

    pub fn from_name(name: &str) -> Option<Activation> {
        Some(match name {
            "identity" | "none" | "linear" => Activation::Identity,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu,
            "softmax" => Activation::Softmax,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelDevice {
    Cpu,
    /// The first CUDA device (a binary built with the `cuda` feature).
    Cuda,
    /// CUDA when the binary has it and a device answers, else the CPU.
    Auto,
}

/// What a `predict` node feeds the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Features {
    /// One numeric column per feature, in the model's input order.
    Columns(Vec<String>),
    /// One `list<float32>` (or fixed-size list) column holding every feature.
    List(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectOutput {
    Passed,
    Quarantined,
}

/// One `expect` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub on_fail: OnFail,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// Counted and reported; the row stays.
    Warn,
    /// The row is left out.
    Drop,
    /// The row is left out and goes to `NAME.quarantine`.
    Quarantine,
    /// The run stops (exit 3) before any sink writes.
    Fail,
}

/// What a rule checks. Row rules written in the spec as `not_null`,
/// `accepted_values`, `range` or `regex` arrive here as `Check` expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// A row passes when the expression is true (false and null fail).
    Check(Expr),
    /// A row fails when another row has the same keys.
    Unique(Vec<String>),
    /// A row fails when its keys (all non-null) are not found in `node`'s `columns`.
    ExistsIn { node: String, keys: Vec<String>, columns: Vec<String> },
    /// The whole input: its row count must be within bounds.
    RowCount { min: Option<u64>, max: Option<u64> },
}

/// One window function call: `function` from the registry, a window function or
/// (`aggregate`) an aggregate over the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCall {
    pub function: String,
    pub aggregate: bool,
    pub args: Vec<Expr>,
    pub distinct: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinHow {
    Inner,
    Left,
    Right,
    Full,
    Semi,
    Anti,
    Cross,
}

impl JoinHow {
    /// The spec's word for it.
    pub fn name(self) -> &'static str {
        match self {
            JoinHow::Inner => "inner",
            JoinHow::Left => "left",
            JoinHow::Right => "right",
            JoinHow::Full => "full",
            JoinHow::Semi => "semi",
            JoinHow::Anti => "anti",
            JoinHow::Cross => "cross",
        }
    }
}

/// How the two sides match.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOn {
    /// `on = ["k"]`: equal columns of one name, kept once in the output (Spark's USING).
    Using(Vec<String>),
    /// `on = ["l.x = r.y", ...]`: equi keys (left and right expressions,
    /// qualified by node name) and any other condition; both sides' columns are kept.
    Keys { left: Vec<Expr>, right: Vec<Expr>, filter: Option<Expr> },
    /// `how = "cross"`.
    None,
}

/// How a join is executed (SPEC.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStrategy {
    /// DataFusion decides from statistics.
    Auto,
    /// The `side`'s rows are collected once and shared by every partition.
    Broadcast { side: Side },
    /// Both sides hash-partitioned on the keys.
    Shuffle,
    /// Both sides sorted and merged; spills when memory runs short.
    SortMerge,
    /// Hot keys of the left (big) side spread over `Salt::buckets` (see [`Salt`]).
    Salted,
}

/// Salting for skewed keys: left rows whose key is hot are joined where they
/// are read (spread over `buckets` partitions when the input has fewer than
/// the session's target partitions) against the right rows with those keys,
/// replicated to every partition; every other key joins unsalted. See
/// `transforms::join::salted`.
#[derive(Debug, Clone, PartialEq)]
pub struct Salt {
    /// `None`: twice the session's target partitions.
    pub buckets: Option<usize>,
    /// Declared hot keys (values of the single join key).
    pub hot_keys: Vec<ScalarValue>,
    /// Count the left side's keys in a pre-pass at run time; keys holding at
    /// least `threshold` of its rows are hot (added to the declared ones).
    pub detect: bool,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Op {
    /// The nodes this one reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Op::Source(_) => vec![],
            Op::Filter { input, .. }
            | Op::Select { input, .. }
            | Op::WithColumns { input, .. }
            | Op::Drop { input, .. }
            | Op::Rename { input, .. }
            | Op::Cast { input, .. }
            | Op::FillNull { input, .. }
            | Op::Dedupe { input, .. }
            | Op::Aggregate { input, .. }
            | Op::Window { input, .. }
            | Op::Sort { input, .. }
            | Op::Limit { input, .. }
            | Op::Repartition { input, .. }
            | Op::Coalesce { input, .. }
            | Op::Predict { input, .. }
            | Op::EventWindow { input, .. } => vec![input.as_str()],
            Op::Join { left, right, .. } => vec![left.as_str(), right.as_str()],
            Op::Union { inputs, .. } | Op::Sql { inputs, .. } => inputs.iter().map(String::as_str).collect(),
            Op::Expect { input, rules, .. } => std::iter::once(input.as_str())
                .chain(rules.iter().filter_map(|r| match &r.kind {
                    RuleKind::ExistsIn { node, .. } => Some(node.as_str()),
                    _ => None,
                }))
                .collect(),
        }
    }
}

impl Op {
    /// The spec's name of this kind of node.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Filter { .. } => "filter",
            Op::Select { .. } => "select",
            Op::WithColumns { .. } => "with_columns",
            Op::Drop { .. } => "drop",
            Op::Rename { .. } => "rename",
            Op::Cast { .. } => "cast",
            Op::FillNull { .. } => "fill_null",
            Op::Dedupe { .. } => "dedupe",
            Op::Aggregate { .. } => "aggregate",
            Op::Window { .. } => "window",
            Op::Join { .. } => "join",
            Op::Union { .. } => "union",
            Op::Sort { .. } => "sort",
            Op::Limit { .. } => "limit",
            Op::Repartition { .. } => "repartition",
            Op::Coalesce { .. } => "coalesce",
            Op::Sql { .. } => "sql",
            Op::Expect { .. } => "expect",
            Op::Predict { .. } => "predict",
            Op::EventWindow { .. } => "window",
        }
    }
}

/// The spec's name of a source format.
pub fn format_name(format: &SourceFormat) -> &'static str {
    match format {
        SourceFormat::Csv(_) => "csv",
        SourceFormat::Parquet => "parquet",
        SourceFormat::Json => "json",
        SourceFormat::Avro => "avro",
        SourceFormat::Orc => "orc",
        SourceFormat::Postgres(_) => "postgres",
        SourceFormat::Delta(_) => "delta",
        SourceFormat::Inline(_) => "inline",
        SourceFormat::Kafka(_) => "kafka",
    }
}

/// Which row `dedupe` keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Any,
    First,
    Last,
}

/// Where a source's rows come from. `schema` is pinned at compile time.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub format: SourceFormat,
    /// May hold `${params.X}` and `${env.X}`, substituted at run time.
    pub path: String,
    /// Every column: the files' columns, then the `partitions` columns.
    pub schema: SchemaRef,
    /// Hive-style partition columns (`year=2024/` directories), in directory order.
    pub partitions: Vec<(String, DataType)>,
    /// The spec's `rows`/`size` hints, which beat what the files say.
    pub hints: SizeHints,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeHints {
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceFormat {
    Csv(CsvOptions),
    Parquet,
    /// Newline-delimited JSON.
    Json,
    Avro,
    /// Apache ORC files (datafusion-orc).
    Orc,
    /// A PostgreSQL table or query (`path` is empty).
    Postgres(PgSource),
    /// A Delta Lake table (`path` is its root), at a version or time if given.
    Delta(DeltaSource),
    /// Rows given in the spec, one `ScalarValue` per schema column.
    Inline(Vec<Vec<ScalarValue>>),
    /// A Kafka topic (SPEC §3, §8): streaming pipelines only. The schema is the
    /// value's columns, then [`KAFKA_COLUMNS`].
    Kafka(KafkaSource),
}

/// The columns a `kafka` source adds after the value's: the record's key (text),
/// topic, partition, offset and timestamp.
pub const KAFKA_COLUMNS: [&str; 5] = ["kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"];

/// A `kafka` source.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    /// `host:port,…`; may hold `${params.X}`/`${env.X}`.
    pub brokers: String,
    pub topic: String,
    /// Where a new checkpoint starts: the earliest offsets kept, or the end (Spark's default).
    pub earliest: bool,
    /// `json` (one object per record) or `csv` (one line per record, no header).
    pub value_format: KafkaValueFormat,
    /// The most records one batch takes, over all partitions (Spark's `maxOffsetsPerTrigger`).
    pub max_offsets_per_trigger: Option<u64>,
    /// The partitions this process reads (Spark's `assign`), so that several processes
    /// share a topic's partitions: comma-separated numbers, which may hold
    /// `${params.X}`/`${env.X}` (see [`parse_assign`]); empty: every partition.
    pub assign: String,
    /// librdkafka settings (`security.protocol`, `sasl.username`, …); values may hold `${env.X}`.
    pub options: Vec<(String, String)>,
}

/// A Kafka source's `assign` after substitution: distinct partition numbers,
/// comma-separated (`"0, 2"`).
pub fn parse_assign(text: &str) -> std::result::Result<Vec<i32>, String> {
    if text.trim().is_empty() {
        return Err("lists no partition".into());
    }
    let mut out: Vec<i32> = Vec::new();
    for item in text.split(',').map(str::trim) {
        let p: i32 = item.parse().ok().filter(|p| *p >= 0).ok_or_else(|| format!("holds `{item}`, not a partition number"))?;
        if out.contains(&p) {
            return Err(format!("names partition {p} twice"));
        }
        out.push(p);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaValueFormat {
    Json,
    Csv,
    /// One Avro datum in binary encoding, written with the declared schema as Avro
    /// (Spark's `from_avro`): see `streaming::kafka` for the schema.
    Avro,
    /// The same datum after Confluent's wire-format header (magic byte 0, a 4-byte
    /// schema id); the declared schema stands for every id.
    AvroConfluent,
}

/// A `delta` source's time travel (SPEC §3, §6a): at most one is set; neither
/// reads the latest version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeltaSource {
    pub version: Option<u64>,
    /// RFC 3339 (`2024-05-01T00:00:00Z`) or a date (`2024-05-01`, midnight UTC):
    /// the latest version committed at or before it.
    pub timestamp: Option<String>,
}

/// A `postgres` source (SPEC §3).
#[derive(Debug, Clone, PartialEq)]
pub struct PgSource {
    /// `postgres://user:password@host:port/db`; may hold `${env.X}` and `${params.X}`.
    pub url: String,
    /// `table` (optionally `schema.table`), or else `query`.
    pub table: Option<String>,
    pub query: Option<String>,
    /// Parallel reads (Spark's JDBC `partitionColumn`): an integer column, and how many
    /// disjoint ranges to read it in. Bounds only set the stride; every row is read.
    pub partition_column: Option<String>,
    pub partitions: u32,
    pub lower_bound: Option<i64>,
    pub upper_bound: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    /// The text that means null; `None`: empty fields are null.
    pub null_value: Option<String>,
    pub on_error: OnError,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { header: true, delimiter: b',', quote: b'"', null_value: None, on_error: OnError::Fail }
    }
}

/// What a CSV row that does not fit the schema does to the run.
#[derive(Debug, Clone, PartialEq)]
pub enum OnError {
    /// The run fails, naming the file and line.
    Fail,
    /// The row is left out.
    Skip,
    /// The row is left out and written, raw, with its file, line and reason, to
    /// this CSV path (may hold `${params.X}`), committed with the sinks.
    Quarantine(String),
}

/// A `[sinks.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub input: String,
    pub format: SinkFormat,
    /// Directory of part files, or the file itself with `single_file`. Empty for console.
    pub path: String,
    pub mode: WriteMode,
    pub partition_by: Vec<String>,
    pub compression: Option<String>,
    pub single_file: bool,
    /// postgres: the table written (`schema.table` allowed).
    pub table: String,
    /// postgres `upsert` and delta `merge`: the keys rows are matched on.
    pub keys: Vec<String>,
    /// delta `overwrite`: replace only the rows this predicate selects (unqualified columns).
    pub replace_where: Option<Expr>,
    /// delta `merge`: a matched table row is deleted when its new row satisfies this
    /// (unqualified columns of the new data); such new rows are not inserted.
    pub delete_where: Option<Expr>,
    /// delta: `schema_mode = "merge"` admits columns the table does not have yet.
    pub schema_merge: bool,
    /// kafka: `path` holds the brokers and `table` the topic; these are the rest.
    pub kafka: Option<KafkaSink>,
}

/// A `kafka` sink's record format, key and client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSink {
    /// `json` (one object per record, the default) or `csv` (one line, no header).
    pub value_format: KafkaValueFormat,
    /// The column whose value (as text) is each record's key; none: no key.
    pub key: Option<String>,
    /// librdkafka settings; values may hold `${env.X}`.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    Parquet,
    Csv,
    Json,
    Avro,
    /// Apache ORC files (orc-rust's writer: flat types only, checked by the compiler).
    Orc,
    /// A PostgreSQL table: `path` holds the url, `table` the table, `keys` the upsert keys.
    Postgres,
    /// A Delta Lake table at `path`: one transaction per run.
    Delta,
    /// A Kafka topic (`table`) on the brokers `path` names: records sent when the run
    /// (or a streaming batch) commits, at least once.
    Kafka,
    Console,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Overwrite,
    Append,
    ErrorIfExists,
    Ignore,
    /// Replace only the `partition_by` partitions present in the new data
    /// (Spark's dynamic partition overwrite); the others are kept.
    OverwritePartitions,
    /// postgres: insert new keys, update existing ones (`INSERT … ON CONFLICT (keys) DO UPDATE`).
    Upsert,
    /// delta: rows whose `keys` match a row of the table update it, the others are inserted.
    Merge,
}

impl Pipeline {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
