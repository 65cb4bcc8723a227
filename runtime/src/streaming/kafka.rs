//! Kafka sources of streaming pipelines (SPEC §3, §8), read with librdkafka.
//!
//! Kiln keeps the offsets itself, in the checkpoint, committed with each
//! batch's output (the consumer group's offsets are never used): a batch is the
//! records `[from, to)` of every partition, `to` being the partition's end when
//! the batch was planned (capped by `max_offsets_per_trigger`), so a batch run
//! again after a crash reads exactly the same records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::plan::{KAFKA_COLUMNS, KafkaSource, KafkaValueFormat};
use crate::{Error, Result};

/// How long a broker may stay silent before a batch fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A partition's records to read: `[from, to)`.
pub type Ranges = BTreeMap<i32, (i64, i64)>;

/// One topic of one source, with its consumer (assigned per batch, never subscribed).
pub struct Topic {
    source: String,
    topic: String,
    /// `brokers/topic`, for messages.
    what: String,
    consumer: BaseConsumer,
    /// The source's columns: the value's, then the Kafka columns.
    schema: SchemaRef,
    value_schema: SchemaRef,
    format: KafkaValueFormat,
    pub earliest: bool,
    pub max_records: Option<u64>,
    /// The partitions read (`assign`); empty: all.
    assign: Vec<i32>,
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("kafka {what}: {e}"))
}

impl Topic {
    /// `brokers`, `options` and `k.assign` with parameters and `${env.X}` already substituted.
    pub fn connect(source: &str, k: &KafkaSource, brokers: &str, options: &[(String, String)], schema: SchemaRef) -> Result<Topic> {
        let what = format!("{brokers}/{}", k.topic);
        let assign = if k.assign.is_empty() { Vec::new() } else { crate::plan::parse_assign(&k.assign).map_err(|e| kafka_error(&what, format!("`assign` {e}")))? };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("kiln-{source}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("socket.timeout.ms", "10000")
            .set("log_level", "3");
        for (k, v) in options {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().map_err(|e| kafka_error(&what, crate::sinks::kafka::client_error(&e)))?;
        let n_value = schema.fields().len().saturating_sub(KAFKA_COLUMNS.len());
        let value_schema = Arc::new(Schema::new(schema.fields()[..n_value].to_vec()));
        Ok(Topic { source: source.to_string(), topic: k.topic.clone(), what, consumer, schema, value_schema, format: k.value_format, earliest: k.earliest, max_records: k.max_offsets_per_trigger, assign })
    }

    /// Every partition's (or every assigned partition's) earliest kept and next (end) offsets.
    pub fn offsets(&self) -> Result<BTreeMap<i32, (i64, i64)>> {
        tokio::task::block_in_place(|| {
            let metadata = self.consumer.fetch_metadata(Some(&self.topic), TIMEOUT).map_err(|e| kafka_error(&self.what, format!("cannot reach the brokers: {e}")))?;
            let topic = metadata.topics().iter().find(|t| t.name() == self.topic).ok_or_else(|| kafka_error(&self.what, "no such topic"))?;
            if let Some(e) = topic.error() {
                return Err(kafka_error(&self.what, format!("{:?}", rdkafka::types::RDKafkaRespErr::from(e))));
            }
            let mut out = BTreeMap::new();
            for p in topic.partitions() {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, p.id(), TIMEOUT).map_err(|e| kafka_error(&self.what, format!("partition {}: {e}", p.id())))?;
                out.insert(p.id(), (low, high));
            }
            if out.is_empty() {
                return Err(kafka_error(&self.what, "the topic has no partitions"));
            }
            if !self.assign.is_empty() {
                if let Some(p) = self.assign.iter().find(|p| !out.contains_key(p)) {
                    let have: Vec<String> = out.keys().map(i32::to_string).collect();
                    return Err(kafka_error(&self.what, format!("`assign` names partition {p}, and the topic has partitions {}", have.join(", "))));
                }
                out.retain(|p, _| self.assign.contains(p));
            }
            Ok(out)
        })
    }

    /// What the next batch reads, from the committed positions `next` (a partition
    /// not there starts at its earliest offset) up to the ends `ends`, at most
    /// `max_records` in all (shared by the partitions in proportion to what each has).
    pub fn plan(&self, next: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, (i64, i64)>) -> Ranges {
        let mut ranges: Ranges = ends.iter().map(|(p, (low, high))| (*p, (next.get(p).copied().unwrap_or(*low).max(*low), *high))).collect();
        let total: i64 = ranges.values().map(|(f, t)| (t - f).max(0)).sum();
        if let Some(max) = self.max_records.map(|m| m as i64).filter(|m| *m < total) {
            let mut left = max;
            for (from, to) in ranges.values_mut() {
                let lag = (*to - *from).max(0);
                let share = (lag as i128 * max as i128 / total as i128) as i64;
                let take = share.min(left);
                *to = *from + take;
                left -= take;
            }
            // What rounding left over goes to the first partitions that still have records.
            for (p, (from, to)) in ranges.iter_mut() {
                let high = ends[p].1;
                let more = (high - *to).min(left).max(0);
                *to += more;
                left -= more;
                let _ = from;
            }
        }
        ranges.retain(|_, (f, t)| t > f);
        ranges
    }

    /// The records of `ranges`, as one batch of the source's schema (ordered by partition and offset).
    pub fn read(&self, ranges: &Ranges) -> Result<RecordBatch> {
        if ranges.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let records = tokio::task::block_in_place(|| self.fetch(ranges))?;
        self.to_batch(records)
    }

    fn fetch(&self, ranges: &Ranges) -> Result<Vec<Record>> {
        let mut tpl = TopicPartitionList::new();
        for (p, (from, _)) in ranges {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*from)).map_err(|e| kafka_error(&self.what, e))?;
        }
        self.consumer.assign(&tpl).map_err(|e| kafka_error(&self.what, e))?;
        let mut pending: BTreeMap<i32, i64> = ranges.iter().map(|(p, (_, to))| (*p, *to)).collect();
        let mut records = Vec::new();
        let mut quiet_since = Instant::now();
        while !pending.is_empty() {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    let p = m.partition();
                    let Some(&end) = pending.get(&p) else { continue };
                    if m.offset() < end {
                        records.push(Record {
                            partition: p,
                            offset: m.offset(),
                            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            value: m.payload().map(<[u8]>::to_vec),
                            timestamp_ms: m.timestamp().to_millis(),
                        });
                    }
                    if m.offset() + 1 >= end {
                        pending.remove(&p);
                    }
                }
                Some(Err(e)) => {
                    let _ = self.consumer.unassign();
                    return Err(kafka_error(&self.what, e));
                }
                None => {
                    // Offsets with no record (transaction markers, compaction): the position says.
                    if let Ok(positions) = self.consumer.position() {
                        for e in positions.elements() {
                            if let (Offset::Offset(o), Some(&end)) = (e.offset(), pending.get(&e.partition())) {
                                if o >= end {
                                    pending.remove(&e.partition());
                                }
                            }
                        }
                    }
                    if quiet_since.elapsed() > TIMEOUT {
                        let _ = self.consumer.unassign();
                        return Err(kafka_error(&self.what, format!("no records for {}s while partitions {:?} were still due", TIMEOUT.as_secs(), pending.keys().collect::<Vec<_>>())));
                    }
                }
            }
        }
        self.consumer.unassign().map_err(|e| kafka_error(&self.what, e))?;
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    }

    fn to_batch(&self, records: Vec<Record>) -> Result<RecordBatch> {
        let values = self.values(&records)?;
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        columns.push(Arc::new(records.iter().map(|r| r.key.clone()).collect::<StringArray>()));
        columns.push(Arc::new(StringArray::from(vec![self.topic.as_str(); records.len()])));
        columns.push(Arc::new(records.iter().map(|r| r.partition).collect::<Int32Array>()));
        columns.push(Arc::new(records.iter().map(|r| r.offset).collect::<Int64Array>()));
        columns.push(Arc::new(records.iter().map(|r| r.timestamp_ms.map(|ms| ms * 1000)).collect::<TimestampMicrosecondArray>()));
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::in_node(&self.source, e))
    }

    /// The values parsed with the declared schema: a JSON object per record (fields
    /// it lacks are NULL, as Spark's `from_json`), or a CSV line. A record that does
    /// not parse fails the batch, naming its partition and offset.
    fn values(&self, records: &[Record]) -> Result<RecordBatch> {
        let parse = |records: &[Record]| -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
            let mut batches = Vec::new();
            match self.format {
                KafkaValueFormat::Json => {
                    let mut decoder = datafusion::arrow::json::ReaderBuilder::new(self.value_schema.clone()).with_batch_size(records.len().max(1)).build_decoder()?;
                    for r in records {
                        // A record with no value (a tombstone) is a row of NULLs.
                        let v = r.value.as_deref().filter(|v| !v.is_empty()).unwrap_or(b"{}");
                        decoder.decode(v)?;
                        decoder.decode(b"\n")?;
                    }
                    batches.extend(decoder.flush()?);
                }
                KafkaValueFormat::Csv => {
                    let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(self.value_schema.clone()).with_header(false).with_batch_size(records.len().max(1)).build_decoder();
                    for r in records {
                        let mut line = r.value.clone().unwrap_or_default();
                        line.push(b'\n');
                        let mut rest = &line[..];
                        while !rest.is_empty() {
                            let n = decoder.decode(rest)?;
                            if n == 0 {
                                batches.extend(decoder.flush()?);
                                continue;
                            }
                            rest = &rest[n..];
                        }
                    }
                    batches.extend(decoder.flush()?);
                }
                KafkaValueFormat::Avro | KafkaValueFormat::AvroConfluent => batches.extend(avro_values(&self.value_schema, records, self.format == KafkaValueFormat::AvroConfluent)?),
            }
            datafusion::arrow::compute::concat_batches(&self.value_schema, &batches)
        };
        match parse(records) {
            Ok(b) if b.num_rows() == records.len() => Ok(b),
            Ok(b) => Err(Error::in_node(&self.source, format!("kafka {}: {} records gave {} rows (a record holding several values?)", self.what, records.len(), b.num_rows()))),
            Err(e) => {
                // Find the record: parse them one by one.
                let bad = records.iter().find(|r| parse(std::slice::from_ref(*r)).is_err());
                Err(Error::in_node(
                    &self.source,
                    match bad {
                        Some(r) => format!(
                            "kafka {}: the record at partition {} offset {} is not {} value of the declared schema: {e}",
                            self.what,
                            r.partition,
                            r.offset,
                            match self.format {
                                KafkaValueFormat::Json => "a JSON",
                                KafkaValueFormat::Csv => "a CSV",
                                KafkaValueFormat::Avro => "an Avro",
                                KafkaValueFormat::AvroConfluent => "a Confluent-framed Avro",
                            }
                        ),
                        None => format!("kafka {}: {e}", self.what),
                    },
                ))
            }
        }
    }
}

/// Avro values (`value_format = "avro"` or `"avro_confluent"`): each record's value is
/// one datum in Avro's binary encoding, written with the declared schema as arrow-avro
/// derives it — a record whose fields are the columns in order, each a union of `null`
/// and its type, null first (string → string, int64 → long, int32 → int, float64 →
/// double, bool → boolean, timestamp → long `local-timestamp-micros`, date → int `date`).
/// Every datum is framed here as Avro's single-object encoding of the declared schema
/// for arrow-avro's decoder: a raw one (Spark's `from_avro`) as it is, a Confluent-framed
/// one without its header — whatever schema id it names stands for the declared schema
/// (Kiln asks no registry), so ids changing within a batch are no schema change.
fn avro_values(schema: &SchemaRef, records: &[Record], confluent: bool) -> std::result::Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    use arrow_avro::schema::{AvroSchema, Fingerprint, SchemaStore};
    use datafusion::arrow::error::ArrowError;
    let avro = AvroSchema::try_from(schema.as_ref())?;
    let mut store = SchemaStore::new();
    let Fingerprint::Rabin(fp) = store.register(avro)? else { return Err(ArrowError::SchemaError("a Rabin fingerprint was expected".into())) };
    let mut prefix = vec![0xC3, 0x01];
    prefix.extend_from_slice(&fp.to_le_bytes());
    let mut decoder = arrow_avro::reader::ReaderBuilder::new().with_writer_schema_store(store).with_batch_size(records.len().max(1)).build_decoder()?;
    let mut framed = Vec::new();
    for r in records {
        let mut value = r.value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| ArrowError::ParseError("the record has no value".into()))?;
        if confluent {
            match value {
                [0, _, _, _, _, datum @ ..] => value = datum,
                _ => return Err(ArrowError::ParseError("no Confluent wire-format header (magic byte 0 and a 4-byte schema id)".into())),
            }
        }
        framed.clear();
        framed.extend_from_slice(&prefix);
        framed.extend_from_slice(value);
        let used = decoder.decode(&framed)?;
        if used != framed.len() {
            return Err(ArrowError::ParseError(format!("{} of its {} bytes are not one datum of the declared schema", framed.len() - used, value.len())));
        }
    }
    let Some(batch) = decoder.flush()? else { return Ok(Vec::new()) };
    // Back to the declared types (arrow-avro's reading of them may differ in zone or width).
    Ok(vec![crate::sinks::conform(&batch, schema).map_err(|e| ArrowError::ComputeError(e.to_string()))?])
}

struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
}
