//! `[sinks.NAME]`.

use super::reader::Table;
use super::{Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone)]
pub struct SinkDecl {
    pub name: Sp<String>,
    pub input: Sp<String>,
    pub format: Sp<String>,
    pub path: Option<Sp<String>>,
    pub mode: Option<Sp<String>>,
    pub partition_by: Vec<Sp<String>>,
    pub compression: Option<Sp<String>>,
    pub single_file: Option<Sp<bool>>,
    /// Options of the object store `path` names (SPEC §6a).
    pub storage_options: Vec<(Sp<String>, Sp<String>)>,
    /// postgres: the server, the table, and the upsert keys.
    pub url: Option<Sp<String>>,
    pub table: Option<Sp<String>>,
    pub keys: Vec<Sp<String>>,
    /// delta: `replace_where` (with `overwrite`) and `schema_mode = "merge"`.
    pub replace_where: Option<Sp<String>>,
    pub schema_mode: Option<Sp<String>>,
    /// delta `merge`: matched rows whose new row satisfies it are deleted (and such new rows are not inserted).
    pub delete_where: Option<Sp<String>>,
    /// kafka: `brokers` (in `path`), `topic` (in `table`) and these.
    pub kafka: Option<KafkaSinkDecl>,
}

/// The keys of a `kafka` sink besides `brokers` and `topic`.
#[derive(Debug, Clone)]
pub struct KafkaSinkDecl {
    pub value_format: Option<Sp<String>>,
    pub key: Option<Sp<String>>,
    pub options: Vec<(Sp<String>, Sp<String>)>,
}

const FORMATS: &[&str] = &["parquet", "csv", "json", "avro", "orc", "delta", "postgres", "kafka", "console"];
const LATER_FORMATS: &[&str] = &[];
const DELTA_MODES: &[&str] = &["append", "overwrite", "error_if_exists", "ignore", "merge"];
const PG_MODES: &[&str] = &["append", "overwrite", "upsert", "error_if_exists", "ignore"];
const MODES: &[&str] = &["overwrite", "append", "error_if_exists", "ignore", "overwrite_partitions"];
const PARQUET_CODECS: &[&str] = &["snappy", "gzip", "zstd", "lz4", "lz4_raw", "brotli", "uncompressed"];
const TEXT_CODECS: &[&str] = &["gzip", "bzip2", "xz", "zstd", "uncompressed"];
const AVRO_CODECS: &[&str] = &["snappy", "deflate", "zstd", "bzip2", "xz", "uncompressed"];
const ORC_CODECS: &[&str] = &["snappy", "zlib", "lz4", "zstd", "uncompressed"];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<SinkDecl> {
    let input = t.req_str("input", d, Some("the name of the source or transform to write"));
    let format = t.req_str("format", d, Some(&format!("one of: {}", FORMATS.join(", "))));
    let format = format.filter(|f| {
        if LATER_FORMATS.contains(&f.as_str()) {
            d.push(
                Diagnostic::error("kiln::unsupported", f.span.clone(), format!("sink format `{}` is not supported by this version of kiln yet", f.value))
                    .label("not supported yet"),
            );
            return false;
        }
        one_of(f, FORMATS, "sink format", d)
    });
    let console = format.as_ref().is_some_and(|f| f.as_str() == "console");
    if format.as_ref().is_some_and(|f| f.as_str() == "postgres") {
        return postgres(name, input, format, t, d);
    }
    if format.as_ref().is_some_and(|f| f.as_str() == "delta") {
        return delta(name, input, format, t, d);
    }
    if format.as_ref().is_some_and(|f| f.as_str() == "kafka") {
        return kafka(name, input, format, t, d);
    }
    let path = if console { t.str("path", d) } else { t.req_str("path", d, Some("a directory of part files (or the file, with single_file = true)")) };
    let mode = t.str("mode", d).filter(|m| one_of(m, MODES, "write mode", d));
    let partition_by = t.str_list("partition_by", d).map(|p| p.value).unwrap_or_default();
    let compression = t.str("compression", d);
    if let (Some(c), Some(f)) = (&compression, &format) {
        let base = c.as_str().split('(').next().unwrap_or("");
        let codecs = match f.as_str() {
            "parquet" => PARQUET_CODECS,
            "avro" => AVRO_CODECS,
            "orc" => ORC_CODECS,
            _ => TEXT_CODECS,
        };
        one_of(&Sp::new(base.to_string(), c.span.clone()), codecs, &format!("{} compression", f.value), d);
    }
    let single_file = t.bool("single_file", d);
    let storage_options = super::storage_options(t, path.as_ref(), d);
    if let Some(m) = mode.as_ref().filter(|m| m.as_str() == "overwrite_partitions") {
        if partition_by.is_empty() {
            d.push(
                Diagnostic::error("kiln::conflict", m.span.clone(), format!("{}: mode = \"overwrite_partitions\" replaces the `partition_by` partitions the new data holds; this sink has no `partition_by`", t.what))
                    .label("needs partition_by")
                    .help("add partition_by = [\"day\"], or use mode = \"overwrite\""),
            );
        }
    }
    if let (Some(f), Some(p)) = (&format, partition_by.first()) {
        if matches!(f.as_str(), "avro" | "orc") {
            d.push(
                Diagnostic::error("kiln::unsupported", p.span.clone(), format!("{}: partitioned {} output is not supported by this version of kiln yet", t.what, f.value))
                    .label(format!("not supported for {} yet", f.value))
                    .help(format!("write parquet, csv or json partitioned, or {} unpartitioned", f.value)),
            );
        }
    }
    if let (Some(sf), false) = (&single_file, partition_by.is_empty()) {
        if sf.value {
            d.push(
                Diagnostic::error("kiln::conflict", sf.span.clone(), format!("{}: `single_file` and `partition_by` exclude each other", t.what))
                    .label("one file cannot hold several partitions"),
            );
        }
    }
    if let (Some(sf), Some(m)) = (&single_file, &mode) {
        if sf.value && m.as_str() == "append" {
            d.push(
                Diagnostic::error("kiln::conflict", m.span.clone(), format!("{}: cannot append to a single file", t.what))
                    .label("append adds part files to a directory")
                    .help("drop single_file, or use mode = \"overwrite\""),
            );
        }
    }
    t.finish(d);
    Some(SinkDecl { name, input: input?, format: format?, path, mode, partition_by, compression, single_file, storage_options, url: None, table: None, keys: Vec::new(), replace_where: None, schema_mode: None, delete_where: None, kafka: None })
}

/// A `postgres` sink: `url`, `table`, `mode` (append, overwrite, upsert with `keys`,
/// error_if_exists, ignore).
fn postgres(name: Sp<String>, input: Option<Sp<String>>, format: Option<Sp<String>>, t: &Table, d: &mut Diags) -> Option<SinkDecl> {
    let url = t.req_str("url", d, Some("url = \"postgres://user:${env.PGPASSWORD}@host:5432/db\""));
    if let Some(u) = &url {
        super::literal_password(u, &t.what, d);
    }
    let table = t.req_str("table", d, Some("the table to write, e.g. table = \"public.daily_totals\""));
    let mode = t.str("mode", d).filter(|m| one_of(m, PG_MODES, "postgres write mode", d));
    let keys = t.str_list("keys", d).map(|k| k.value).unwrap_or_default();
    let upsert = mode.as_ref().is_some_and(|m| m.as_str() == "upsert");
    match (upsert, keys.first()) {
        (true, None) => d.push(
            Diagnostic::error("kiln::missing-key", mode.as_ref().map_or(t.span.clone(), |m| m.span.clone()), format!("{}: mode = \"upsert\" needs `keys`", t.what))
                .label("update rows matched by which columns?")
                .help("keys = [\"id\"] (the table needs a unique index or primary key on them)"),
        ),
        (false, Some(k)) => d.push(
            Diagnostic::error("kiln::conflict", k.span.clone(), format!("{}: `keys` is only used with mode = \"upsert\"", t.what)).label("not used"),
        ),
        _ => {}
    }
    t.finish(d);
    Some(SinkDecl {
        name,
        input: input?,
        format: format?,
        path: None,
        mode,
        partition_by: Vec::new(),
        compression: None,
        single_file: None,
        storage_options: Vec::new(),
        url: Some(url?),
        table: Some(table?),
        keys,
        replace_where: None,
        schema_mode: None,
        delete_where: None,
        kafka: None,
    })
}

/// A `delta` sink (SPEC §6a): `path`, `mode` (append, overwrite, error_if_exists,
/// ignore, merge with `keys` and optionally `delete_where`), `replace_where` with overwrite, `schema_mode = "merge"`,
/// `partition_by`, `compression` (of the Parquet files), `storage_options`.
fn delta(name: Sp<String>, input: Option<Sp<String>>, format: Option<Sp<String>>, t: &Table, d: &mut Diags) -> Option<SinkDecl> {
    let path = t.req_str("path", d, Some("the table's root directory (it holds _delta_log)"));
    let mode = t.str("mode", d).filter(|m| {
        if m.as_str() == "overwrite_partitions" {
            d.push(
                Diagnostic::error("kiln::bad-value", m.span.clone(), format!("{}: a delta sink replaces partitions with `replace_where`", t.what))
                    .label("not a delta write mode")
                    .help("mode = \"overwrite\" with replace_where = \"day = '2024-05-01'\" replaces the rows the predicate selects"),
            );
            return false;
        }
        one_of(m, DELTA_MODES, "delta write mode", d)
    });
    let partition_by = t.str_list("partition_by", d).map(|p| p.value).unwrap_or_default();
    let compression = t.str("compression", d);
    if let Some(c) = &compression {
        let base = c.as_str().split('(').next().unwrap_or("");
        one_of(&Sp::new(base.to_string(), c.span.clone()), PARQUET_CODECS, "delta (Parquet) compression", d);
    }
    let storage_options = super::storage_options(t, path.as_ref(), d);
    let keys = t.str_list("keys", d).map(|k| k.value).unwrap_or_default();
    let replace_where = t.str("replace_where", d);
    let delete_where = t.str("delete_where", d);
    let schema_mode = t.str("schema_mode", d).filter(|m| one_of(m, &["merge"], "schema_mode", d));
    let merge = mode.as_ref().is_some_and(|m| m.as_str() == "merge");
    let overwrite = mode.as_ref().is_none_or(|m| m.as_str() == "overwrite");
    match (merge, keys.first()) {
        (true, None) => d.push(
            Diagnostic::error("kiln::missing-key", mode.as_ref().map_or(t.span.clone(), |m| m.span.clone()), format!("{}: mode = \"merge\" needs `keys`", t.what))
                .label("match rows by which columns?")
                .help("keys = [\"id\"]: rows whose keys match a row of the table update it, the others are inserted"),
        ),
        (false, Some(k)) => d.push(Diagnostic::error("kiln::conflict", k.span.clone(), format!("{}: `keys` is only used with mode = \"merge\"", t.what)).label("not used")),
        _ => {}
    }
    if let (Some(r), false) = (&replace_where, overwrite) {
        d.push(
            Diagnostic::error("kiln::conflict", r.span.clone(), format!("{}: `replace_where` goes with mode = \"overwrite\"", t.what))
                .label("replaces rows only when overwriting")
                .help("set mode = \"overwrite\": the rows the predicate selects are replaced by the new data, the others kept"),
        );
    }
    if let (Some(r), false) = (&delete_where, merge) {
        d.push(
            Diagnostic::error("kiln::conflict", r.span.clone(), format!("{}: `delete_where` goes with mode = \"merge\"", t.what))
                .label("deletes matched rows only when merging")
                .help("set mode = \"merge\" and `keys`: a table row matched by a new row that satisfies the predicate is deleted"),
        );
    }
    t.finish(d);
    Some(SinkDecl {
        name,
        input: input?,
        format: format?,
        path: Some(path?),
        mode,
        partition_by,
        compression,
        single_file: None,
        storage_options,
        url: None,
        table: None,
        keys,
        replace_where,
        schema_mode,
        delete_where,
        kafka: None,
    })
}

/// A `kafka` sink: `brokers`, `topic`, `value_format` (json | csv), `key` (a column),
/// `options` (librdkafka settings), `mode = "append"` (the only mode: records are added
/// to a topic, never replaced).
fn kafka(name: Sp<String>, input: Option<Sp<String>>, format: Option<Sp<String>>, t: &Table, d: &mut Diags) -> Option<SinkDecl> {
    let brokers = t.req_str("brokers", d, Some("brokers = \"broker1:9092,broker2:9092\""));
    let topic = t.req_str("topic", d, Some("topic = \"alerts\""));
    let value_format = t.str("value_format", d).filter(|f| one_of(f, &["json", "csv"], "`value_format`", d));
    let key = t.str("key", d);
    let mode = t.str("mode", d).filter(|m| {
        if m.as_str() != "append" {
            d.push(
                Diagnostic::error("kiln::bad-value", m.span.clone(), format!("{}: a kafka sink appends records to its topic", t.what))
                    .label("not a kafka write mode")
                    .help("mode = \"append\" (the default), or leave it out"),
            );
            return false;
        }
        true
    });
    let options = t.str_map("options", d).map(|o| o.value).unwrap_or_default();
    for (k, v) in &options {
        if k.as_str() == "bootstrap.servers" {
            d.push(Diagnostic::error("kiln::conflict", k.span.clone(), format!("{}: `{}` is set by kiln", t.what, k.value)).label("kiln's own setting").help("brokers go in `brokers`"));
        }
        if (k.as_str().contains("password") || k.as_str().ends_with("secret")) && !v.as_str().contains("${env.") {
            d.push(
                Diagnostic::warning("kiln::literal-secret", v.span.clone(), format!("{}: `{}` is a literal: it is compiled into the binary", t.what, k.value))
                    .label("a credential in the spec")
                    .help(format!("read it from the environment: \"{}\" = \"${{env.KAFKA_PASSWORD}}\"", k.value)),
            );
        }
    }
    t.finish(d);
    Some(SinkDecl {
        name,
        input: input?,
        format: format?,
        path: Some(brokers?),
        mode,
        partition_by: Vec::new(),
        compression: None,
        single_file: None,
        storage_options: Vec::new(),
        url: None,
        table: Some(topic?),
        keys: Vec::new(),
        replace_where: None,
        schema_mode: None,
        delete_where: None,
        kafka: Some(KafkaSinkDecl { value_format, key, options }),
    })
}
