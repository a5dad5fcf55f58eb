"""The Celery app of `make bench`'s Celery rows: two no-op tasks, one whose
result is stored and one with ignore_result=True, with the broker and result
backend taken from BENCH_BROKER and BENCH_BACKEND. bench/celery_bench.py puts
this file's directory on sys.path (python3 -I leaves it out) and imports it;
a prefork pool's children inherit that path.
"""
import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BACKEND"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop():
    return None


@app.task(name="bench.noop_ignored", ignore_result=True)
def noop_ignored():
    return None


@app.task(name="bench.part")
def part():
    return 1


@app.task(name="bench.sum")
def total(parts):
    return sum(parts)


@app.task(name="bench.sleep")
def sleep(seconds):
    import time
    time.sleep(seconds)
