"""Celery tasks for otelcelery's interop test.

Debian's Python has no OpenTelemetry, so relay does by hand what
opentelemetry-instrumentation-celery does for a traced task: its prerun
handler extracts the W3C context from the request (a getattr on
task.request: in Celery 5.2.6 and 5.5.2 alike, celery/worker/request.py
starts the request dict from a copy of the protocol 2 message headers and
the task's request Context takes its keys as attributes, so a custom header
is self.request.<name>; there is no separate headers dict for it), and the before_task_publish handler of the task it sends injects
the context of a new span of the same trace into that message's headers.

Configured through the environment as the celery package's testdata/tasks.py:
KOMBU_TEST_BROKER, KOMBU_TEST_BACKEND, KOMBU_TEST_PREFIX, KOMBU_TEST_QUEUE and
KOMBU_TEST_GO_QUEUE (where relay sends the next task).
"""
import os
import secrets

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


@app.task(name='otel.relay', bind=True)
def relay(self, n):
    """Reads the trace context from the request and sends otel.finish to the
    Go queue with the context of a new span (as Python's apply_async span)."""
    traceparent = getattr(self.request, 'traceparent', None)
    if not traceparent:
        raise ValueError('no traceparent in the request')
    version, trace_id, parent_id, flags = traceparent.split('-')
    span_id = secrets.token_hex(8)
    headers = {'traceparent': '-'.join([version, trace_id, span_id, flags])}
    for key in ('tracestate', 'baggage'):
        value = getattr(self.request, key, None)
        if value:
            headers[key] = value
    sent = app.send_task('otel.finish', args=[n + 1], queue=os.environ['KOMBU_TEST_GO_QUEUE'],
                         headers=headers)
    return {'received': traceparent, 'sent': headers, 'next': sent.id}
