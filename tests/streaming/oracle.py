"""The expected output of specs/clickstream.toml's window (and its hop/update variants in
tests/tests/streaming.rs), computed independently with DuckDB.

It replays SPEC §8's micro-batch semantics one file per batch (max_files_per_trigger = 1),
in the order given: before each batch, rows whose every window ended at or before the
watermark are late and dropped; the watermark then becomes max(previous, largest event time
of the batch - delay). In append mode a window is written by the batch whose watermark passes
its end; in update mode every batch writes the windows its kept rows fall in, with the values
over every kept row so far. Rows are the spec's: duration_ms >= 0, the page's section from the
spec's inline table (else 'other').

usage: oracle.py OUT.csv SIZE_S SLIDE_S WATERMARK_S append|update FILE...
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


watermark, late = None, 0
for f in files:
    con.execute(f"""CREATE OR REPLACE TABLE batch AS
        SELECT c.user_id, coalesce(p.section, 'other') AS section, epoch_us(CAST(c.ts AS TIMESTAMP)) AS us, c.duration_ms
        FROM read_json('{f}', columns = {{user_id: 'VARCHAR', page: 'VARCHAR', ts: 'VARCHAR', duration_ms: 'BIGINT'}}, format = 'newline_delimited') c
        LEFT JOIN pages p ON c.page = p.page
        WHERE c.duration_ms >= 0""")
    prev = watermark
    (batch_max,) = con.execute("SELECT max(us) FROM batch").fetchone()
    if prev is not None:
        # Late: the last window holding the row ends at or before the watermark.
        (n,) = con.execute(f"SELECT count(*) FROM batch WHERE us IS NOT NULL AND (us // {slide * S}) * {slide * S} + {size * S} <= {prev}").fetchone()
        late += n
        con.execute(f"DELETE FROM batch WHERE us IS NOT NULL AND (us // {slide * S}) * {slide * S} + {size * S} <= {prev}")
    if batch_max is not None:
        watermark = max(prev if prev is not None else batch_max - delay * S, batch_max - delay * S)
    con.execute("INSERT INTO kept SELECT * FROM batch WHERE us IS NOT NULL")
    opened = f"window_end > {prev}" if prev is not None else "TRUE"
    if mode == "append":
        if watermark is None:
            continue
        chosen = f"{opened} AND window_end <= {watermark}"
    else:
        chosen = f"{opened} AND (window_start, window_end, section) IN (SELECT (window_start, window_end, section) FROM ({windows('batch')}))"
    con.execute(f"""INSERT INTO emitted
        SELECT window_start, window_end, section, count(*), count(DISTINCT user_id), avg(duration_ms)
        FROM ({windows('kept')}) WHERE {chosen}
        GROUP BY window_start, window_end, section""")

con.execute(f"""COPY (
    SELECT strftime(make_timestamp(window_start), '%Y-%m-%dT%H:%M:%S') AS window_start,
           strftime(make_timestamp(window_end), '%Y-%m-%dT%H:%M:%S') AS window_end,
           section, clicks, users, avg_ms
    FROM emitted ORDER BY ALL) TO '{out}' (HEADER, DELIMITER ',')""")
wm = con.execute(f"SELECT strftime(make_timestamp({watermark}), '%Y-%m-%dT%H:%M:%S.%fZ')").fetchone()[0] if watermark is not None else None
print(json.dumps({"late": late, "watermark": wm}))
