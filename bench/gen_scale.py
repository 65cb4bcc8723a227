"""../shared/bench/gen_data.py for row counts past ~50M: the same generator, seed and values, with
its string columns built in chunks of 10M rows (one Arrow string array holds at most 2 GiB; at
100M rows `transaction_id` alone is more). Used by bench/scale.sh.

    python bench/gen_scale.py --rows 100000000 --out DIR
"""

import os
import sys

import pyarrow as pa

shared = os.environ.get("SHARED_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
sys.path.insert(0, os.path.abspath(shared))
import gen_data  # noqa: E402

CHUNK = 10_000_000


def chunked(build):
    def f(first, values, *rest):
        if len(values) <= CHUNK:
            return build(first, values, *rest)
        return pa.chunked_array([build(first, values[i : i + CHUNK], *rest) for i in range(0, len(values), CHUNK)])

    return f


gen_data.fmt_ids = chunked(gen_data.fmt_ids)
gen_data.date_strings = chunked(gen_data.date_strings)
gen_data.main()
