//! Kafka sinks (issue 17): each row of the sink's input becomes one record of a
//! topic, its value one JSON object (`value_format = "json"`, the default; the
//! same encoding as a JSON sink's lines) or one CSV line without a header, its
//! key the text of the `key` column when one is named.
//!
//! **At least once.** A record sent cannot be taken back, so staging writes the
//! rows to a local Arrow IPC file and sends nothing. The records are sent when
//! the run commits: after every sink has staged and every `fail` rule passed,
//! before the file sinks commit — and, in a streaming batch, before the
//! checkpoint that marks the batch done. A process killed after sending and
//! before that commit sends the batch's records again when the batch runs
//! again: nothing is lost, and a batch may arrive twice. Each record carries
//! the header `kiln-batch` (`PIPELINE/QUERY/N` for a stream's batch N, `PIPELINE/run-ID`
//! for a batch run), by which a consumer can recognise a repeated batch.
//! Spark's Kafka sink makes the same promise. Exactly once would need Kafka
//! transactions fenced by the checkpoint; this version does not use them.
//!
//! Without the runtime's `kafka` feature (librdkafka), staging works and sending
//! refuses; `sinks::Target::for_sink` refuses a kafka sink before the run.

use std::path::{Path, PathBuf};
#[cfg(feature = "kafka")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "kafka")]
use std::sync::{Arc, Mutex};
#[cfg(feature = "kafka")]
use std::time::Duration;

#[cfg(feature = "kafka")]
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
#[cfg(feature = "kafka")]
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use futures::StreamExt;
#[cfg(feature = "kafka")]
use rdkafka::ClientConfig;
#[cfg(feature = "kafka")]
use rdkafka::message::{Header, OwnedHeaders};
#[cfg(feature = "kafka")]
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

#[cfg(feature = "kafka")]
use crate::plan::KafkaValueFormat;
use crate::plan::{KafkaSink, Sink};
use crate::{Error, Result};

/// How long sending may wait for the brokers to acknowledge every record.
#[cfg(feature = "kafka")]
const FLUSH: Duration = Duration::from_secs(120);

/// A topic a sink writes, with its settings resolved (parameters, `${env.X}`).
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    pub sink: String,
    pub brokers: String,
    pub topic: String,
    pub options: Vec<(String, String)>,
    /// The `kiln-batch` header's value.
    pub tag: String,
    /// Where the rows wait for the commit: a streaming batch's work directory (removed
    /// with it); none: the system's temporary directory.
    pub staging: Option<PathBuf>,
    /// The producer, kept from one batch of a stream to the next (one connection and
    /// handshake per run, not per batch); dropped after a failed send.
    pub producer: ProducerCache,
}

/// A sink's producer, shared by the clones of its target.
#[derive(Clone, Default)]
pub struct ProducerCache(#[cfg(feature = "kafka")] Arc<Mutex<Option<Arc<ThreadedProducer<Deliveries>>>>>);

impl std::fmt::Debug for ProducerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProducerCache")
    }
}

impl KafkaTarget {
    /// `brokers/topic`, for messages (the options, which may hold credentials, never).
    pub fn describe(&self) -> String {
        format!("kafka {}/{}", self.brokers, self.topic)
    }

    fn staging_dir(&self) -> PathBuf {
        self.staging.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Removes the staged rows of this sink's runs whose process is gone (killed
    /// before their commit): `.kiln-kafka-SINK-PID-RUN.arrow`.
    pub fn clean_leftovers(&self) {
        let prefix = format!(".kiln-kafka-{}-", self.sink);
        let Ok(entries) = std::fs::read_dir(self.staging_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&prefix).and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The rows to send, kept in a local file until the commit.
#[derive(Debug)]
pub struct Held {
    file: PathBuf,
    target: KafkaTarget,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    settings: KafkaSink,
}

/// Executes `df` into a local Arrow IPC file; returns it and the row count.
pub async fn stage(df: DataFrame, sink: &Sink, target: &KafkaTarget) -> Result<(Held, u64)> {
    let fail = |message: String| Error::Sink { sink: sink.name.clone(), message };
    let settings = sink.kafka.clone().ok_or_else(|| fail("a kafka sink without its settings".into()))?;
    let file = target.staging_dir().join(format!(".kiln-kafka-{}-{}-{}.arrow", sink.name, std::process::id(), super::run_id()));
    let written = async {
        let mut stream = df.execute_stream().await.map_err(|e| fail(e.to_string()))?;
        let out = std::fs::File::create(&file).map_err(|e| Error::io(format!("creating {}", file.display()), e))?;
        let mut writer = datafusion::arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(out), &stream.schema()).map_err(|e| fail(e.to_string()))?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(|e| fail(e.to_string()))?;
        }
        writer.finish().map_err(|e| fail(e.to_string()))?;
        Ok::<u64, Error>(rows)
    }
    .await;
    match written {
        Ok(rows) => Ok((Held { file, target: target.clone(), settings }, rows)),
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            Err(e)
        }
    }
}

impl Held {
    /// Sends every row and waits until the brokers acknowledged them all.
    pub async fn send(self, sink: &str) -> Result<()> {
        let sink_name = sink.to_string();
        let file = self.file.clone();
        #[cfg(feature = "kafka")]
        let send = move || send_file(&self.file, &self.target, &self.settings);
        #[cfg(not(feature = "kafka"))]
        let send = move || Err(crate::unbuilt::missing("kafka", &self.target.describe()).to_string());
        let sent = tokio::task::spawn_blocking(send)
            .await
            .map_err(|e| Error::Sink { sink: sink_name.clone(), message: e.to_string() })
            .and_then(|r| r.map_err(|message| Error::Sink { sink: sink_name, message }));
        let _ = std::fs::remove_file(&file);
        sent
    }

    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A client error without an option's value: librdkafka's refusal of a setting shows
/// `key value`, and the value may be a password.
#[cfg(feature = "kafka")]
pub fn client_error(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, desc, key, _) => format!("option `{key}`: {desc}"),
        e => e.to_string(),
    }
}

/// Delivery reports: how many records the brokers refused, and the first reason
/// (reset at each send).
#[cfg(feature = "kafka")]
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

#[cfg(feature = "kafka")]
impl rdkafka::ClientContext for Deliveries {}

#[cfg(feature = "kafka")]
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

#[cfg(feature = "kafka")]
fn send_file(file: &Path, target: &KafkaTarget, settings: &KafkaSink) -> std::result::Result<(), String> {
    let producer = {
        let mut cached = target.producer.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.as_ref() {
            Some(p) => p.clone(),
            None => {
                let mut config = ClientConfig::new();
                config.set("bootstrap.servers", &target.brokers).set("log_level", "3");
                for (k, v) in &target.options {
                    config.set(k, v);
                }
                let p: ThreadedProducer<Deliveries> = config.create_with_context(Deliveries::default()).map_err(|e| format!("{}: {}", target.describe(), client_error(&e)))?;
                cached.insert(Arc::new(p)).clone()
            }
        }
    };
    let sent = send_with(&producer, file, target, settings);
    if sent.is_err() {
        // A fresh connection for the next try.
        *target.producer.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    sent
}

#[cfg(feature = "kafka")]
fn send_with(producer: &ThreadedProducer<Deliveries>, file: &Path, target: &KafkaTarget, settings: &KafkaSink) -> std::result::Result<(), String> {
    let what = target.describe();
    let context = producer.context();
    context.failed.store(0, Ordering::Relaxed);
    *context.first.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let headers = OwnedHeaders::new().insert(Header { key: "kiln-batch", value: Some(target.tag.as_str()) });
    let reader = datafusion::arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?), None).map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let values = encode(&batch, settings.value_format)?;
        let keys = match &settings.key {
            Some(column) => {
                let array = batch.column_by_name(column).ok_or_else(|| format!("no column `{column}` for the key"))?;
                let text = datafusion::arrow::compute::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
                Some(text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
            }
            None => None,
        };
        for (i, value) in values.iter().enumerate() {
            let mut record = BaseRecord::<str, [u8]>::to(&target.topic).payload(value.as_slice()).headers(headers.clone());
            if let Some(k) = keys.as_ref().filter(|k| k.is_valid(i)) {
                record = record.key(k.value(i));
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let deliveries drain.
                        std::thread::sleep(Duration::from_millis(5));
                        record = back;
                    }
                    Err((e, _)) => return Err(format!("{what}: {e}")),
                }
            }
        }
    }
    producer.flush(FLUSH).map_err(|e| format!("{what}: not every record was acknowledged within {} s: {e}", FLUSH.as_secs()))?;
    match context.failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(format!("{what}: {n} record(s) were refused: {}", context.first.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default())),
    }
}

/// One value per row: a JSON object, or a CSV line (no header, no line end).
#[cfg(feature = "kafka")]
fn encode(batch: &RecordBatch, format: KafkaValueFormat) -> std::result::Result<Vec<Vec<u8>>, String> {
    match format {
        KafkaValueFormat::Json => {
            let mut out = Vec::new();
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write(batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            drop(writer);
            // JSON escapes line breaks inside strings: every line is one row.
            Ok(out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
        }
        KafkaValueFormat::Avro | KafkaValueFormat::AvroConfluent => Err("a kafka sink writes json or csv values".into()),
        KafkaValueFormat::Csv => (0..batch.num_rows())
            .map(|i| {
                let mut out = Vec::new();
                let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(false).build(&mut out);
                writer.write(&batch.slice(i, 1)).map_err(|e| e.to_string())?;
                drop(writer);
                while out.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    out.pop();
                }
                Ok(out)
            })
            .collect(),
    }
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn each_row_is_one_value() {
        let schema = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![Some("a\nb"), None, Some("c,d")])), Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let json: Vec<String> = encode(&batch, KafkaValueFormat::Json).unwrap().into_iter().map(|v| String::from_utf8(v).unwrap()).collect();
        assert_eq!(json, vec![r#"{"name":"a\nb","n":1}"#, r#"{"n":2}"#, r#"{"name":"c,d","n":3}"#]);
        let csv: Vec<String> = encode(&batch, KafkaValueFormat::Csv).unwrap().into_iter().map(|v| String::from_utf8(v).unwrap()).collect();
        assert_eq!(csv, vec!["\"a\nb\",1", ",2", "\"c,d\",3"]);
    }
}
