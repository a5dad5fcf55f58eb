"""Python Kombu side of `make bench`: publish and consume-with-ack throughput.

Usage: kombu_bench.py URL N BODY_BYTES PREFIX
Prints one JSON object: {"publish": msg/s, "consume_ack": msg/s}.
Publishes through a declared direct exchange (Kombu's path: SMEMBERS of the
binding set, then LPUSH), then consumes with acks (BRPOP, unacked record,
ack), one connection, one thread.
"""
import json
import sys
import time

from kombu import Connection, Exchange, Queue, Consumer, Producer

url, n, size, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = {"data": "x" * max(0, size - 12)}
ex = Exchange(prefix + "bench", "direct")
q = Queue(prefix + "bench", ex, routing_key="bench")

with Connection(url) as conn:
    ch = conn.channel()
    q(ch).declare()
    prod = Producer(ch, exchange=ex, routing_key="bench", serializer="json")
    t0 = time.perf_counter()
    for _ in range(n):
        prod.publish(body)
    pub = n / (time.perf_counter() - t0)

    got = 0

    def on_message(b, m):
        global got
        m.ack()
        got += 1

    cons = Consumer(ch, [q], callbacks=[on_message], accept=["json"])
    cons.qos(prefetch_count=1)
    t0 = time.perf_counter()
    with cons:
        while got < n:
            conn.drain_events(timeout=5)
    con = n / (time.perf_counter() - t0)
    q(ch).delete()
    print(json.dumps({"publish": pub, "consume_ack": con}))
