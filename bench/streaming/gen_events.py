"""Click events for bench/streaming.sh: FILES files of ROWS/FILES JSON lines, in arrival order.

Event time advances 6 seconds per file-share of rows (about a minute per 10 files at the
default sizes) with up to 20 seconds of disorder, and 0.5% of rows 2 minutes late, so the
watermark drops some. Seeded: the same arguments give the same files.

usage: gen_events.py OUT_DIR ROWS FILES
"""

import json
import os
import random
import sys

out, rows, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = random.Random(42)
pages = [f"/p{i}" for i in range(50)]
per_file = rows // files
base = 1_714_557_600  # 2024-05-01T10:00:00Z
for f in range(files):
    lines = []
    start = base + f * 6
    for _ in range(per_file):
        t = start + rng.random() * 6 - rng.random() * 20
        if rng.random() < 0.005:
            t -= 120
        secs = int(t)
        micros = int((t - secs) * 1_000_000)
        hh, mm, ss = (secs // 3600) % 24, (secs // 60) % 60, secs % 60
        day = 1 + (secs - 1_714_521_600) // 86_400
        ts = f"2024-05-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{micros:06d}"
        lines.append(json.dumps({"user_id": f"u{rng.randrange(100000)}", "page": rng.choice(pages), "ts": ts, "duration_ms": rng.randrange(5000)}))
    tmp = os.path.join(out, f".part-{f:05d}.json.tmp")
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    path = os.path.join(out, f"part-{f:05d}.json")
    os.rename(tmp, path)
    os.utime(path, (1_700_000_000 + f, 1_700_000_000 + f))
open(os.path.join(out, "_GENERATED"), "w").close()
