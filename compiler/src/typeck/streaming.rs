//! `[pipeline] mode = "streaming"` (SPEC §8): which sources are streams, and
//! what a micro-batch pipeline can compute. Everything downstream of a stream
//! is evaluated per batch, so only operations whose per-batch result is the
//! result over the stream are accepted: row-wise transforms, stream-static
//! joins, unions of streams, `predict`, row-level `expect` rules, and the
//! event-time `window`, which keeps its own state in the checkpoint.

use std::collections::HashSet;

use kiln::plan::{JoinHow, Node, Op, RuleKind, Streaming, Trigger};

use crate::diag::{Diagnostic, Diags};
use crate::spec::{SourceFormat, Spec};

/// File extensions that make a source path a file (not a directory to watch).
const FILE_EXTENSIONS: &[&str] = &[".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".avro", ".orc", ".txt", ".gz"];

/// Whether a file source's path names one file or a glob rather than a directory.
fn names_files(path: &str) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    path.contains(['*', '?', '[']) || (!path.ends_with('/') && FILE_EXTENSIONS.iter().any(|e| last.to_ascii_lowercase().ends_with(e)))
}

pub(super) fn lower(spec: &Spec, nodes: &[Node], d: &mut Diags) -> Option<Streaming> {
    let mode = spec.pipeline.mode.as_ref();
    let streaming = mode.is_some_and(|m| m.as_str() == "streaming");
    if !streaming {
        if let Some(t) = &spec.pipeline.trigger {
            d.push(Diagnostic::error("kiln::conflict", t.span.clone(), "pipeline: `trigger` is for streaming pipelines").label("not used").help("add mode = \"streaming\" to [pipeline], or remove the trigger"));
        }
        for s in &spec.sources {
            if s.format.value == SourceFormat::Kafka {
                d.push(
                    Diagnostic::error("kiln::unsupported", s.format.span.clone(), format!("source `{}`: a kafka source is read by a streaming pipeline", s.name.value))
                        .label("a topic has no end")
                        .help("[pipeline]\nmode = \"streaming\"\ntrigger = \"available_now\"  # reads what the topic holds, then exits"),
                );
            }
            if let Some(v) = s.streaming.as_ref().filter(|v| v.value) {
                d.push(Diagnostic::error("kiln::conflict", v.span.clone(), format!("source `{}`: `streaming = true` needs [pipeline] mode = \"streaming\"", s.name.value)).label("a batch pipeline reads every source once"));
            }
        }
        return None;
    }
    let mode = mode.expect("streaming");
    if spec.runtime.checkpoint_dir.is_none() {
        d.push(
            Diagnostic::error("kiln::missing-key", mode.span.clone(), "a streaming pipeline needs [runtime] checkpoint_dir")
                .label("streaming")
                .help("[runtime]\ncheckpoint_dir = \"checkpoints/NAME\"  # offsets, files read and window state")
                .note("SPEC §8: state and source positions live in checkpoint_dir"),
        );
    }
    let trigger = spec.pipeline.trigger.as_ref().and_then(|t| Trigger::parse(&t.value)).unwrap_or(Trigger::IntervalMs(0));

    // Stream sources: file sources reading a directory, unless `streaming = false`.
    let mut sources = Vec::new();
    for s in &spec.sources {
        let file_format = matches!(s.format.value, SourceFormat::Csv | SourceFormat::Json | SourceFormat::Parquet | SourceFormat::Avro);
        let path = s.path.as_ref().map(|p| p.value.as_str()).unwrap_or("");
        if s.format.value == SourceFormat::Kafka {
            if let Some(v) = s.streaming.as_ref().filter(|v| !v.value) {
                d.push(Diagnostic::error("kiln::bad-value", v.span.clone(), format!("source `{}`: a kafka source is always a stream", s.name.value)).label("cannot be static"));
            }
            sources.push((s.name.value.clone(), None));
            continue;
        }
        let stream = match &s.streaming {
            Some(v) if v.value && !file_format => {
                d.push(
                    Diagnostic::error("kiln::unsupported", v.span.clone(), format!("source `{}`: a {:?} source cannot be read as a stream", s.name.value, s.format.value).to_lowercase())
                        .label("not a stream")
                        .help("streams are directories of csv, json, parquet or avro files (SPEC §8)"),
                );
                false
            }
            Some(v) if v.value && names_files(path) => {
                d.push(
                    Diagnostic::error("kiln::bad-value", s.path.as_ref().map_or(v.span.clone(), |p| p.span.clone()), format!("source `{}`: a stream reads a directory, and `{path}` names files", s.name.value))
                        .label("a file or a glob")
                        .help("point path at the directory new files arrive in"),
                );
                false
            }
            Some(v) => v.value,
            None => file_format && !names_files(path),
        };
        if stream {
            sources.push((s.name.value.clone(), s.max_files_per_trigger.as_ref().map(|n| n.value as usize)));
        } else if let Some(n) = &s.max_files_per_trigger {
            d.push(Diagnostic::error("kiln::conflict", n.span.clone(), format!("source `{}`: `max_files_per_trigger` is for stream sources", s.name.value)).label("this source is read whole every batch"));
        }
    }
    if sources.is_empty() {
        d.push(
            Diagnostic::error("kiln::bad-value", mode.span.clone(), "a streaming pipeline needs a stream source")
                .label("no source is a stream")
                .help("a kafka source, or a csv, json, parquet or avro source whose path is a directory (new files are read as they arrive)"),
        );
        return None;
    }

    // Which nodes carry the stream, and whether each one can.
    let span_of = |name: &str| -> std::ops::Range<usize> {
        let base = name.split('.').next().unwrap_or(name);
        spec.transforms.iter().find(|t| t.name.value == base).map(|t| t.kind.span.clone()).unwrap_or(mode.span.clone())
    };
    let mut streamed: HashSet<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
    let mut stateful: HashSet<&str> = HashSet::new();
    for n in nodes {
        let inputs = n.op.inputs();
        let from_stream: Vec<bool> = inputs.iter().map(|i| streamed.contains(i)).collect();
        if !from_stream.iter().any(|s| *s) {
            continue;
        }
        streamed.insert(n.name.as_str());
        if inputs.iter().any(|i| stateful.contains(i)) {
            stateful.insert(n.name.as_str());
        }
        let refuse = |d: &mut Diags, why: &str, help: &str| {
            d.push(Diagnostic::error("kiln::unsupported-in-streaming", span_of(&n.name), format!("transform `{}`: {why}", n.name)).label("reads a stream").help(help.to_string()));
        };
        match &n.op {
            Op::Filter { .. } | Op::Select { .. } | Op::WithColumns { .. } | Op::Drop { .. } | Op::Rename { .. } | Op::Cast { .. } | Op::FillNull { .. } | Op::Predict { .. } | Op::Repartition { .. } | Op::Coalesce { .. } => {}
            Op::Union { .. } if from_stream.iter().all(|s| *s) => {}
            Op::Union { .. } => refuse(d, "a union of a stream and a static input would repeat the static rows every batch", "union streams with streams; join static data instead"),
            Op::Join { how, .. } => {
                let ok = match (from_stream[0], from_stream[1]) {
                    (true, true) => {
                        refuse(d, "joining two streams needs state this version of kiln does not keep", "join a stream with static data (a file, inline rows, a table); see the docs on stream-stream joins");
                        true
                    }
                    (true, false) => matches!(how, JoinHow::Inner | JoinHow::Left | JoinHow::Semi | JoinHow::Anti | JoinHow::Cross),
                    _ => matches!(how, JoinHow::Inner | JoinHow::Right | JoinHow::Cross),
                };
                if !ok {
                    refuse(d, &format!("a {} join would emit the static side's unmatched rows every batch", how.name()), "inner, left, semi or anti with the stream on the left (right with the stream on the right)");
                }
            }
            Op::Expect { rules, .. } => {
                for r in rules {
                    if matches!(r.kind, RuleKind::Unique(_) | RuleKind::RowCount { .. }) {
                        refuse(d, &format!("rule `{}` looks at the whole input, and a stream is never whole", r.name), "row rules (check, not_null, accepted_values, range, regex) and exists_in work per batch");
                    }
                }
            }
            Op::EventWindow { .. } => {
                if inputs.iter().any(|i| stateful.contains(i)) {
                    refuse(d, "a window over another window's output is not supported yet", "window the stream once; transform its output row by row");
                }
                stateful.insert(n.name.as_str());
            }
            Op::Window { .. } => refuse(d, "an analytic window over a stream has no end to order by", "give the window a time_column and tumble or hop (an event-time window, SPEC §8)"),
            Op::Aggregate { .. } => refuse(d, "an aggregate over a stream never finishes", "aggregate per event-time window: type = \"window\" with time_column, tumble and watermark"),
            Op::Dedupe { .. } | Op::Sort { .. } | Op::Limit { .. } | Op::Sql { .. } => refuse(d, &format!("`{}` over a stream needs state this version of kiln does not keep", n.op.kind()), "compute it on the sink's output in a batch pipeline"),
            Op::Source(_) => {}
        }
        if spec.transforms.iter().any(|t| t.name.value == n.name && t.checkpoint.as_ref().is_some_and(|c| c.value)) {
            refuse(d, "`checkpoint = true` is for batch pipelines", "a streaming pipeline's state is kept in checkpoint_dir by itself");
        }
    }
    for s in &spec.sinks {
        if !streamed.contains(s.input.as_str()) {
            d.push(
                Diagnostic::error("kiln::bad-value", s.input.span.clone(), format!("sink `{}` reads no stream: it would write the same rows every batch", s.name.value))
                    .label("static input")
                    .help("sinks of a streaming pipeline read nodes downstream of a stream source"),
            );
        }
        if !matches!(s.format.as_str(), "parquet" | "csv" | "json" | "delta" | "kafka" | "console") {
            d.push(
                Diagnostic::error("kiln::unsupported-in-streaming", s.format.span.clone(), format!("sink `{}`: {} sinks are not supported in streaming pipelines yet", s.name.value, s.format.value))
                    .label("not in streaming")
                    .help("parquet, csv, json (each batch appends its files, committed with the checkpoint), delta (one version per batch), kafka (at least once) or console"),
            );
        }
        if let Some(m) = s.mode.as_ref().filter(|m| m.as_str() != "append") {
            d.push(
                Diagnostic::error("kiln::bad-value", m.span.clone(), format!("sink `{}`: a streaming sink appends each batch's rows; mode = \"{}\" does not apply", s.name.value, m.value))
                    .label("not in streaming")
                    .help("remove `mode` (or write mode = \"append\")"),
            );
        }
    }
    Some(Streaming { trigger, sources })
}
