//! Lowering one node: raw declaration → [`kiln::plan`] value and its check plan.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use kiln::plan::{CsvOptions, Keep, Node, OnError, Op, Sink, SinkFormat, Source, WriteMode};

use super::expr::{ExprChecker, clean_message};
use super::{bad_type, literal_type, literal_value};
use crate::diag::{Diagnostic, Diags, did_you_mean};
use crate::schemas::FileSchemas;
use crate::spec::types::{self, display};
use crate::spec::{SinkDecl, SourceDecl, SourceFormat, Sp, TransformBody, TransformDecl};

// ---------------------------------------------------------------- sources

pub(super) fn source(s: &SourceDecl, files: &FileSchemas, d: &mut Diags) -> Option<(Node, LogicalPlan)> {
    let declared = declared_schema(s, d);
    let infer = s.infer_schema.as_ref().is_some_and(|b| b.value);
    let path_span = s.path.as_ref().map_or(s.name.span.clone(), |p| p.span.clone());
    let (format, schema) = match s.format.value {
        SourceFormat::Csv | SourceFormat::Json if !infer => {
            let Some(schema) = declared else {
                if s.schema.is_none() {
                    let fmt = if s.format.value == SourceFormat::Csv { "csv" } else { "json" };
                    d.push(
                        Diagnostic::error("kiln::missing-key", s.name.span.clone(), format!("source `{}`: a {fmt} source needs a `schema`", s.name.value))
                            .label("no schema declared")
                            .help("list the columns (in file order for csv):\nschema = { id = \"string\", amount = \"float64\" }\nor read it from the data at compile time: infer_schema = true"),
                    );
                }
                return None;
            };
            (file_format(s), schema)
        }
        SourceFormat::Postgres => {
            let pg = s.pg.as_ref()?;
            let url_span = pg.url.span.clone();
            let schema = match (files.get(&s.name.value), declared) {
                (Some(Ok(found)), None) => found.clone(),
                (Some(Ok(found)), Some(declared)) => {
                    // The declared types win (the read casts to them); the columns must exist.
                    for f in declared.fields() {
                        if found.field_with_name(f.name()).is_err() {
                            let span = s.schema.as_ref().and_then(|x| x.value.iter().find(|(n, _)| &n.value == f.name()).map(|(n, _)| n.span.clone())).unwrap_or(url_span.clone());
                            d.push(unknown_column(f.name(), &span, &schema_names(found)));
                        }
                    }
                    declared
                }
                (Some(Err(why)), Some(declared)) => {
                    d.push(
                        Diagnostic::warning("kiln::schema-unreadable", url_span, format!("source `{}`: cannot ask the server for the columns; using the declared `schema`", s.name.value))
                            .label(why.clone())
                            .help("the run checks the server's columns against it before writing anything"),
                    );
                    declared
                }
                (Some(Err(why)), None) => {
                    d.push(
                        Diagnostic::error("kiln::schema-unreadable", url_span, format!("source `{}`: cannot ask the server for the columns", s.name.value))
                            .label(why.clone())
                            .help("make the server reachable from `kiln check` (the url's ${env.X} variables set), or declare `schema`"),
                    );
                    return None;
                }
                (None, Some(declared)) => declared,
                (None, None) => return None,
            };
            if let Some(c) = &pg.partition_column {
                match schema.field_with_name(&c.value) {
                    Ok(f) if f.data_type().is_integer() => {}
                    Ok(f) => d.push(
                        Diagnostic::error("kiln::type-mismatch", c.span.clone(), format!("source `{}`: `partition_column` must be an integer column; `{}` is {}", s.name.value, c.value, display(f.data_type())))
                            .label("not an integer column"),
                    ),
                    Err(_) => d.push(unknown_column(&c.value, &c.span, &schema_names(&schema))),
                }
            }
            let format = kiln::plan::SourceFormat::Postgres(kiln::plan::PgSource {
                url: pg.url.value.clone(),
                table: pg.table.as_ref().map(|t| t.value.clone()),
                query: pg.query.as_ref().map(|q| q.value.clone()),
                partition_column: pg.partition_column.as_ref().map(|c| c.value.clone()),
                partitions: pg.partitions.as_ref().map_or(1, |p| p.value.clamp(1, 1024) as u32),
                lower_bound: pg.lower_bound.as_ref().map(|b| b.value),
                upper_bound: pg.upper_bound.as_ref().map(|b| b.value),
            });
            (format, schema)
        }
        SourceFormat::Delta => {
            let schema = match (files.get(&s.name.value), declared) {
                (Some(Ok(found)), Some(declared)) => {
                    check_declared_against_file(s, &declared, found, d);
                    found.clone()
                }
                (Some(Ok(found)), None) => found.clone(),
                (Some(Err(why)), Some(declared)) => {
                    d.push(
                        Diagnostic::warning("kiln::schema-unreadable", path_span.clone(), format!("source `{}`: cannot read the Delta table's schema; using the declared `schema`", s.name.value))
                            .label(why.clone())
                            .help("the run checks the table's schema against it before writing anything"),
                    );
                    declared
                }
                (Some(Err(why)), None) => {
                    d.push(
                        Diagnostic::error("kiln::schema-unreadable", path_span, format!("source `{}`: cannot read the Delta table's schema", s.name.value))
                            .label(why.clone())
                            .help("make the table readable at compile time (a path holding _delta_log), or declare `schema`"),
                    );
                    return None;
                }
                (None, Some(declared)) => declared,
                (None, None) => return None,
            };
            let format = kiln::plan::SourceFormat::Delta(kiln::plan::DeltaSource {
                version: s.version.as_ref().map(|v| v.value.max(0) as u64),
                timestamp: s.timestamp.as_ref().map(|t| t.value.clone()),
            });
            (format, schema)
        }
        SourceFormat::Csv | SourceFormat::Json | SourceFormat::Parquet | SourceFormat::Avro | SourceFormat::Orc => {
            let what = match s.format.value {
                SourceFormat::Parquet => "Parquet schema",
                SourceFormat::Avro => "Avro schema",
                SourceFormat::Orc => "ORC schema",
                _ => "data to infer a schema",
            };
            let schema = match (files.get(&s.name.value), declared) {
                (Some(Ok(found)), Some(declared)) if !infer => {
                    check_declared_against_file(s, &declared, found, d);
                    found.clone()
                }
                (_, Some(_)) if infer => {
                    let span = s.schema.as_ref().map_or(path_span.clone(), |x| x.span.clone());
                    d.push(Diagnostic::error("kiln::conflict", span, format!("source `{}`: `schema` and `infer_schema = true` exclude each other", s.name.value)).label("declared here").help("drop one of them"));
                    return None;
                }
                (Some(Ok(found)), _) => found.clone(),
                (Some(Err(why)), Some(declared)) => {
                    // An object store not reachable from here (no credentials on a laptop):
                    // the declared schema is pinned, and checked against the objects at run time.
                    if s.path.as_ref().is_some_and(|p| kiln::storage::is_remote(&p.value)) {
                        d.push(
                            Diagnostic::warning("kiln::schema-unreadable", path_span.clone(), format!("source `{}`: cannot read the {what}; using the declared `schema`", s.name.value))
                                .label(why.clone())
                                .help("the run checks every object against it before writing anything"),
                        );
                    }
                    declared
                }
                (Some(Err(why)), None) => {
                    d.push(
                        Diagnostic::error("kiln::schema-unreadable", path_span, format!("source `{}`: cannot read the {what}", s.name.value))
                            .label(why.clone())
                            .help("make the file readable at compile time, or declare `schema`"),
                    );
                    return None;
                }
                (None, Some(declared)) => declared,
                (None, None) => return None,
            };
            (file_format(s), schema)
        }
        SourceFormat::Kafka => {
            let k = s.kafka.as_ref()?;
            let value = declared?;
            // The value's columns, then the record's own (plan::KAFKA_COLUMNS).
            let mut fields: Vec<Field> = value.fields().iter().map(|f| f.as_ref().clone()).collect();
            let types = [
                DataType::Utf8,
                DataType::Utf8,
                DataType::Int32,
                DataType::Int64,
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
            ];
            for (name, ty) in kiln::plan::KAFKA_COLUMNS.iter().zip(types) {
                if let Some((col, _)) = s.schema.as_ref().and_then(|x| x.value.iter().find(|(n, _)| n.as_str() == *name)) {
                    d.push(
                        Diagnostic::error("kiln::duplicate-column", col.span.clone(), format!("source `{}`: `{name}` is a column every kafka source adds", s.name.value))
                            .label("taken")
                            .note(format!("a kafka source's columns are its values' and {}", kiln::plan::KAFKA_COLUMNS.join(", "))),
                    );
                    return None;
                }
                fields.push(Field::new(*name, ty, *name == "kafka_key" || *name == "kafka_timestamp"));
            }
            let format = kiln::plan::SourceFormat::Kafka(kiln::plan::KafkaSource {
                brokers: k.brokers.value.clone(),
                topic: k.topic.value.clone(),
                earliest: k.starting_offsets.as_ref().is_some_and(|s| s.as_str() == "earliest"),
                value_format: match k.value_format.as_ref().map(|f| f.as_str()) {
                    Some("csv") => kiln::plan::KafkaValueFormat::Csv,
                    Some("avro") => kiln::plan::KafkaValueFormat::Avro,
                    Some("avro_confluent") => kiln::plan::KafkaValueFormat::AvroConfluent,
                    _ => kiln::plan::KafkaValueFormat::Json,
                },
                max_offsets_per_trigger: k.max_offsets_per_trigger.as_ref().map(|n| n.value.max(1) as u64),
                assign: k.assign.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
                options: k.options.iter().map(|(a, b)| (a.value.clone(), b.value.clone())).collect(),
            });
            (format, Arc::new(Schema::new(fields)))
        }
        SourceFormat::Inline => {
            let schema = match declared {
                Some(s) => s,
                None if s.schema.is_some() => return None,
                None => infer_inline_schema(s, d)?,
            };
            let rows = inline_rows(s, &schema, d)?;
            (kiln::plan::SourceFormat::Inline(rows), schema)
        }
    };
    // Hive partition columns follow the files' columns.
    let mut partitions = Vec::new();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, ty) in &s.partitions {
        if schema.field_with_name(&name.value).is_ok() {
            d.push(
                Diagnostic::error("kiln::duplicate-column", name.span.clone(), format!("source `{}`: partition column `{}` is also a column of the files", s.name.value, name.value))
                    .label("already in the schema")
                    .help("partition values come from the directory names (`year=2024/`); list the column in one place only"),
            );
            continue;
        }
        match types::parse(&ty.value) {
            Ok(ct) => {
                fields.push(Field::new(&name.value, ct.data_type.clone(), true));
                partitions.push((name.value.clone(), ct.data_type));
            }
            Err(msg) => d.push(bad_type(ty, &msg)),
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let hints = kiln::plan::SizeHints {
        rows: s.rows_hint.as_ref().map(|r| r.value.max(0) as u64),
        bytes: s.size_hint.as_ref().and_then(|b| kiln::session::parse_size(&b.value)),
    };
    let source = Source { format, path: s.path.as_ref().map(|p| p.value.clone()).unwrap_or_default(), schema, partitions, hints };
    let plan = kiln::sources::empty(&s.name.value, &source).ok()?;
    Some((Node { name: s.name.value.clone(), op: Op::Source(source) }, plan))
}

fn file_format(s: &SourceDecl) -> kiln::plan::SourceFormat {
    match s.format.value {
        SourceFormat::Csv => kiln::plan::SourceFormat::Csv(CsvOptions {
            header: s.header.as_ref().is_none_or(|h| h.value),
            delimiter: s.delimiter.as_ref().map_or(b',', |v| v.value.as_bytes()[0]),
            quote: s.quote.as_ref().map_or(b'"', |v| v.value.as_bytes()[0]),
            null_value: s.null_value.as_ref().map(|v| v.value.clone()),
            on_error: match (s.on_error.as_ref().map(|o| o.as_str()), &s.quarantine) {
                (Some("skip"), _) => OnError::Skip,
                (Some("quarantine"), Some(q)) => OnError::Quarantine(q.value.clone()),
                _ => OnError::Fail,
            },
        }),
        SourceFormat::Json => kiln::plan::SourceFormat::Json,
        SourceFormat::Avro => kiln::plan::SourceFormat::Avro,
        SourceFormat::Orc => kiln::plan::SourceFormat::Orc,
        _ => kiln::plan::SourceFormat::Parquet,
    }
}

fn declared_schema(s: &SourceDecl, d: &mut Diags) -> Option<SchemaRef> {
    let decl = s.schema.as_ref()?;
    if decl.value.is_empty() {
        d.push(Diagnostic::error("kiln::bad-value", decl.span.clone(), format!("source `{}`: `schema` is empty", s.name.value)).label("declare at least one column"));
        return None;
    }
    let mut fields = Vec::new();
    let mut ok = true;
    for (name, ty) in &decl.value {
        match types::parse(&ty.value) {
            Ok(ct) => fields.push(Field::new(&name.value, ct.data_type, ct.nullable)),
            Err(msg) => {
                d.push(bad_type(ty, &msg));
                ok = false;
            }
        }
    }
    ok.then(|| Arc::new(Schema::new(fields)))
}

fn check_declared_against_file(s: &SourceDecl, declared: &SchemaRef, found: &SchemaRef, d: &mut Diags) {
    let Some(decl) = &s.schema else { return };
    for (name, ty) in &decl.value {
        let want = declared.field_with_name(&name.value).map(|f| f.data_type().clone()).ok();
        match found.field_with_name(&name.value) {
            Err(_) => d.push(
                Diagnostic::error("kiln::schema-mismatch", name.span.clone(), format!("source `{}`: column `{}` is not in the file", s.name.value, name.value))
                    .label("declared here")
                    .note(format!("the file has: {}", found.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "))),
            ),
            // List item names differ between writers (`item`, `element`): they are not the type.
            Ok(f) if !want.as_ref().is_some_and(|w| w.equals_datatype(f.data_type())) => d.push(
                Diagnostic::error("kiln::schema-mismatch", ty.span.clone(), format!("source `{}`: column `{}` is {} in the file", s.name.value, name.value, display(f.data_type())))
                    .label(format!("declared {}", ty.value)),
            ),
            Ok(_) => {}
        }
    }
}

fn infer_inline_schema(s: &SourceDecl, d: &mut Diags) -> Option<SchemaRef> {
    let mut fields: Vec<(String, DataType)> = Vec::new();
    for row in &s.rows {
        for (col, value) in &row.value {
            let t = literal_type(&value.value);
            match fields.iter_mut().find(|(n, _)| n == &col.value) {
                None => fields.push((col.value.clone(), t)),
                Some((_, have)) if *have == t => {}
                Some((_, have)) if have.is_numeric() && t.is_numeric() => *have = DataType::Float64,
                Some((_, have)) => {
                    d.push(
                        Diagnostic::error("kiln::type-mismatch", value.span.clone(), format!("source `{}`: column `{}` mixes {} and {}", s.name.value, col.value, display(have), display(&t)))
                            .label("this value")
                            .help("declare the column's type in `schema`"),
                    );
                    return None;
                }
            }
        }
    }
    if fields.is_empty() {
        d.push(Diagnostic::error("kiln::missing-key", s.name.span.clone(), format!("source `{}`: no rows and no schema", s.name.value)).label("cannot tell the columns"));
        return None;
    }
    Some(Arc::new(Schema::new(fields.into_iter().map(|(n, t)| Field::new(n, t, true)).collect::<Vec<_>>())))
}

fn inline_rows(s: &SourceDecl, schema: &SchemaRef, d: &mut Diags) -> Option<Vec<Vec<ScalarValue>>> {
    let mut rows = Vec::new();
    let mut ok = true;
    for row in &s.rows {
        let mut values = Vec::new();
        for field in schema.fields() {
            let cell = row.value.iter().find(|(c, _)| &c.value == field.name());
            values.push(match cell {
                Some((_, v)) => match literal_value(&v.value, field.data_type()) {
                    Ok(x) => x,
                    Err(msg) => {
                        d.push(Diagnostic::error("kiln::type-mismatch", v.span.clone(), format!("source `{}`: column `{}`: {msg}", s.name.value, field.name())).label("this value"));
                        ok = false;
                        continue;
                    }
                },
                None => ScalarValue::try_from(field.data_type()).ok()?,
            });
        }
        for (c, _) in &row.value {
            if schema.field_with_name(&c.value).is_err() {
                d.push(unknown_column(&c.value, &c.span, &schema_names(schema)));
                ok = false;
            }
        }
        rows.push(values);
    }
    ok.then_some(rows)
}

// ---------------------------------------------------------------- transforms

pub(super) fn transform(
    t: &TransformDecl,
    inputs: &[LogicalPlan],
    checker: &ExprChecker,
    models: &std::collections::HashMap<String, Option<kiln::plan::Model>>,
    d: &mut Diags,
) -> Option<(Node, LogicalPlan)> {
    let name = t.name.value.clone();
    let input = &inputs[0];
    let inp = t.input().value.clone();
    let schema = input.schema().as_ref().clone();
    let columns = schema_names(input.schema().inner());
    let before = d.0.len();
    let op = match &t.body {
        TransformBody::Filter { predicate } => {
            let e = parse_checked(checker, predicate, input, d, |b, e| b.project(vec![e]))?;
            require_boolean(&e, predicate, input, checker, d)?;
            Op::Filter { input: inp, predicate: e }
        }
        TransformBody::Select { columns: items } => {
            let mut exprs = Vec::new();
            let mut seen: HashSet<String> = HashSet::new();
            for item in items {
                // `*` is every input column, in order (PySpark's select("*", …)).
                if item.value.trim() == "*" {
                    for c in schema_names(input.schema().inner()) {
                        if !seen.insert(c.clone()) {
                            d.push(duplicate_output(&c, &item.span));
                        }
                        exprs.push(Expr::Column(datafusion::common::Column::from_name(c)));
                    }
                    continue;
                }
                if let Some(e) = parse_checked(checker, item, input, d, |b, e| b.project(vec![e])) {
                    let out = e.schema_name().to_string();
                    let out = match &e {
                        Expr::Alias(a) => a.name.clone(),
                        Expr::Column(c) => c.name.clone(),
                        _ => out,
                    };
                    if !seen.insert(out.clone()) {
                        d.push(duplicate_output(&out, &item.span));
                    }
                    exprs.push(e);
                }
            }
            Op::Select { input: inp, columns: exprs }
        }
        TransformBody::WithColumns { columns: items } => {
            let mut current = input.clone();
            let mut done = Vec::new();
            for (col, text) in items {
                let Some(e) = parse_checked(checker, text, &current, d, |b, e| b.project(vec![e])) else { continue };
                done.push((col.value.clone(), e));
                let partial = Op::WithColumns { input: inp.clone(), columns: vec![done.last().cloned()?] };
                current = kiln::transforms::build(&inp, &partial, &[current]).ok()?;
            }
            Op::WithColumns { input: inp, columns: done }
        }
        TransformBody::Drop { columns: items } => {
            for c in items {
                require_column(c, &columns, d);
            }
            Op::Drop { input: inp, columns: items.iter().map(|c| c.value.clone()).collect() }
        }
        TransformBody::Rename { columns: pairs } => {
            let mut out: Vec<String> = columns.clone();
            for (old, new) in pairs {
                if require_column(old, &columns, d) {
                    if let Some(slot) = out.iter_mut().find(|c| **c == old.value) {
                        *slot = new.value.clone();
                    }
                }
            }
            let mut seen = HashSet::new();
            for (_, new) in pairs {
                if out.iter().filter(|c| **c == new.value).count() > 1 && seen.insert(new.value.clone()) {
                    d.push(duplicate_output(&new.value, &new.span));
                }
            }
            Op::Rename { input: inp, columns: pairs.iter().map(|(o, n)| (o.value.clone(), n.value.clone())).collect() }
        }
        TransformBody::Cast { columns: pairs } => {
            let mut out = Vec::new();
            for (col, ty) in pairs {
                if !require_column(col, &columns, d) {
                    continue;
                }
                let to = match types::parse(&ty.value) {
                    Ok(ct) => ct.data_type,
                    Err(msg) => {
                        d.push(bad_type(ty, &msg));
                        continue;
                    }
                };
                let from = schema.field_with_unqualified_name(&col.value).map(|f| f.data_type().clone()).ok()?;
                if !can_cast_types(&from, &to) {
                    d.push(
                        Diagnostic::error("kiln::bad-cast", ty.span.clone(), format!("cannot cast `{}` from {} to {}", col.value, display(&from), display(&to)))
                            .label("no such conversion"),
                    );
                    continue;
                }
                out.push((col.value.clone(), to));
            }
            Op::Cast { input: inp, columns: out }
        }
        TransformBody::FillNull { values } => {
            let mut out = Vec::new();
            for (col, lit) in values {
                if !require_column(col, &columns, d) {
                    continue;
                }
                let dt = schema.field_with_unqualified_name(&col.value).map(|f| f.data_type().clone()).ok()?;
                match literal_value(&lit.value, &dt) {
                    Ok(v) => out.push((col.value.clone(), v)),
                    Err(msg) => d.push(
                        Diagnostic::error("kiln::type-mismatch", lit.span.clone(), format!("fill value for `{}` (a {} column): {msg}", col.value, display(&dt)))
                            .label("wrong type for this column"),
                    ),
                }
            }
            Op::FillNull { input: inp, values: out }
        }
        TransformBody::Dedupe { keys, keep, order_by } => {
            let keys: Vec<String> = match keys {
                Some(ks) => ks.iter().filter(|k| require_column(k, &columns, d)).map(|k| k.value.clone()).collect(),
                None => Vec::new(),
            };
            let keep = match keep.as_ref().map(|k| k.as_str()) {
                Some("first") => Keep::First,
                Some("last") => Keep::Last,
                Some(_) => Keep::Any,
                None if order_by.is_empty() => Keep::Any,
                None => Keep::First,
            };
            let order_by = order_by
                .iter()
                .filter_map(|o| checker.parse_sort(o, &schema).map_err(|e| d.push(e)).ok())
                .collect();
            Op::Dedupe { input: inp, keys, keep, order_by }
        }
        TransformBody::Aggregate { group_by, aggregates, having } => {
            let group: Vec<Expr> = group_by
                .iter()
                .filter_map(|g| parse_checked(checker, g, input, d, |b, e| b.aggregate(vec![e], Vec::<Expr>::new())))
                .collect();
            let mut aggs = Vec::new();
            let mut seen: HashSet<&str> = group_by.iter().map(|g| g.as_str()).collect();
            for (out, text) in aggregates {
                if !seen.insert(out.as_str()) {
                    d.push(duplicate_output(&out.value, &out.span));
                }
                let help = "group keys are output as they are; compute expressions of rows before the aggregate";
                if let Some(e) = aggregate_column(&name, out, text, input, &group, checker, help, d) {
                    aggs.push(e);
                }
            }
            let mut op = Op::Aggregate { input: inp.clone(), group_by: group.clone(), aggregates: aggs.clone(), having: None };
            if let Some(h) = having {
                if !d.0.iter().skip(before).any(|x| x.is_error()) {
                    let agg_plan = kiln::transforms::build(&name, &op, &[input.clone()]).ok()?;
                    let e = parse_checked(checker, h, &agg_plan, d, |b, e| b.project(vec![e]));
                    if let Some(e) = e.filter(|e| require_boolean(e, h, &agg_plan, checker, d).is_some()) {
                        op = Op::Aggregate { input: inp, group_by: group, aggregates: aggs, having: Some(e) };
                    }
                }
            }
            op
        }
        TransformBody::Window { partition_by, order_by, frame, columns: items } => {
            super::window::lower(t, input, partition_by, order_by, frame.as_ref(), items, checker, d)?
        }
        TransformBody::EventWindow { time_column, size, slide, watermark, output_mode, partition_by, columns: items } => {
            let window = super::window::lower_event(t, input, time_column, (size, slide.as_ref(), watermark.as_ref()), output_mode.as_ref(), partition_by, items, checker, d)?;
            Op::EventWindow { input: inp, window }
        }
        TransformBody::Predict { model, features, list, output, batch_size } => {
            super::predict::lower(t, input, model, features, *list, output, batch_size.as_ref(), models, d)?
        }
        TransformBody::Join { how, on, strategy, salt } => super::join::lower(t, inputs, how, on, strategy.as_ref(), salt.as_ref(), checker, d)?,
        TransformBody::Union { by_name, distinct } => {
            if !by_name {
                let n = input.schema().fields().len();
                for (decl, plan) in t.inputs.iter().zip(inputs).skip(1) {
                    if plan.schema().fields().len() != n {
                        d.push(
                            Diagnostic::error("kiln::union-mismatch", decl.span.clone(), format!("`{}` has {} columns; `{}` has {n}", decl.value, plan.schema().fields().len(), t.input().value))
                                .label("different number of columns")
                                .help("with by_name = false columns are matched by position; select the same columns on every input, or use by_name = true"),
                        );
                    }
                }
            }
            Op::Union { inputs: t.inputs.iter().map(|i| i.value.clone()).collect(), by_name: *by_name, distinct: *distinct }
        }
        TransformBody::Sort { order_by } => {
            let order_by = order_by.iter().filter_map(|o| checker.parse_sort(o, &schema).map_err(|e| d.push(e)).ok()).collect();
            Op::Sort { input: inp, order_by }
        }
        TransformBody::Limit { n } => Op::Limit { input: inp, n: n.value as usize },
        TransformBody::Repartition { partitions, by } => {
            let by = by.iter().filter_map(|b| checker.parse(b, &schema).map_err(|e| d.push(e)).ok()).collect();
            Op::Repartition { input: inp, partitions: partitions.value as usize, by }
        }
        TransformBody::Coalesce { partitions } => Op::Coalesce { input: inp, partitions: partitions.value as usize },
        TransformBody::Expect { rules } => super::expect::lower(t, inputs, rules, checker, d)?,
        TransformBody::Sql { query } => {
            let tables: Vec<(String, SchemaRef)> =
                t.inputs.iter().zip(inputs).map(|(i, p)| (i.value.clone(), Arc::new(p.schema().as_arrow().clone()))).collect();
            let plan = checker.plan_sql(query, &tables).map_err(|e| d.push(e)).ok()?;
            let bytes = match kiln::transforms::sql::encode(&plan) {
                Ok(b) => b,
                Err(e) => {
                    d.push(Diagnostic::error("kiln::invalid-transform", query.span.clone(), format!("this query cannot be carried into the binary: {e}")).label("here"));
                    return None;
                }
            };
            Op::Sql { inputs: t.inputs.iter().map(|i| i.value.clone()).collect(), query: query.value.clone(), plan: bytes }
        }
    };
    if d.0.iter().skip(before).any(|x| x.is_error()) {
        return None;
    }
    let plan = kiln::transforms::build(&name, &op, inputs).map_err(|e| e.to_string()).and_then(|p| checker.analyze(p).map_err(|e| clean_message(&e)));
    match plan {
        Ok(plan) => Some((Node { name, op }, plan)),
        Err(msg) => {
            d.push(Diagnostic::error("kiln::invalid-transform", t.name.span.clone(), format!("transform `{}`: {msg}", t.name.value)).label("while planning this transform"));
            None
        }
    }
}

/// One aggregate output (`aggregates.NAME` of an `aggregate`, `columns.NAME` of an
/// event-time `window`): `text` parsed against `input`, required to compute an
/// aggregate, aliased to `out`, and checked inside an aggregate by `group` (so a
/// mistake is reported at its own string).
#[allow(clippy::too_many_arguments)]
pub(super) fn aggregate_column(node: &str, out: &Sp<String>, text: &Sp<String>, input: &LogicalPlan, group: &[Expr], checker: &ExprChecker, help: &str, d: &mut Diags) -> Option<Expr> {
    let schema = input.schema().as_ref();
    let e = checker.parse(text, schema).map_err(|e| d.push(e)).ok()?;
    // `count(*)` comes back aliased; the output name is the spec's key.
    let e = match e {
        Expr::Alias(a) => *a.expr,
        e => e,
    };
    if datafusion::logical_expr::utils::find_aggregate_exprs([&e]).is_empty() {
        d.push(
            Diagnostic::error("kiln::not-an-aggregate", checker.span_of(text), format!("`{}` computes no aggregate", text.value))
                .label("expected an aggregate call such as sum(x), avg(x), count(*), or an expression of them")
                .help(help.to_string()),
        );
        return None;
    }
    let e = e.alias(&out.value);
    let one = Op::Aggregate { input: String::new(), group_by: group.to_vec(), aggregates: vec![e.clone()], having: None };
    let plan = kiln::transforms::build(node, &one, &[input.clone()]).map_err(|e| match e {
        kiln::Error::DataFusion(e) => e,
        kiln::Error::Node { message, .. } => datafusion::error::DataFusionError::Plan(message),
        e => datafusion::error::DataFusionError::Plan(e.to_string()),
    });
    match plan.and_then(|p| checker.analyze(p)) {
        Ok(_) => Some(e),
        Err(err) => {
            d.push(checker.diagnostic(&err, text, schema, false));
            None
        }
    }
}

/// Parses `text` against `input`'s schema and checks it inside the plan that
/// `wrap` builds (so type coercion runs exactly as in the real plan).
fn parse_checked(
    checker: &ExprChecker,
    text: &Sp<String>,
    input: &LogicalPlan,
    d: &mut Diags,
    wrap: impl Fn(LogicalPlanBuilder, Expr) -> datafusion::error::Result<LogicalPlanBuilder>,
) -> Option<Expr> {
    let schema: &DFSchema = input.schema();
    let e = checker.parse(text, schema).map_err(|e| d.push(e)).ok()?;
    let plan = wrap(LogicalPlanBuilder::from(input.clone()), e.clone()).and_then(|b| b.build());
    match plan.and_then(|p| checker.analyze(p)) {
        Ok(_) => Some(e),
        Err(err) => {
            d.push(checker.diagnostic(&err, text, schema, false));
            None
        }
    }
}

/// A predicate must be a condition.
fn require_boolean(e: &Expr, text: &Sp<String>, input: &LogicalPlan, checker: &ExprChecker, d: &mut Diags) -> Option<()> {
    use datafusion::logical_expr::ExprSchemable;
    match e.get_type(input.schema()) {
        Ok(DataType::Boolean) | Ok(DataType::Null) => Some(()),
        Ok(other) => {
            d.push(
                Diagnostic::error("kiln::not-a-condition", checker.span_of(text), format!("`{}` is {}, not a condition (bool)", text.value, display(&other)))
                    .label("expected a true/false expression")
                    .help("compare it with something, e.g. `amount > 0`"),
            );
            None
        }
        Err(_) => Some(()),
    }
}

pub(super) fn schema_names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

pub(super) fn unknown_column(name: &str, span: &std::ops::Range<usize>, columns: &[String]) -> Diagnostic {
    let mut d = Diagnostic::error("kiln::unknown-column", span.clone(), format!("unknown column `{name}`")).label("not a column of the input");
    if let Some(h) = did_you_mean(name, columns.iter().map(String::as_str)) {
        d = d.help(h);
    }
    d.note(format!("the input's columns: {}", columns.join(", ")))
}

pub(super) fn require_column(c: &Sp<String>, columns: &[String], d: &mut Diags) -> bool {
    if columns.contains(&c.value) {
        return true;
    }
    d.push(unknown_column(&c.value, &c.span, columns));
    false
}

pub(super) fn duplicate_output(name: &str, span: &std::ops::Range<usize>) -> Diagnostic {
    Diagnostic::error("kiln::duplicate-column", span.clone(), format!("two output columns are named `{name}`"))
        .label("second column with this name")
        .help("rename one of them with `AS`")
}

// ---------------------------------------------------------------- sinks

pub(super) fn sink(s: &SinkDecl, input: &LogicalPlan, checker: &ExprChecker, d: &mut Diags) -> Option<Sink> {
    let columns = schema_names(input.schema().inner());
    let before = d.0.len();
    for p in &s.partition_by {
        require_column(p, &columns, d);
    }
    if !s.partition_by.is_empty() && s.partition_by.len() == columns.len() {
        d.push(
            Diagnostic::error("kiln::bad-value", s.partition_by[0].span.clone(), format!("sink `{}`: every column is a partition column", s.name.value))
                .label("the files would hold no columns"),
        );
    }
    // kafka: the key is a column; CSV record values hold flat values only, as CSV files.
    let kafka_csv = s.kafka.as_ref().and_then(|k| k.value_format.as_ref()).is_some_and(|f| f.as_str() == "csv");
    if let Some(k) = s.kafka.as_ref().and_then(|k| k.key.as_ref()) {
        require_column(k, &columns, d);
    }
    // CSV holds flat values only: a list or struct column cannot be written (Spark refuses too).
    if s.format.as_str() == "csv" || kafka_csv {
        for f in input.schema().fields() {
            if f.data_type().is_nested() {
                d.push(
                    Diagnostic::error("kiln::unsupported-type", s.format.span.clone(), format!("sink `{}`: column `{}` is {}, which CSV cannot hold", s.name.value, f.name(), display(f.data_type())))
                        .label("a CSV sink")
                        .help(format!("write json or parquet, or drop the column (or turn it into a string, e.g. array_to_string({}, ','))", f.name())),
                );
            }
        }
    }
    // orc-rust's writer stores flat types only (and panics on others): say so here.
    if s.format.as_str() == "orc" {
        for f in input.schema().fields() {
            if kiln::sinks::orc_schema(&datafusion::arrow::datatypes::Schema::new(vec![f.as_ref().clone()])).is_err() {
                d.push(
                    Diagnostic::error("kiln::unsupported-type", s.format.span.clone(), format!("sink `{}`: column `{}` is {}, which Kiln's ORC writer cannot store", s.name.value, f.name(), display(f.data_type())))
                        .label("an ORC sink")
                        .help("ORC sinks take integer, float, bool, string, binary, date and timestamp (no zone, or UTC) columns: cast the column (decimals to float64 or string), drop it, or write parquet"),
                );
            }
        }
    }
    // delta: merge keys are columns; replace_where is a condition on the written columns.
    let mut replace_where = None;
    let mut delete_where = None;
    if s.format.as_str() == "delta" {
        for k in &s.keys {
            require_column(k, &columns, d);
        }
        if let Some(text) = &s.replace_where {
            if let Some(e) = parse_checked(checker, text, input, d, |b, e| b.filter(e)) {
                if require_boolean(&e, text, input, checker, d).is_some() {
                    replace_where = Some(unqualified(e));
                }
            }
        }
        if let Some(text) = &s.delete_where {
            if let Some(e) = parse_checked(checker, text, input, d, |b, e| b.filter(e)) {
                if require_boolean(&e, text, input, checker, d).is_some() {
                    delete_where = Some(unqualified(e));
                }
            }
        }
    }
    if s.format.as_str() == "postgres" {
        for k in &s.keys {
            require_column(k, &columns, d);
        }
        for f in input.schema().fields() {
            if kiln::postgres::write::pg_type(f.data_type()).is_none() {
                d.push(
                    Diagnostic::error("kiln::unsupported-type", s.format.span.clone(), format!("sink `{}`: column `{}` is {}, which has no PostgreSQL column type Kiln writes", s.name.value, f.name(), display(f.data_type())))
                        .label("a postgres sink")
                        .help("cast the column (e.g. to string), or drop it"),
                );
            }
        }
    }
    if d.0.iter().skip(before).any(|x| x.is_error()) {
        return None;
    }
    let format = match s.format.as_str() {
        "parquet" => SinkFormat::Parquet,
        "csv" => SinkFormat::Csv,
        "json" => SinkFormat::Json,
        "avro" => SinkFormat::Avro,
        "orc" => SinkFormat::Orc,
        "postgres" => SinkFormat::Postgres,
        "delta" => SinkFormat::Delta,
        "kafka" => SinkFormat::Kafka,
        _ => SinkFormat::Console,
    };
    let mode = match s.mode.as_ref().map(|m| m.as_str()) {
        Some("append") => WriteMode::Append,
        Some("error_if_exists") => WriteMode::ErrorIfExists,
        Some("ignore") => WriteMode::Ignore,
        Some("overwrite_partitions") => WriteMode::OverwritePartitions,
        Some("upsert") => WriteMode::Upsert,
        Some("merge") => WriteMode::Merge,
        _ if s.format.as_str() == "kafka" => WriteMode::Append,
        _ => WriteMode::Overwrite,
    };
    Some(Sink {
        name: s.name.value.clone(),
        input: s.input.value.clone(),
        format,
        path: s.path.as_ref().or(s.url.as_ref()).map(|p| p.value.clone()).unwrap_or_default(),
        mode,
        partition_by: s.partition_by.iter().map(|p| p.value.clone()).collect(),
        compression: s.compression.as_ref().map(|c| c.value.clone()),
        single_file: s.single_file.as_ref().is_some_and(|v| v.value),
        table: s.table.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
        keys: s.keys.iter().map(|k| k.value.clone()).collect(),
        replace_where,
        delete_where,
        schema_merge: s.schema_mode.as_ref().is_some_and(|m| m.as_str() == "merge"),
        kafka: s.kafka.as_ref().map(|k| kiln::plan::KafkaSink {
            value_format: if kafka_csv { kiln::plan::KafkaValueFormat::Csv } else { kiln::plan::KafkaValueFormat::Json },
            key: k.key.as_ref().map(|c| c.value.clone()),
            options: k.options.iter().map(|(a, b)| (a.value.clone(), b.value.clone())).collect(),
        }),
    })
}

/// `e` with its columns unqualified (`node.day` → `day`): a Delta predicate is
/// evaluated against the table, whose columns have no qualifier.
fn unqualified(e: Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name))),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .expect("rewriting columns cannot fail")
}
