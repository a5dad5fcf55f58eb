"""Python Celery side of `make bench`'s Celery rows.

Usage:
  celery_bench.py send BROKER BACKEND QUEUE N
      sends N bench.noop tasks with apply_async (one process, one thread)
      and prints one JSON object: {"send": tasks/s}.
  celery_bench.py worker BROKER BACKEND QUEUE POOL CONCURRENCY
      runs a Celery worker (pool prefork or solo) on QUEUE until SIGTERM;
      bench/main.go fills the queue and times it.

Run with python3 -I: this file's directory is put on sys.path explicitly so
that the tasks module (celery_tasks.py beside it) imports, and nothing from
the current directory shadows the installed celery, kombu or redis packages.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

mode, broker, backend, queue = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
os.environ["BENCH_BROKER"], os.environ["BENCH_BACKEND"] = broker, backend

from celery_tasks import app, noop  # noqa: E402

if mode == "send":
    n = int(sys.argv[5])
    noop.apply_async(queue=queue)  # connect and declare before timing
    t0 = time.perf_counter()
    for _ in range(n):
        noop.apply_async(queue=queue)
    print(json.dumps({"send": n / (time.perf_counter() - t0)}))
elif mode == "worker":
    pool, concurrency = sys.argv[5], sys.argv[6]
    app.worker_main(argv=["worker", "-P", pool, "-c", concurrency, "-Q", queue, "-l", "warning",
                          "--without-mingle", "--without-gossip", "--without-heartbeat"])
else:
    sys.exit("celery_bench.py: unknown mode %r" % mode)
