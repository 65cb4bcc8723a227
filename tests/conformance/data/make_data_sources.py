#!/usr/bin/env python3
"""Shared input files of the §1/§2/§3/§10/§11 conformance cases (every file name starts with `src_`).

Deterministic: rerunning writes the same bytes (given the same pyarrow/fastavro versions).
Run from anywhere: python3 tests/conformance/data/make_data_sources.py
Needs: pyarrow, fastavro.
"""
import datetime
import decimal
import os
import shutil

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, text):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)


def fresh_dir(name):
    path = os.path.join(HERE, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


# --- CSV -------------------------------------------------------------------------------------
# People: nulls (empty fields) only in non-string columns; a quoted field with a comma.
PEOPLE_ROWS = [
    "1,Alice,34,Paris,2024-01-15,88.5,true",
    "2,Bob,,Oslo,2023-12-31,72.25,false",
    "3,Carol,29,Lima,2024-02-29,,true",
    "4,dave,45,Paris,,91.0,",
    "5,Eve,0,Berlin,2024-03-01,-3.5,false",
    "6,Zoe,61,Oslo,2022-06-30,100.0,true",
    '7,Frank O\'Neil,18,"Rio, BR",2024-01-01,0.0,true',
    "8,Anna,30,paris,2024-01-31,50.0,false",
]
write("src_people.csv", "id,name,age,city,joined,score,active\n" + "\n".join(PEOPLE_ROWS) + "\n")
write("src_people_noheader.csv", "\n".join(PEOPLE_ROWS) + "\n")

# Semicolon-delimited: commas inside fields are plain text.
write(
    "src_semicolon.csv",
    "id;label;amount\n1;a,b;1.5\n2;plain;-2\n3;x, y, z;\n",
)

# Single-quote quoting: the delimiter inside quotes.
write(
    "src_quote_single.csv",
    "id,text\n1,'hello, world'\n2,plain\n3,'a,b,c'\n",
)

# Default (double-quote) quoting with a doubled quote inside.
write(
    "src_quoted.csv",
    'id,text\n1,"hello, world"\n2,"say ""hi"""\n3,plain\n',
)

# NA as the null marker for string, numeric and date columns.
write(
    "src_na.csv",
    "id,name,qty,price,day\n"
    "1,NA,5,1.25,2024-01-01\n"
    "2,bolt,NA,2.5,NA\n"
    "3,nut,7,NA,2024-02-02\n"
    "4,NA,NA,NA,NA\n",
)

# Empty fields: an unquoted empty string field and empty numeric fields.
write(
    "src_empty_fields.csv",
    "id,name,qty\n1,,3\n2,bolt,\n3,nut,4\n",
)

# Rows that do not parse against (id int64, amount int64).
write(
    "src_bad_rows.csv",
    "id,amount\n1,10\n2,abc\n3,30\n4,x4\n5,50\n",
)

# Integer types at their edges.
write(
    "src_ints.csv",
    "i8,i16,i32,i64,u8,u16,u32,u64\n"
    "-128,-32768,-2147483648,-9223372036854775808,0,0,0,0\n"
    "127,32767,2147483647,9223372036854775807,255,65535,4294967295,18446744073709551615\n"
    "0,1,-1,42,7,8,9,10\n"
    ",,,,,,,\n",
)

# Floats (exact in float32) and decimals.
write(
    "src_floats.csv",
    "id,f32,f64,dbl,dec\n"
    "1,1.5,0.1,-2.25,12.34\n"
    "2,-0.125,1e10,3.0,-0.05\n"
    "3,,,,\n"
    "4,0,123.456,1.0E-3,99999999.99\n",
)

# Dates and timestamps.
write(
    "src_times.csv",
    "id,d,ts,ts_ms,ts_ns,ts_tz\n"
    "1,2024-01-02,2024-01-02 03:04:05,2024-01-02 03:04:05.123,2024-01-02 03:04:05.000000001,2024-01-02 03:04:05\n"
    "2,1999-12-31,1999-12-31 23:59:59,1999-12-31 23:59:59.999,1999-12-31 23:59:59.5,1999-12-31 23:59:59\n"
    "3,,,,,\n",
)

# Bools in CSV.
write("src_bools.csv", "id,flag\n1,true\n2,false\n3,\n4,TRUE\n")

# Strings with date text for to_date, and string-function inputs.
write(
    "src_strings.csv",
    "id,s,date\n"
    "1,  Padded  ,2024-01-31\n"
    "2,MiXeD,2023-02-28\n"
    "3,abc_def,2024-02-29\n"
    "4,,\n",
)

# Two numbers per row, some nulls, for arithmetic and comparisons.
write(
    "src_nums.csv",
    "id,a,b,x\n1,7,2,2.5\n2,-7,2,-1.5\n3,10,,0.0\n4,,3,4.75\n5,0,5,\n6,9,-4,-2.7\n",
)

# Directory of CSV part files (same header).
fresh_dir("src_dir")
write("src_dir/part-0.csv", "id,val\n1,a\n2,b\n")
write("src_dir/part-1.csv", "id,val\n3,c\n")

# Glob: only a_*.csv should match.
fresh_dir("src_glob")
write("src_glob/a_1.csv", "id,val\n1,a1\n2,a2\n")
write("src_glob/a_2.csv", "id,val\n3,a3\n")
write("src_glob/b_1.csv", "id,val\n100,b1\n")

# Hive-style partitions: year=YYYY/month=MM, the partition columns absent from the files.
fresh_dir("src_hive")
write("src_hive/year=2023/month=01/part-0.csv", "id,amount\n1,10\n2,20\n")
write("src_hive/year=2023/month=12/part-0.csv", "id,amount\n3,30\n")
write("src_hive/year=2024/month=01/part-0.csv", "id,amount\n4,40\n5,50\n")

# A file whose name uses an environment variable's value ($CARGO_PKG_NAME of the test runner).
write("src_env_kiln-tests.csv", "id,val\n1,env-file\n")

# Params in paths: two alternative files.
write("src_param_a.csv", "id,val\n1,from-a\n")
write("src_param_b.csv", "id,val\n2,from-b\n3,from-b\n")

# Run-time drift of an inferred CSV schema: `id` is text here (src_param_a.csv has integers).
write("src_drift_csv_b.csv", "id,val\nx,1\n")

# --- JSON ------------------------------------------------------------------------------------
write(
    "src_events.jsonl",
    '{"id": 1, "user": "ann", "amount": 10.5, "ok": true, "day": "2024-01-01", "extra": "ignored"}\n'
    '{"id": 2, "user": null, "amount": -1.25, "ok": false, "day": "2024-02-29"}\n'
    '{"id": 3, "user": "bob", "ok": true}\n'
    '{"id": 4, "user": "cy", "amount": 0, "ok": null, "day": null}\n',
)
write(
    "src_lists.jsonl",
    '{"id": 1, "nums": [1, 2, 3], "tags": ["x", "y"]}\n'
    '{"id": 2, "nums": [], "tags": null}\n'
    '{"id": 3, "nums": null, "tags": ["z"]}\n',
)

# Run-time drift of an inferred JSON schema: `id` is a string here (an integer in src_events.jsonl).
write("src_events_drift.jsonl", '{"id": "x1", "user": "zed", "amount": 1.0, "ok": true, "day": "2024-01-01"}\n')
# A renamed field: `amount` became `amt` (fails at run time, naming the file and both names).
write("src_events_renamed.jsonl", '{"id": 4, "user": "cy", "amt": 2.0, "ok": true, "day": "2024-03-01"}\n{"id": 5, "user": "di", "amt": 3.0, "ok": false, "day": "2024-03-02"}\n')

# --- Parquet ---------------------------------------------------------------------------------
types_table = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", None, "c"], pa.string()),
        "small": pa.array([1, -2, None], pa.int32()),
        "amount": pa.array([1.5, None, -0.25], pa.float64()),
        "flag": pa.array([True, False, None], pa.bool_()),
        "day": pa.array([datetime.date(2024, 1, 1), None, datetime.date(1970, 1, 1)], pa.date32()),
        "ts": pa.array(
            [datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.datetime(2000, 2, 29, 0, 0, 0), None],
            pa.timestamp("us"),
        ),
        "price": pa.array([decimal.Decimal("12.34"), decimal.Decimal("-0.05"), None], pa.decimal128(10, 2)),
        "blob": pa.array([b"\x00\x01", b"", None], pa.binary()),
        "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
    }
)
pq.write_table(types_table, os.path.join(HERE, "src_types.parquet"))

pq.write_table(
    pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array(["x", "y"], pa.string())}),
    os.path.join(HERE, "src_drift_a.parquet"),
)
pq.write_table(
    pa.table({"id": pa.array([3, 4], pa.int64()), "v": pa.array([30, 40], pa.int64())}),
    os.path.join(HERE, "src_drift_b.parquet"),
)
pq.write_table(
    pa.table({"id": pa.array([5, 6], pa.int64())}),
    os.path.join(HERE, "src_drift_c.parquet"),
)

fresh_dir("src_parquet_dir")
pq.write_table(
    pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array(["p", "q"], pa.string())}),
    os.path.join(HERE, "src_parquet_dir/part-0.parquet"),
)
pq.write_table(
    pa.table({"id": pa.array([3], pa.int64()), "v": pa.array([None], pa.string())}),
    os.path.join(HERE, "src_parquet_dir/part-1.parquet"),
)

# Binary values on their own (id, blob).
pq.write_table(
    pa.table({"id": pa.array([1, 2, 3], pa.int64()), "blob": pa.array([b"\x00\x01", b"", None], pa.binary())}),
    os.path.join(HERE, "src_binary.parquet"),
)

# Hive-style partitions over Parquet files: region=eu / region=us, `region` absent from the files.
fresh_dir("src_hive_parquet")
for region, ids in [("eu", [1, 2]), ("us", [3])]:
    os.makedirs(os.path.join(HERE, f"src_hive_parquet/region={region}"))
    pq.write_table(
        pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array([i * 1.5 for i in ids], pa.float64())}),
        os.path.join(HERE, f"src_hive_parquet/region={region}/part-0.parquet"),
    )

# --- ORC -------------------------------------------------------------------------------------
import pyarrow.orc as orc

orc.write_table(
    pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": pa.array(["ann", None, "cy"], pa.string()),
            "qty": pa.array([5, -1, None], pa.int32()),
            "price": pa.array([1.25, None, 0.0], pa.float64()),
        }
    ),
    os.path.join(HERE, "src_items.orc"),
)

# --- Avro ------------------------------------------------------------------------------------
avro_schema = fastavro.parse_schema(
    {
        "type": "record",
        "name": "User",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string"},
            {"name": "age", "type": "int"},
            {"name": "score", "type": ["null", "double"]},
            {"name": "active", "type": "boolean"},
        ],
    }
)
with open(os.path.join(HERE, "src_users.avro"), "wb") as f:
    fastavro.writer(
        f,
        avro_schema,
        [
            {"id": 1, "name": "ann", "age": 30, "score": 1.5, "active": True},
            {"id": 2, "name": "bob", "age": 41, "score": None, "active": False},
            {"id": 3, "name": "cy", "age": 0, "score": -2.0, "active": True},
        ],
        sync_marker=b"kiln-conformance",
    )

# A CSV saved with a UTF-8 byte-order mark (spreadsheet exports).
with open(os.path.join(HERE, "src_bom.csv"), "wb") as f:
    f.write("\ufeffid,name\n1,ann\n2,bob\n".encode("utf-8"))

# A directory as Hadoop tools write it: part files without an extension, a marker file.
os.makedirs(os.path.join(HERE, "src_hadoop"), exist_ok=True)
with open(os.path.join(HERE, "src_hadoop", "part-00000"), "w") as f:
    f.write("id,name\n1,ann\n")
with open(os.path.join(HERE, "src_hadoop", "part-00001.csv"), "w") as f:
    f.write("id,name\n2,bob\n")
open(os.path.join(HERE, "src_hadoop", "_SUCCESS"), "w").close()

# A glob whose second file drifted from the first (a renamed column).
os.makedirs(os.path.join(HERE, "src_glob_drift"), exist_ok=True)
with open(os.path.join(HERE, "src_glob_drift", "a.csv"), "w") as f:
    f.write("id,name\n1,ann\n")
with open(os.path.join(HERE, "src_glob_drift", "b.csv"), "w") as f:
    f.write("id,full_name\n2,bob\n")

# A directory holding an empty CSV file (0 bytes) beside a real one.
os.makedirs(os.path.join(HERE, "src_with_empty"), exist_ok=True)
with open(os.path.join(HERE, "src_with_empty", "a.csv"), "w") as f:
    f.write("id,name\n1,ann\n")
open(os.path.join(HERE, "src_with_empty", "b.csv"), "w").close()

print("wrote src_* files under", HERE)
