"""PySpark Structured Streaming's side of bench/streaming.sh: the same windows as
bench/specs/stream_counts.toml (1-minute tumbling windows per page, 30-second watermark,
append mode) over the same JSON files, 10 files per batch, trigger availableNow.

usage: spark_counts.py EVENTS_DIR OUT_DIR CHECKPOINT_DIR
prints the number of batches and the median batch duration (ms) as JSON.
"""

import json
import statistics
import sys

from pyspark.sql import SparkSession, functions as F

events, out, checkpoint = sys.argv[1:4]
spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
schema = "user_id STRING, page STRING, ts TIMESTAMP, duration_ms BIGINT"
clicks = spark.readStream.schema(schema).option("maxFilesPerTrigger", 10).json(events)
counts = (
    clicks.withWatermark("ts", "30 seconds")
    .groupBy(F.window("ts", "1 minute"), "page")
    .agg(F.count(F.lit(1)).alias("clicks"))
    .select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"), "page", "clicks")
)
query = counts.writeStream.format("parquet").option("path", out).option("checkpointLocation", checkpoint).outputMode("append").trigger(availableNow=True).start()
query.awaitTermination()
durations = [p["durationMs"]["triggerExecution"] for p in query.recentProgress if p.get("numInputRows", 0) > 0]
print(json.dumps({"batches": len(durations), "median_batch_ms": statistics.median(durations) if durations else None}))
spark.stop()
