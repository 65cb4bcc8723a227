"""Produces the JSON lines of bench/streaming's event files to a Kafka topic, in file order,
one record per line (the line is the value; no key), for bench/streaming_broker.sh.

One record per produce request (`batch.num.messages = 1`): the test broker, tansu 0.6 with
memory storage, reports wrong end offsets for multi-record batches (see tests/tests/kafka.rs).

usage: produce.py BROKERS TOPIC EVENTS_DIR    (prints the records produced)
"""

import os
import sys

from confluent_kafka import Producer

brokers, topic, events = sys.argv[1:4]
p = Producer({"bootstrap.servers": brokers, "batch.num.messages": 1, "linger.ms": 0, "queue.buffering.max.messages": 1000000})
n = 0
for name in sorted(f for f in os.listdir(events) if f.endswith(".json") and not f.startswith((".", "_"))):
    with open(os.path.join(events, name), "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line:
                continue
            while True:
                try:
                    p.produce(topic, line)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
            if n % 10000 == 0:
                p.poll(0)
left = p.flush(600)
if left:
    sys.exit(f"{left} records not delivered")
print(n)
