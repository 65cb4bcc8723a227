//! `[sources.NAME]`.

use toml::de::DeValue;

use super::reader::{Table, literal};
use super::{Literal, Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Csv,
    Parquet,
    Json,
    Avro,
    Orc,
    Postgres,
    Delta,
    Inline,
    Kafka,
}

/// The keys of a `kafka` source (SPEC §3, §8).
#[derive(Debug, Clone)]
pub struct KafkaDecl {
    pub brokers: Sp<String>,
    pub topic: Sp<String>,
    pub starting_offsets: Option<Sp<String>>,
    pub value_format: Option<Sp<String>>,
    pub max_offsets_per_trigger: Option<Sp<i64>>,
    /// The partitions this process reads (Spark's `assign`) as comma-separated text
    /// (a list in the spec, or a string that may hold `${params.X}`); none: every partition.
    pub assign: Option<Sp<String>>,
    /// librdkafka settings.
    pub options: Vec<(Sp<String>, Sp<String>)>,
}

/// The keys of a `postgres` source (SPEC §3).
#[derive(Debug, Clone)]
pub struct PgDecl {
    pub url: Sp<String>,
    pub table: Option<Sp<String>>,
    pub query: Option<Sp<String>>,
    pub partition_column: Option<Sp<String>>,
    pub partitions: Option<Sp<i64>>,
    pub lower_bound: Option<Sp<i64>>,
    pub upper_bound: Option<Sp<i64>>,
}

#[derive(Debug, Clone)]
pub struct SourceDecl {
    pub name: Sp<String>,
    pub format: Sp<SourceFormat>,
    pub path: Option<Sp<String>>,
    /// Column name → type name, in file order.
    pub schema: Option<Sp<Vec<(Sp<String>, Sp<String>)>>>,
    pub header: Option<Sp<bool>>,
    pub delimiter: Option<Sp<String>>,
    pub quote: Option<Sp<String>>,
    pub null_value: Option<Sp<String>>,
    /// csv and json: read the schema from the data at compile time.
    pub infer_schema: Option<Sp<bool>>,
    /// csv: `fail` (default), `skip` or `quarantine`.
    pub on_error: Option<Sp<String>>,
    /// csv with on_error = "quarantine": where the bad lines go.
    pub quarantine: Option<Sp<String>>,
    /// Statistics hints for the join planner (file sources): rows, and bytes as written (`size = "2GB"`).
    pub rows_hint: Option<Sp<i64>>,
    pub size_hint: Option<Sp<String>>,
    /// Hive partition columns → type name (`string` when given as a list).
    pub partitions: Vec<(Sp<String>, Sp<String>)>,
    /// Inline rows: column → literal, in the order written.
    pub rows: Vec<Sp<Vec<(Sp<String>, Sp<Literal>)>>>,
    /// Options of the object store `path` names (SPEC §6a).
    pub storage_options: Vec<(Sp<String>, Sp<String>)>,
    /// `delta` sources: time travel to a version or a time (SPEC §3).
    pub version: Option<Sp<i64>>,
    pub timestamp: Option<Sp<String>>,
    /// `postgres` sources.
    pub pg: Option<PgDecl>,
    /// Streaming pipelines (SPEC §8): whether a file source is read as a stream
    /// (default: when its path names a directory), and the most files a batch takes.
    pub streaming: Option<Sp<bool>>,
    pub max_files_per_trigger: Option<Sp<i64>>,
    pub kafka: Option<KafkaDecl>,
}

const FORMATS: &[&str] = &["csv", "parquet", "json", "avro", "orc", "delta", "postgres", "inline", "kafka"];
const LATER_FORMATS: &[&str] = &[];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<SourceDecl> {
    let format_text = t.req_str("format", d, Some("sources need a format: csv, parquet, json, avro, orc, delta, postgres, inline or kafka"))?;
    let format = match format_text.as_str() {
        "csv" => SourceFormat::Csv,
        "parquet" => SourceFormat::Parquet,
        "json" => SourceFormat::Json,
        "avro" => SourceFormat::Avro,
        "orc" => SourceFormat::Orc,
        "postgres" => SourceFormat::Postgres,
        "delta" => SourceFormat::Delta,
        "inline" => SourceFormat::Inline,
        "kafka" => SourceFormat::Kafka,
        other if LATER_FORMATS.contains(&other) => {
            d.push(
                Diagnostic::error("kiln::unsupported", format_text.span.clone(), format!("source format `{other}` is not supported by this version of kiln yet"))
                    .label("not supported yet")
                    .help(format!("supported now: {}", FORMATS.join(", "))),
            );
            return None;
        }
        _ => {
            one_of(&format_text, FORMATS, "source format", d);
            return None;
        }
    };
    let mut decl = SourceDecl {
        name,
        format: Sp::new(format, format_text.span.clone()),
        path: None,
        schema: t.str_map("schema", d),
        header: None,
        delimiter: None,
        quote: None,
        null_value: None,
        infer_schema: None,
        on_error: None,
        quarantine: None,
        partitions: Vec::new(),
        rows_hint: None,
        size_hint: None,
        rows: Vec::new(),
        storage_options: Vec::new(),
        version: None,
        timestamp: None,
        pg: None,
        streaming: None,
        max_files_per_trigger: None,
        kafka: None,
    };
    match format {
        SourceFormat::Csv | SourceFormat::Parquet | SourceFormat::Json | SourceFormat::Avro | SourceFormat::Orc => {
            decl.path = t.req_str("path", d, Some("a file, a directory of files, or a glob"));
            decl.partitions = partitions(t, d);
            if let (SourceFormat::Orc, Some((first, _))) = (format, decl.partitions.first()) {
                // datafusion-orc 0.10 fills no partition values (the columns would be lost).
                d.push(
                    Diagnostic::error("kiln::unsupported", first.span.clone(), format!("{}: hive partition columns of ORC sources are not supported by this version of kiln yet", t.what))
                        .label("not supported for orc yet")
                        .help("read the directory without `partitions` (every file under it is read), one source per partition directory joined by a `union`, or Parquet"),
                );
            }
            decl.storage_options = super::storage_options(t, decl.path.as_ref(), d);
            decl.streaming = t.bool("streaming", d);
            decl.max_files_per_trigger = t.int("max_files_per_trigger", d);
            if let Some(n) = decl.max_files_per_trigger.as_ref().filter(|n| n.value < 1) {
                d.push(Diagnostic::error("kiln::bad-value", n.span.clone(), format!("{}: `max_files_per_trigger` must be at least 1", t.what)).label("too small"));
            }
        }
        SourceFormat::Delta => {
            decl.path = t.req_str("path", d, Some("the table's root directory (the one holding _delta_log)"));
            decl.storage_options = super::storage_options(t, decl.path.as_ref(), d);
            decl.version = t.int("version", d);
            decl.timestamp = t.str("timestamp", d);
            if let Some(v) = decl.version.as_ref().filter(|v| v.value < 0) {
                d.push(Diagnostic::error("kiln::bad-value", v.span.clone(), format!("{}: `version` is a table version, 0 or more", t.what)).label("negative"));
            }
            if let Some(ts) = &decl.timestamp {
                if let Err(why) = kiln::sources::delta::parse_timestamp(&ts.value) {
                    d.push(Diagnostic::error("kiln::bad-value", ts.span.clone(), format!("{}: `timestamp`: {why}", t.what)).label("not a time").help("timestamp = \"2024-05-01T12:00:00Z\" (RFC 3339) or \"2024-05-01\" (midnight UTC)"));
                }
            }
            if let (Some(_), Some(ts)) = (&decl.version, &decl.timestamp) {
                d.push(
                    Diagnostic::error("kiln::conflict", ts.span.clone(), format!("{}: `version` and `timestamp` exclude each other", t.what))
                        .label("second point in time")
                        .help("read the table as of a version, or as of a time, not both"),
                );
            }
        }
        SourceFormat::Postgres => decl.pg = postgres(t, d),
        SourceFormat::Kafka => {
            decl.kafka = kafka(t, d);
            decl.streaming = t.bool("streaming", d);
        }
        SourceFormat::Inline => {
            match rows(t, d) {
                Some(r) => decl.rows = r,
                None => {
                    if t.get("rows").is_none() {
                        t.req_str("rows", d, Some("rows = [ { id = 1, name = \"a\" } ]"));
                    }
                }
            }
        }
    }
    if format == SourceFormat::Csv {
        decl.header = t.bool("header", d);
        decl.delimiter = single_byte(t.str("delimiter", d), "delimiter", d);
        decl.quote = single_byte(t.str("quote", d), "quote", d);
        decl.null_value = t.str("null_value", d);
        decl.on_error = t.str("on_error", d).filter(|o| one_of(o, &["fail", "skip", "quarantine"], "`on_error`", d));
        decl.quarantine = t.str("quarantine", d);
        match (decl.on_error.as_ref().map(|o| o.as_str()), &decl.quarantine) {
            // SPEC §3 names no path: the bad lines go to `quarantine/SOURCE.csv` in the
            // working directory unless `quarantine` says where.
            (Some("quarantine"), None) => {
                let at = decl.on_error.as_ref().map_or(t.span.clone(), |o| o.span.clone());
                decl.quarantine = Some(Sp::new(format!("quarantine/{}.csv", decl.name.value), at));
            }
            (Some("quarantine"), Some(_)) => {}
            (_, Some(q)) => d.push(
                Diagnostic::error("kiln::conflict", q.span.clone(), format!("{}: `quarantine` is only used with on_error = \"quarantine\"", t.what))
                    .label("not used"),
            ),
            _ => {}
        }
    }
    if matches!(format, SourceFormat::Csv | SourceFormat::Json) {
        decl.infer_schema = t.bool("infer_schema", d);
    }
    if format != SourceFormat::Inline {
        // Statistics hints for the join planner, when metadata cannot be read at compile time.
        decl.rows_hint = t.int("rows", d);
        decl.size_hint = t.str("size", d);
        if let Some(s) = &decl.size_hint {
            if kiln::session::parse_size(&s.value).is_none() {
                d.push(Diagnostic::error("kiln::bad-value", s.span.clone(), format!("{}: `size` must be a size such as 512MB or 2GB", t.what)).label("not a size"));
            }
        }
    }
    t.finish(d);
    Some(decl)
}

/// The keys of a `kafka` source: `brokers`, `topic`, `starting_offsets`
/// (earliest | latest), `value_format` (json | csv | avro | avro_confluent),
/// `max_offsets_per_trigger`, `assign` (the partitions to read), and `options`
/// passed to librdkafka.
fn kafka(t: &Table, d: &mut Diags) -> Option<KafkaDecl> {
    let brokers = t.req_str("brokers", d, Some("brokers = \"broker1:9092,broker2:9092\""));
    let topic = t.req_str("topic", d, Some("topic = \"clicks\""));
    let starting_offsets = t.str("starting_offsets", d).filter(|s| one_of(s, &["earliest", "latest"], "`starting_offsets`", d));
    let value_format = t.str("value_format", d).filter(|f| one_of(f, &["json", "csv", "avro", "avro_confluent"], "`value_format`", d));
    let max_offsets_per_trigger = t.int("max_offsets_per_trigger", d);
    if let Some(n) = max_offsets_per_trigger.as_ref().filter(|n| n.value < 1) {
        d.push(Diagnostic::error("kiln::bad-value", n.span.clone(), format!("{}: `max_offsets_per_trigger` must be at least 1", t.what)).label("too small"));
    }
    let assign = match t.get("assign").map(|v| v.get_ref()) {
        // A string: a list with parameters (`"${params.partitions}"`), checked by the run.
        Some(DeValue::String(_)) => t.str("assign", d).filter(|a| {
            if a.value.contains("${") {
                return true;
            }
            let parsed = kiln::plan::parse_assign(&a.value);
            if let Err(e) = &parsed {
                d.push(Diagnostic::error("kiln::bad-value", a.span.clone(), format!("{}: `assign` {e}", t.what)).label("not a list of partitions").help("assign = [0, 2], or \"${params.partitions}\" with --param partitions=0,2"));
            }
            parsed.is_ok()
        }),
        Some(_) => t.int_list("assign", d).and_then(|a| {
            let text: Vec<String> = a.value.iter().map(|p| p.value.to_string()).collect();
            match kiln::plan::parse_assign(&text.join(",")) {
                Ok(_) => Some(Sp::new(text.join(","), a.span)),
                Err(e) => {
                    d.push(Diagnostic::error("kiln::bad-value", a.span.clone(), format!("{}: `assign` {e}", t.what)).label("not a list of partitions").help("omit `assign` to read every partition"));
                    None
                }
            }
        }),
        None => None,
    };
    let options = t.str_map("options", d).map(|o| o.value).unwrap_or_default();
    for (k, v) in &options {
        if ["bootstrap.servers", "group.id", "enable.auto.commit"].contains(&k.as_str()) {
            d.push(Diagnostic::error("kiln::conflict", k.span.clone(), format!("{}: `{}` is set by kiln", t.what, k.value)).label("kiln's own setting").help("brokers go in `brokers`; offsets are kept in checkpoint_dir, not in a consumer group"));
        }
        if (k.as_str().contains("password") || k.as_str().ends_with("secret")) && !v.as_str().contains("${env.") {
            d.push(
                Diagnostic::warning("kiln::literal-secret", v.span.clone(), format!("{}: `{}` is a literal: it is compiled into the binary", t.what, k.value))
                    .label("a credential in the spec")
                    .help(format!("read it from the environment: \"{}\" = \"${{env.KAFKA_PASSWORD}}\"", k.value)),
            );
        }
    }
    if t.get("schema").is_none() {
        d.push(
            Diagnostic::error("kiln::missing-key", t.span.clone(), format!("{}: a kafka source needs the `schema` of its record values", t.what))
                .label("no schema declared")
                .help("schema = { user_id = \"string\", ts = \"timestamp\" }  # the JSON fields (or CSV columns, in order)"),
        );
    }
    Some(KafkaDecl { brokers: brokers?, topic: topic?, starting_offsets, value_format, max_offsets_per_trigger, assign, options })
}

/// The keys of a `postgres` source: `url`, one of `table` and `query`, and
/// `partition_column` with `partitions` (and optional bounds) for parallel reads.
fn postgres(t: &Table, d: &mut Diags) -> Option<PgDecl> {
    let url = t.req_str("url", d, Some("url = \"postgres://user:${env.PGPASSWORD}@host:5432/db\""));
    if let Some(u) = &url {
        super::literal_password(u, &t.what, d);
    }
    let table = t.str("table", d);
    let query = t.str("query", d);
    match (&table, &query) {
        (Some(_), Some(q)) => d.push(
            Diagnostic::error("kiln::conflict", q.span.clone(), format!("{}: `table` and `query` exclude each other", t.what))
                .label("second relation")
                .help("read a table, or a query's rows, not both"),
        ),
        (None, None) => d.push(
            Diagnostic::error("kiln::missing-key", t.span.clone(), format!("{}: a postgres source needs `table` or `query`", t.what))
                .label("reads nothing")
                .help("table = \"public.orders\", or query = \"SELECT id, amount FROM orders WHERE …\""),
        ),
        _ => {}
    }
    let partition_column = t.str("partition_column", d);
    let partitions = t.int("partitions", d);
    let lower_bound = t.int("lower_bound", d);
    let upper_bound = t.int("upper_bound", d);
    if let Some(p) = &partitions {
        if p.value < 1 || p.value > 1024 {
            d.push(Diagnostic::error("kiln::bad-value", p.span.clone(), format!("{}: `partitions` must be between 1 and 1024", t.what)).label("out of range"));
        }
        if partition_column.is_none() {
            d.push(
                Diagnostic::error("kiln::missing-key", p.span.clone(), format!("{}: `partitions` needs `partition_column`", t.what))
                    .label("ranges of which column?")
                    .help("partition_column = \"id\" (an integer column)"),
            );
        }
    }
    if let (Some(l), Some(u)) = (&lower_bound, &upper_bound) {
        if l.value > u.value {
            d.push(Diagnostic::error("kiln::bad-value", u.span.clone(), format!("{}: `upper_bound` is below `lower_bound`", t.what)).label("below lower_bound"));
        }
    }
    Some(PgDecl { url: url?, table, query, partition_column, partitions, lower_bound, upper_bound })
}

/// `partitions = ["year", "month"]` (strings) or `{ year = "int32", site = "string" }`.
fn partitions(t: &Table, d: &mut Diags) -> Vec<(Sp<String>, Sp<String>)> {
    let Some(v) = t.get("partitions") else { return Vec::new() };
    match v.get_ref() {
        DeValue::Table(_) => t.str_map("partitions", d).map(|m| m.value).unwrap_or_default(),
        _ => t
            .str_list("partitions", d)
            .map(|l| l.value.into_iter().map(|n| (n.clone(), Sp::new("string".to_string(), n.span))).collect())
            .unwrap_or_default(),
    }
}

fn single_byte(v: Option<Sp<String>>, key: &str, d: &mut Diags) -> Option<Sp<String>> {
    let v = v?;
    let text = match v.as_str() {
        "\\t" => "\t",
        s => s,
    };
    if text.len() != 1 {
        d.push(
            Diagnostic::error("kiln::bad-value", v.span.clone(), format!("`{key}` must be one ASCII character"))
                .label(format!("this is {} bytes", text.len())),
        );
        return None;
    }
    Some(Sp::new(text.to_string(), v.span))
}

/// Inline rows: `rows = [ { column = value, ... }, ... ]`; `None` when absent
/// (errors in present rows are reported).
pub(crate) fn rows(t: &Table, d: &mut Diags) -> Option<Vec<Sp<Vec<(Sp<String>, Sp<Literal>)>>>> {
    let v = t.get("rows")?;
    let mut out = Vec::new();
    match v.get_ref() {
        DeValue::Array(items) => {
            for item in items {
                match item.get_ref() {
                    DeValue::Table(row) => {
                        let cells = row
                            .iter()
                            .filter_map(|(k, v)| literal(v, &t.what, k.get_ref(), d).map(|l| (Sp::new(k.get_ref().to_string(), k.span()), l)))
                            .collect();
                        out.push(Sp::new(cells, item.span()));
                    }
                    _ => d.push(
                        Diagnostic::error("kiln::wrong-value-type", item.span(), format!("{}: each row must be a table", t.what))
                            .label("write rows as { column = value, ... }"),
                    ),
                }
            }
        }
        _ => d.push(
            Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `rows` must be an array of tables", t.what))
                .label("expected rows = [ { ... }, ... ]"),
        ),
    }
    Some(out)
}
