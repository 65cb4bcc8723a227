"""The expected output of specs/clickstream.toml's window (and its hop/update variants in
tests/tests/streaming.rs), computed independently with DuckDB.

It replays SPEC §8's micro-batch semantics one file per batch (max_files_per_trigger = 1),
in the order given, with Spark's timing (3.4 and later): batch N closes windows at the
watermark W as it stood when the batch began (the largest event time of the batches before
it, minus the delay, never lower), and drops as late the rows whose every window ended at
or before C, the watermark the previous batch closed at. In append mode batch N writes the
open windows ending at or before W; after the last file, one batch with no data (Spark's
no-data batch) writes those the final watermark passed. In update mode every batch writes
the open windows its kept rows fall in, with the values over every kept row so far. Rows
are the spec's: duration_ms >= 0, the page's section from the spec's inline table (else
'other').

usage: oracle.py OUT.csv SIZE_S SLIDE_S WATERMARK_S append|update FILE|--no-data...
(--no-data between files: a run ended there, with its no-data batch)
prints {"late": N, "watermark": "…"} and writes the expected rows to OUT.csv.
"""

import json
import sys

import duckdb

out, size, slide, delay, mode, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
S = 1_000_000  # microseconds per second
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("CREATE TABLE pages AS SELECT * FROM (VALUES ('/home', 'browse'), ('/cart', 'buy'), ('/checkout', 'buy')) t(page, section)")
con.execute("CREATE TABLE kept (user_id VARCHAR, section VARCHAR, us BIGINT, duration_ms BIGINT)")
con.execute("CREATE TABLE emitted (window_start BIGINT, window_end BIGINT, section VARCHAR, clicks BIGINT, users BIGINT, avg_ms DOUBLE)")
copies = -(-size // slide)


def windows(table):
    # Every window [start, start + size) holding each row: starts every `slide` from the epoch.
    return f"""
        SELECT w.*, start AS window_start, start + {size * S} AS window_end FROM (
          SELECT t.*, (t.us // {slide * S}) * {slide * S} - k * {slide * S} AS start
          FROM {table} t CROSS JOIN range({copies}) r(k)) w
        WHERE w.us < start + {size * S}"""


watermark, closed, late = None, None, 0


def emit(chosen):
    con.execute(f"""INSERT INTO emitted
        SELECT window_start, window_end, section, count(*), count(DISTINCT user_id), avg(duration_ms)
        FROM ({windows('kept')}) WHERE {chosen}
        GROUP BY window_start, window_end, section""")


def no_data():
    # A batch with no data (Spark's no-data batch, as a run ends): it closes windows at the
    # watermark; append mode writes the open windows the watermark passed.
    global closed
    if watermark is not None and watermark != closed:
        if mode == "append":
            opened = f"window_end > {closed}" if closed is not None else "TRUE"
            emit(f"{opened} AND window_end <= {watermark}")
        closed = watermark


for f in files:
    if f == "--no-data":
        no_data()
        continue
    con.execute(f"""CREATE OR REPLACE TABLE batch AS
        SELECT c.user_id, coalesce(p.section, 'other') AS section, epoch_us(CAST(c.ts AS TIMESTAMP)) AS us, c.duration_ms
        FROM read_json('{f}', columns = {{user_id: 'VARCHAR', page: 'VARCHAR', ts: 'VARCHAR', duration_ms: 'BIGINT'}}, format = 'newline_delimited') c
        LEFT JOIN pages p ON c.page = p.page
        WHERE c.duration_ms >= 0""")
    (batch_max,) = con.execute("SELECT max(us) FROM batch").fetchone()
    if closed is not None:
        # Late: the last window holding the row ends at or before where windows were closed.
        (n,) = con.execute(f"SELECT count(*) FROM batch WHERE us IS NOT NULL AND (us // {slide * S}) * {slide * S} + {size * S} <= {closed}").fetchone()
        late += n
        con.execute(f"DELETE FROM batch WHERE us IS NOT NULL AND (us // {slide * S}) * {slide * S} + {size * S} <= {closed}")
    con.execute("INSERT INTO kept SELECT * FROM batch WHERE us IS NOT NULL")
    opened = f"window_end > {closed}" if closed is not None else "TRUE"
    if mode == "append":
        if watermark is not None:
            emit(f"{opened} AND window_end <= {watermark}")
    else:
        emit(f"{opened} AND (window_start, window_end, section) IN (SELECT (window_start, window_end, section) FROM ({windows('batch')}))")
    # This batch closed windows at the watermark it began with; then the watermark moves.
    if watermark is not None:
        closed = watermark
    if batch_max is not None:
        watermark = max(watermark if watermark is not None else batch_max - delay * S, batch_max - delay * S)

# The run ends with a no-data batch.
no_data()

con.execute(f"""COPY (
    SELECT strftime(make_timestamp(window_start), '%Y-%m-%dT%H:%M:%S') AS window_start,
           strftime(make_timestamp(window_end), '%Y-%m-%dT%H:%M:%S') AS window_end,
           section, clicks, users, avg_ms
    FROM emitted ORDER BY ALL) TO '{out}' (HEADER, DELIMITER ',')""")
wm = con.execute(f"SELECT strftime(make_timestamp({watermark}), '%Y-%m-%dT%H:%M:%S.%fZ')").fetchone()[0] if watermark is not None else None
print(json.dumps({"late": late, "watermark": wm}))
