"""Celery tasks for kombu-go's interop tests (run by Debian's Celery 5.2).

The test harness starts a real worker on this module:

    python3 -m celery -A tasks worker --pool=solo -Q <queue> ...

and configures it through the environment:

    KOMBU_TEST_BROKER    broker URL (the test redis-server)
    KOMBU_TEST_BACKEND   result backend URL
    KOMBU_TEST_PREFIX    Kombu global_keyprefix for the broker keys
    KOMBU_TEST_QUEUE     default queue of this app
    KOMBU_TEST_GO_QUEUE  queue the Go worker consumes (for tasks.hop)

The Go example worker (examples/celery-worker) registers the same names with
the same behaviour.
"""
import os

from celery import Celery

app = Celery(
    'tasks',
    broker=os.environ.get('KOMBU_TEST_BROKER', 'redis://127.0.0.1:6379/0'),
    backend=os.environ.get('KOMBU_TEST_BACKEND', 'redis://127.0.0.1:6379/0'),
)
app.conf.update(
    broker_transport_options={'global_keyprefix': os.environ.get('KOMBU_TEST_PREFIX', '')},
    task_default_queue=os.environ.get('KOMBU_TEST_QUEUE', 'celery'),
)


@app.task(name='tasks.add')
def add(x, y):
    return x + y


@app.task(name='tasks.echo')
def echo(*args, **kwargs):
    return {'args': list(args), 'kwargs': kwargs}


@app.task(name='tasks.fail')
def fail(message):
    raise ValueError(message)


@app.task(name='tasks.retry_until', bind=True, max_retries=10)
def retry_until(self, n):
    """Retries (KeyError as the reason) until it has been retried n times."""
    if self.request.retries < n:
        raise self.retry(countdown=0.2, exc=KeyError('again'))
    return self.request.retries


@app.task(name='tasks.hop', bind=True, max_retries=3)
def hop(self, trail):
    """Appends 'py' to trail; until Go has seen it too, retries it into the
    Go worker's queue. The Go worker does the same the other way round."""
    trail = list(trail) + ['py']
    if 'go' not in trail:
        raise self.retry(args=[trail], countdown=0.1, queue=os.environ['KOMBU_TEST_GO_QUEUE'])
    return {'trail': trail, 'retries': self.request.retries}
