"""Python Kombu side of the kombu-go interop tests.

Usage: python3 peer.py COMMAND < spec

The first line of stdin is a JSON spec; the results are JSON lines on
stdout, one event per line ({"event": ...}). Some commands then wait for a
line "go" on stdin before their second phase, so the Go test can order
things between the two processes.

Bodies are tagged so that every Kombu body kind survives JSON:
  {"json": value}   publish value with Kombu's default json serializer
  {"text": "str"}   publish a str (Kombu sends text/plain, utf-8)
  {"bytes": "b64"}  publish bytes (Kombu sends application/data, binary)
Received payloads are reported the same way.

Commands:
  publish   declare exchanges (and queues if asked), publish "messages",
            print "published"; with "wait_go", wait for "go", publish
            "fanout_messages", print "done".
  consume   declare the queues, start one kombu.Consumer per queue, print
            "ready"; with "wait_go", wait for "go"; with "restore_visible"
            run Kombu's visibility restore once; then drain until "count"
            messages arrived (or "timeout"), printing each as "message",
            then "done"; with "until_stop", drain until a line "stop"
            arrives on stdin instead. "action" settles each message: ack
            (default), requeue, none (leave it unacked and exit without
            Kombu's restore on close), or die (print the message, then
            os._exit at once).
  simple    kombu.simple.SimpleQueue: op "put" (publish "messages") or op
            "get" (get "count" messages, ack each, print them).
  topic     no broker: print the pattern Kombu stores for each of "keys",
            whether each matches each of "routing_keys", and with "alnum"
            the code points str.isalnum accepts.
"""

import base64
import json
import os
import select
import socket
import sys
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue, binding


def pyvalue(o):
    """JSON for the typed values Kombu 5.3+ decodes from type markers:
    {"__py__": type, "value": text}."""
    import datetime as dt
    import decimal
    import uuid
    if isinstance(o, (dt.datetime, dt.date, dt.time)):
        return {"__py__": type(o).__name__, "value": o.isoformat()}
    if isinstance(o, decimal.Decimal):
        return {"__py__": "Decimal", "value": str(o)}
    if isinstance(o, uuid.UUID):
        return {"__py__": "UUID", "value": o.hex}
    if isinstance(o, (bytes, bytearray)):
        return {"__py__": "bytes", "value": base64.b64encode(bytes(o)).decode()}
    raise TypeError("cannot report %r" % (o,))


def to_python(v):
    """The inverse of pyvalue, for bodies published with real Python values."""
    import datetime as dt
    import decimal
    import uuid
    if isinstance(v, dict):
        if set(v) == {"__py__", "value"}:
            t, x = v["__py__"], v["value"]
            return {"datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat,
                    "time": dt.time.fromisoformat, "Decimal": decimal.Decimal,
                    "UUID": lambda h: uuid.UUID(hex=h), "bytes": base64.b64decode}[t](x)
        return {k: to_python(e) for k, e in v.items()}
    if isinstance(v, list):
        return [to_python(e) for e in v]
    return v


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=pyvalue) + "\n")
    sys.stdout.flush()


def wait_go():
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("expected 'go' on stdin, got %r" % line)


def connect(spec):
    opts = dict(spec.get("options") or {})
    return Connection(spec["url"], transport_options=opts)


def exchange_of(e):
    if not e or not e.get("name"):
        return Exchange("")
    return Exchange(e["name"], type=e.get("type") or "direct", durable=True,
                    delivery_mode=e.get("delivery_mode"))


def queue_of(q):
    bindings = [binding(exchange_of(b["exchange"]), routing_key=b.get("routing_key", ""))
                for b in q.get("bindings") or []]
    if not bindings:
        # A queue on the default exchange only: no binding is written.
        return Queue(q["name"], exchange=Exchange(""), routing_key=q["name"])
    return Queue(q["name"], bindings=bindings)


def body_of(tagged):
    if "json" in tagged:
        return tagged["json"]
    if "py" in tagged:
        return to_python(tagged["py"])
    if "text" in tagged:
        return tagged["text"]
    if "bytes" in tagged:
        return base64.b64decode(tagged["bytes"])
    raise ValueError("untagged body %r" % (tagged,))


def tag_payload(v):
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, str):
        return {"text": v}
    return {"json": v}


def publish_one(conn, producer, m):
    """Publish one message spec {exchange, routing_key, body, ...}."""
    kwargs = {}
    # Properties in the caller's order: Kombu writes them in this order.
    for k, v in (m.get("properties") or {}).items():
        kwargs[k] = v
    for k in ("priority", "delivery_mode", "expiration", "compression",
              "serializer", "content_type", "content_encoding"):
        if m.get(k) is not None:
            kwargs[k] = m[k]
    ex = exchange_of(m.get("exchange"))
    declare = [ex] if ex.name else []
    producer.publish(
        body_of(m["body"]),
        exchange=ex,
        routing_key=m.get("routing_key", ""),
        headers=dict(m.get("headers") or {}),
        declare=declare,
        **kwargs)


def describe(queue, message):
    try:
        payload = tag_payload(message.payload)
        err = None
    except Exception as e:  # report, do not crash: the Go test shows it
        payload, err = None, "%s: %s" % (type(e).__name__, e)
    di = message.delivery_info or {}
    return {
        "event": "message",
        "queue": queue,
        "payload": payload,
        "decode_error": err,
        "body": base64.b64encode(message.body or b"").decode(),
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": message.headers,
        "properties": message.properties,
        "delivery_info": di,
        "delivery_tag": message.delivery_tag,
        "redelivered": bool(di.get("redelivered") or message.headers.get("redelivered")),
    }


def cmd_publish(spec):
    with connect(spec) as conn:
        channel = conn.channel()
        for q in spec.get("declare_queues") or []:
            queue_of(q)(channel).declare()
        producer = Producer(channel)
        for m in spec.get("messages") or []:
            publish_one(conn, producer, m)
        emit({"event": "published", "n": len(spec.get("messages") or [])})
        if spec.get("wait_go"):
            wait_go()
            for m in spec.get("fanout_messages") or []:
                publish_one(conn, producer, m)
        emit({"event": "done"})


def cmd_consume(spec):
    count = spec.get("count", 0)
    timeout = spec.get("timeout", 20)
    action = spec.get("action", "ack")
    accept = spec.get("accept") or ["json", "text/plain", "application/data"]
    got = []

    with connect(spec) as conn:
        channel = conn.channel()
        consumers = []
        for q in spec["queues"]:
            def on_message(body, message, _name=q["name"]):
                emit(describe(_name, message))
                got.append(message)
                if action == "die":
                    os._exit(0)
                elif action == "requeue":
                    message.requeue()
                elif action == "ack":
                    message.ack()
            c = Consumer(channel, [queue_of(q)], callbacks=[on_message], accept=accept,
                         no_ack=bool(spec.get("no_ack")))
            if spec.get("prefetch"):
                c.qos(prefetch_count=spec["prefetch"])
            c.consume()
            consumers.append(c)
        emit({"event": "ready"})
        if spec.get("wait_go"):
            wait_go()
        if spec.get("restore_visible"):
            # What Kombu's drain loop does after an empty poll (unthrottled
            # on the first call): give back expired unacked messages.
            channel.qos.restore_visible()
        deadline = time.monotonic() + timeout
        until_stop = spec.get("until_stop")
        while time.monotonic() < deadline:
            if until_stop:
                if select.select([sys.stdin], [], [], 0)[0]:
                    sys.stdin.readline()  # "stop"
                    break
            elif len(got) >= count:
                break
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
        emit({"event": "done", "n": len(got)})
        if action == "none":
            # Leave the messages unacked for good: skip Kombu's restore on
            # close, as a crash would.
            sys.stdout.flush()
            os._exit(0)


def cmd_simple(spec):
    from kombu.simple import SimpleQueue
    with connect(spec) as conn:
        q = SimpleQueue(conn.channel(), spec["name"], accept=["json", "text/plain", "application/data"])
        if spec["op"] == "put":
            for m in spec.get("messages") or []:
                kwargs = {k: m[k] for k in ("priority", "compression", "serializer") if m.get(k) is not None}
                q.put(body_of(m["body"]), headers=dict(m.get("headers") or {}), **kwargs)
            emit({"event": "done", "n": len(spec.get("messages") or [])})
        else:
            n = 0
            for _ in range(spec.get("count", 1)):
                m = q.get(block=True, timeout=spec.get("timeout", 10))
                emit(describe(spec["name"], m))
                m.ack()
                n += 1
            emit({"event": "done", "n": n})
        q.close()


def cmd_topic(spec):
    """Kombu's topic translation, no broker: the pattern each binding key is
    stored as, which routing keys each pattern matches (re.match, as
    TopicExchange._match), and optionally which code points str.isalnum
    accepts (as [first, last] ranges)."""
    import re
    from kombu.transport.virtual.exchange import TopicExchange
    ex = TopicExchange(None)
    patterns = [ex.key_to_pattern(k) for k in spec["keys"]]
    matches, errors = [], []
    for p in patterns:
        try:
            rx = re.compile(p, re.U)
        except re.error as e:  # Kombu raises this on every publish
            matches.append(None)
            errors.append(str(e))
            continue
        matches.append([bool(rx.match(rk)) for rk in spec["routing_keys"]])
        errors.append(None)
    out = {"event": "topic", "patterns": patterns, "matches": matches, "errors": errors}
    if spec.get("alnum"):
        import unicodedata

        def ranges(pred):
            out, start = [], None
            for c in range(0x110001):
                ok = c < 0x110000 and pred(chr(c))
                if ok and start is None:
                    start = c
                elif not ok and start is not None:
                    out.append([start, c - 1])
                    start = None
            return out
        out["alnum"] = ranges(str.isalnum)
        out["unassigned"] = ranges(lambda ch: unicodedata.category(ch) == "Cn")
        out["unidata_version"] = unicodedata.unidata_version
    emit(out)


def main():
    cmd = sys.argv[1]
    spec = json.loads(sys.stdin.readline())
    {"publish": cmd_publish, "consume": cmd_consume, "simple": cmd_simple,
     "topic": cmd_topic}[cmd](spec)


if __name__ == "__main__":
    main()
