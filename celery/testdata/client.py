"""Python Celery client side of kombu-go's interop tests.

    python3 client.py send CALLS   print the task ids of CALLS (JSON list)
    python3 client.py get IDS      wait for each id (JSON list) and print outcomes
    python3 client.py run CALLS    send, then get

A call is {"name": ..., "args": [...], "kwargs": {...}, "options": {...}};
options are passed to apply_async (queue, priority, countdown, expires, ...).
An outcome records the state, the result or the exception AsyncResult.get()
raised, date_done and, for Go's retries, the states seen while waiting.
Configuration comes from the same environment variables as tasks.py.
"""
import json
import sys

from tasks import app

TIMEOUT = float(__import__('os').environ.get('KOMBU_TEST_TIMEOUT', '30'))


def send(calls):
    ids = []
    for c in calls:
        r = app.send_task(c['name'], args=c.get('args', []), kwargs=c.get('kwargs', {}), **c.get('options', {}))
        ids.append(r.id)
    return ids


def get(ids):
    out = []
    for task_id in ids:
        r = app.AsyncResult(task_id)
        o = {'id': task_id}
        try:
            o['result'] = r.get(timeout=TIMEOUT)
        except Exception as exc:  # the error AsyncResult.get() raised
            o['raised'] = type(exc).__name__
            o['raised_module'] = type(exc).__module__
            o['message'] = str(exc)
            o['args'] = [a if isinstance(a, (str, int, float, bool, type(None))) else repr(a) for a in exc.args]
        o['state'] = r.state
        o['date_done'] = r.date_done.isoformat() if r.date_done else None
        o['parent_id'] = r._get_task_meta().get('parent_id')
        out.append(o)
    return out


def build(node):
    """Builds a canvas from a JSON tree:
    {"task": name, "args": [...], "kwargs": {...}, "queue": "go"|"py", "immutable": bool}
    {"chain": [node, ...]}, {"group": [node, ...]}, {"chord": {"header": [node, ...], "body": node}}
    """
    import os
    from celery import chain, chord, group, signature
    if 'chain' in node:
        return chain(*[build(n) for n in node['chain']])
    if 'group' in node:
        g = group(*[build(n) for n in node['group']])
        return g.set(task_id=node['id']) if 'id' in node else g
    if 'chord' in node:
        return chord([build(n) for n in node['chord']['header']], build(node['chord']['body']))
    q = node.get('queue', 'py')
    queue = {'go': os.environ['KOMBU_TEST_GO_QUEUE'], 'py': os.environ['KOMBU_TEST_QUEUE']}.get(q, q)
    sig = signature(node['task'], args=node.get('args', []), kwargs=node.get('kwargs', {}),
                    immutable=node.get('immutable', False), options={'queue': queue}, app=app)
    return sig.set(task_id=node['id']) if 'id' in node else sig


def capture(spec):
    """Applies spec["canvas"] with no worker on its queue and returns the
    task messages Celery wrote there: headers, body and properties."""
    build(spec['canvas']).apply_async()
    out = []
    with app.connection() as conn:
        q = conn.SimpleQueue(spec['queue'])
        while True:
            try:
                m = q.get(block=True, timeout=1)
            except Exception:
                break
            props = {k: v for k, v in m.properties.items() if k not in ('delivery_info', 'delivery_tag', 'body_encoding')}
            out.append({'headers': m.headers, 'body': json.loads(m.body), 'properties': props})
            m.ack()
    return out


def canvas(spec):
    """Applies the canvas spec["canvas"] and reports what .get() returns or
    raises, and the ids Celery gave it."""
    sig = build(spec['canvas'])
    r = sig.apply_async()
    o = {'id': r.id}
    try:
        o['result'] = r.get(timeout=TIMEOUT)
    except Exception as exc:
        o['raised'] = type(exc).__name__
        o['raised_module'] = type(exc).__module__
        o['message'] = str(exc)
    try:
        o['state'] = r.state
    except Exception:
        pass
    return o


def save_group(ids):
    """Saves a GroupResult of the given task ids; prints its id."""
    from celery.result import GroupResult
    g = GroupResult(__import__('uuid').uuid4().hex, [app.AsyncResult(i) for i in ids], app=app)
    g.save()
    return g.id


def restore_group(gid):
    """GroupResult.restore(gid): the member ids and what join() returns."""
    from celery.result import GroupResult
    g = GroupResult.restore(gid, app=app)
    if g is None:
        return None
    return {'id': g.id, 'ids': [r.id for r in g.results], 'results': g.join(timeout=TIMEOUT)}


def events(spec):
    """Feeds celery.events.state.State from a real Receiver for
    spec["seconds"], after printing a "ready" line, then prints what
    State knows: workers (alive, processed, active, sw_ident, heartbeats),
    tasks (state, name, result, exception) and the event types seen."""
    import socket
    import time
    from celery.events.state import State
    state = State()
    seen = []

    def on_event(ev):
        seen.append(ev['type'])
        state.event(ev)

    deadline = time.time() + spec['seconds']
    with app.connection() as conn:
        recv = app.events.Receiver(conn, handlers={'*': on_event})
        consumer = recv.consume(limit=None, timeout=0.5, wakeup=False)
        try:  # one drain, so the subscription is in place before "ready"
            next(consumer)
        except (socket.timeout, StopIteration):
            consumer = recv.consume(limit=None, timeout=0.5, wakeup=False)
        print(json.dumps({'ready': True}), flush=True)
        while time.time() < deadline:
            try:
                next(consumer)
            except (socket.timeout, StopIteration):
                consumer = recv.consume(limit=None, timeout=0.5, wakeup=False)
            except Exception as exc:  # a broken event: report it
                seen.append('error: %r' % (exc,))
    workers = {h: {'alive': w.alive, 'processed': w.processed, 'active': w.active, 'sw_ident': w.sw_ident,
                   'sw_ver': w.sw_ver, 'heartbeats': len(w.heartbeats), 'pid': w.pid, 'clock': w.clock}
               for h, w in state.workers.items()}
    tasks = {u: {'state': t.state, 'name': t.name, 'result': t.result, 'exception': t.exception,
                 'worker': t.worker.hostname if t.worker else None, 'runtime': t.runtime,
                 'rejected': t.rejected}
             for u, t in state.tasks.items()}
    return {'workers': workers, 'tasks': tasks, 'seen': sorted(set(seen))}


def stamped(spec):
    """Sends tasks.stamps to the Go queue with a stamp: Celery 5.3+ stamps
    the signature (stamped_headers and stamps headers); Celery 5.2, which
    has no stamping, sends the same two headers with apply_async(headers=).
    Returns what the task returned and the version path used."""
    import os
    from celery import signature
    sig = signature('tasks.stamps', args=[1], options={'queue': os.environ['KOMBU_TEST_GO_QUEUE']}, app=app)
    if hasattr(sig, 'stamp'):
        sig.stamp(team='blue')
        r = sig.apply_async()
        how = 'stamp'
    else:
        r = sig.apply_async(headers={'stamped_headers': ['team'], 'stamps': {'team': 'blue'}})
        how = 'headers'
    return {'how': how, 'result': r.get(timeout=TIMEOUT)}


def main():
    cmd, arg = sys.argv[1], json.loads(sys.argv[2])
    if cmd == 'send':
        print(json.dumps(send(arg)))
    elif cmd == 'get':
        print(json.dumps(get(arg)))
    elif cmd == 'savegroup':
        print(json.dumps(save_group(arg)))
    elif cmd == 'restoregroup':
        print(json.dumps(restore_group(arg)))
    elif cmd == 'capture':
        print(json.dumps(capture(arg)))
    elif cmd == 'stamped':
        print(json.dumps(stamped(arg)))
    elif cmd == 'events':
        print(json.dumps(events(arg)))
    elif cmd == 'canvas':
        print(json.dumps(canvas(arg)))
    elif cmd == 'run':
        print(json.dumps(get(send(arg))))
    else:
        sys.exit('unknown command ' + cmd)


if __name__ == '__main__':
    main()
