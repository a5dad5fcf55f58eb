package interop

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/redis"
)

// recoveryBody is the message the recovery tests pass around.
func recoveryBody(name string) map[string]any {
	return map[string]any{"test": name, "n": 1, "f": 0.5, "u": "ünï ✓"}
}

// goPublishOne publishes one JSON message to a queue through the default
// exchange and returns its tag.
func goPublishOne(t *testing.T, conn *kombu.Connection, queue string, body any, opts ...kombu.PublishOption) string {
	t.Helper()
	opts = append([]kombu.PublishOption{kombu.WithRoutingKey(queue), kombu.WithHeaders(map[string]any{"h": "v", "n": 1})}, opts...)
	res, err := conn.Producer().Publish(t.Context(), body, opts...)
	if err != nil {
		t.Fatalf("Go publish: %v", err)
	}
	return res.DeliveryTag
}

// checkUnackedBytes checks that the unacked record of tag is exactly
// json.dumps([envelope, exchange, routing_key]) of the envelope bytes that
// were published: what Kombu's QoS.append writes (wire spec §9.1), given
// that json.dumps(json.loads(envelope)) is the envelope itself.
func (e *env) checkUnackedBytes(tag string, envelope []byte, exchange, routingKey, who string) {
	e.t.Helper()
	v, err := e.rdb.HGet(context.Background(), e.key("unacked"), tag).Result()
	if err != nil {
		e.t.Errorf("%s: HGET unacked %s: %v", who, tag, err)
		return
	}
	if want := redis.UnackedValue(envelope, exchange, routingKey); v != string(want) {
		e.t.Errorf("%s: unacked record is not [published envelope, exchange, routing_key] byte for byte (%s)", who, firstDiff([]byte(v), want))
	}
}

// listOne returns the only element of a list.
func (e *env) listOne(key string) []byte {
	e.t.Helper()
	vals, err := e.rdb.LRange(context.Background(), e.key(key), 0, -1).Result()
	if err != nil || len(vals) != 1 {
		e.t.Fatalf("LRANGE %s: %q %v, want exactly one element", quoteKey(key), vals, err)
	}
	return []byte(vals[0])
}

// checkUnackedRecord checks the unacked hash and index hold exactly one
// record for tag, laid out as Kombu writes it (wire spec §9.1): the hash
// value is the JSON array [envelope, exchange, routing_key], the index
// score Unix seconds close to now.
func (e *env) checkUnackedRecord(tag, exchange, routingKey string, who string) {
	e.t.Helper()
	ctx := context.Background()
	all, err := e.rdb.HGetAll(ctx, e.key("unacked")).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(all) != 1 {
		e.t.Errorf("%s: unacked hash has %d entries, want 1: %q", who, len(all), sortedKeys(all))
	}
	v, ok := all[tag]
	if !ok {
		e.t.Errorf("%s: no unacked record for tag %s", who, tag)
		return
	}
	env, ex, rk, err := redis.ParseUnackedValue([]byte(v))
	if err != nil {
		e.t.Errorf("%s: unacked record %q: %v", who, v, err)
	} else {
		if ex != exchange || rk != routingKey {
			e.t.Errorf("%s: unacked record routes to %q/%q, want %q/%q", who, ex, rk, exchange, routingKey)
		}
		if !bytes.Contains(env, []byte(tag)) {
			e.t.Errorf("%s: unacked record envelope lacks the tag: %s", who, env)
		}
		// The stored value is exactly [<envelope as popped>, "<ex>", "<rk>"].
		if want := redis.UnackedValue(env, ex, rk); !bytes.Equal(want, []byte(v)) {
			e.t.Errorf("%s: unacked record is not laid out as Kombu's json.dumps([envelope, exchange, routing_key]):\n\tgot:  %s\n\twant: %s", who, v, want)
		}
	}
	zs, err := e.rdb.ZRangeWithScores(ctx, e.key("unacked_index"), 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(zs) != 1 || zs[0].Member != tag {
		e.t.Errorf("%s: unacked_index = %v, want just %s", who, zs, tag)
		return
	}
	if now := float64(time.Now().UnixNano()) / 1e9; zs[0].Score < now-60 || zs[0].Score > now+1 {
		e.t.Errorf("%s: unacked_index score %f is not Unix seconds near now (%f)", who, zs[0].Score, now)
	}
}

// TestPythonConsumerDiesGoRestores proves that a message a Python consumer
// took without acking before it died (os._exit: no restore on close) is
// restored by a Go consumer once the visibility timeout passed, using
// Python's unacked records, and delivered with Redelivered set and its
// body, headers and tag intact.
func TestPythonConsumerDiesGoRestores(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := "dies-py-" + uuid.NewString()[:8]
	conn := e.dial("visibility_timeout", "1", "unacked_restore_interval", "0.2")
	body := recoveryBody("py-dies")
	tag := goPublishOne(t, conn, q, body, kombu.WithPriority(6))
	published := e.listOne(q + sep + "6")

	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
		"count": 1, "action": "die", "timeout": 20,
	}, 30*time.Second)
	if len(evs) != 1 || evs[0].kind() != "message" {
		t.Fatalf("Python consumer: want exactly one message then death, got %v", evs)
	}
	if m := parsePyMsg(t, evs[0]); m.DeliveryTag != tag || m.Redelivered {
		t.Fatalf("Python took %+v, want tag %s, not redelivered", m, tag)
	}
	if n := e.queueLen(q); n != 0 {
		t.Fatalf("queue holds %d messages after Python took the only one", n)
	}
	e.checkUnackedRecord(tag, "", q, "Python's record")
	e.checkUnackedBytes(tag, published, "", q, "Python's record")

	start := time.Now()
	gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil)
	gc.waitFor(1, 20*time.Second)
	took := time.Since(start)
	gc.stop()
	gc.checkNoErrors()
	got := gc.messages()[0]
	if !got.m.Redelivered || got.m.DeliveryTag != tag {
		t.Errorf("Go got tag %s redelivered=%v, want tag %s redelivered=true", got.m.DeliveryTag, got.m.Redelivered, tag)
	}
	if d := sameJSON("payload", got.payload, body); d != "" {
		t.Error(d)
	}
	if d := sameJSON("headers", got.m.Headers, map[string]any{"h": "v", "n": 1, "redelivered": true}); d != "" {
		t.Error(d)
	}
	if got.m.Properties.Priority != 6 {
		t.Errorf("restored message priority %d, want 6", got.m.Properties.Priority)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left after Go acked: hash %d, index %d", h, i)
	}
	if n := e.queueLen(q); n != 0 {
		t.Errorf("queue holds %d messages after Go acked the restored one", n)
	}
	t.Logf("Go restored Python's dead delivery and consumed it %v after starting", took.Round(10*time.Millisecond))
}

// TestGoConsumerKilledPythonRestores proves the reverse: a Go consumer in
// another process takes a message, records it as unacked exactly as Kombu
// does, and is killed with SIGKILL before acking; Python Kombu's
// restore_visible (visibility_timeout=1) puts it back and a Python consumer
// receives it redelivered, with the same tag and body.
func TestGoConsumerKilledPythonRestores(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := "dies-go-" + uuid.NewString()[:8]
	conn := e.dial()
	body := recoveryBody("go-dies")
	tag := goPublishOne(t, conn, q, body)
	published := e.listOne(q)

	took, kill := e.startHangingGoConsumer(q, 1)
	if took.Tag != tag || took.Redelivered {
		t.Fatalf("Go helper took %+v, want tag %s, not redelivered", took, tag)
	}
	e.checkUnackedRecord(tag, "", q, "Go's record")
	e.checkUnackedBytes(tag, published, "", q, "Go's record")
	delivered := time.Now()
	kill()
	if n := e.queueLen(q); n != 0 {
		t.Errorf("queue holds %d messages after the Go consumer took the only one", n)
	}
	time.Sleep(time.Until(delivered.Add(1200 * time.Millisecond)))

	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions("visibility_timeout", 1), "queues": []any{map[string]any{"name": q}},
		"count": 1, "timeout": 20, "restore_visible": true,
	}, 40*time.Second)
	var msgs []pyMsg
	for _, ev := range evs {
		if ev.kind() == "message" {
			msgs = append(msgs, parsePyMsg(t, ev))
		}
	}
	if len(msgs) != 1 {
		t.Fatalf("Python got %d messages after the Go consumer died, want 1 (events %v)", len(msgs), evs)
	}
	m := msgs[0]
	if !m.Redelivered || m.DeliveryTag != tag {
		t.Errorf("Python got tag %s redelivered=%v, want tag %s redelivered=true", m.DeliveryTag, m.Redelivered, tag)
	}
	if d := sameJSON("payload", m.Payload, map[string]any{"json": body}); d != "" {
		t.Error(d)
	}
	if d := sameJSON("delivery_info", m.DeliveryInfo, map[string]any{"exchange": "", "routing_key": q, "redelivered": true}); d != "" {
		t.Error(d)
	}
	if d := sameJSON("headers", m.Headers, map[string]any{"h": "v", "n": 1, "redelivered": true}); d != "" {
		t.Error(d)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left after Python acked: hash %d, index %d", h, i)
	}
	if n := e.queueLen(q); n != 0 {
		t.Errorf("queue holds %d messages after Python acked", n)
	}
}

// TestRequeueAcrossPeers proves that a requeue (reject with requeue) on one
// side is seen by the other: Go's Message.Requeue is received by Python
// redelivered, and Python's message.requeue() is received by Go with
// Redelivered set. It also compares the requeued envelope both write to the
// list (LPUSH, back of the queue, wire spec §9.3): the same bytes but for the
// tag.
func TestRequeueAcrossPeers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := e.dial()
	ctx := t.Context()
	body := recoveryBody("requeue")

	// Go requeues, Python receives.
	qa := "requeue-go-" + uuid.NewString()[:8]
	tagA := goPublishOne(t, conn, qa, body)
	m, err := conn.Get(ctx, qa, kombu.GetWait(5*time.Second))
	if err != nil {
		t.Fatalf("Go Get: %v", err)
	}
	if err := m.Requeue(ctx); err != nil {
		t.Fatalf("Go Requeue: %v", err)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("Go requeue left unacked records: hash %d, index %d", h, i)
	}
	goRequeued := e.listOne(qa)
	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": qa}}, "count": 1, "timeout": 20,
	}, 30*time.Second)
	if len(evs) != 2 || evs[0].kind() != "message" {
		t.Fatalf("Python: want one message, got %v", evs)
	}
	pm := parsePyMsg(t, evs[0])
	if !pm.Redelivered || pm.DeliveryTag != tagA || pm.Headers["redelivered"] != true {
		t.Errorf("Python got Go's requeued message as tag %s redelivered=%v headers %v; want tag %s, redelivered in delivery_info and headers", pm.DeliveryTag, pm.Redelivered, pm.Headers, tagA)
	}
	if d := sameJSON("payload", pm.Payload, map[string]any{"json": body}); d != "" {
		t.Error(d)
	}

	// Python requeues, Go receives.
	qb := "requeue-py-" + uuid.NewString()[:8]
	tagB := goPublishOne(t, conn, qb, body)
	evs = e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": qb}}, "count": 1,
		"timeout": 20, "action": "requeue",
	}, 30*time.Second)
	if len(evs) != 2 || evs[0].kind() != "message" {
		t.Fatalf("Python: want one message, got %v", evs)
	}
	pyRequeued := e.listOne(qb)
	gm, err := conn.Get(ctx, qb, kombu.GetWait(5*time.Second))
	if err != nil {
		t.Fatalf("Go Get after Python requeue: %v", err)
	}
	if !gm.Redelivered || gm.DeliveryTag != tagB {
		t.Errorf("Go got Python's requeued message as tag %s Redelivered=%v, want tag %s Redelivered=true", gm.DeliveryTag, gm.Redelivered, tagB)
	}
	if p, err := gm.Payload(); err != nil || sameJSON("payload", p, body) != "" {
		t.Errorf("payload %v (%v), want %v", p, err, body)
	}
	if err := gm.Ack(ctx); err != nil {
		t.Errorf("Ack: %v", err)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}

	// Both requeued the same publish (but for tag and queue name): the bytes
	// must match.
	g := bytes.ReplaceAll(maskTag(goRequeued), []byte(qa), []byte("<q>"))
	p := bytes.ReplaceAll(maskTag(pyRequeued), []byte(qb), []byte("<q>"))
	if !bytes.Equal(g, p) {
		t.Errorf("requeued envelope differs between Go and Python (%s)\n\tgo:     %s\n\tpython: %s", firstDiff(g, p), g, p)
	}
	if !pyjson.Valid(goRequeued) {
		t.Errorf("Go's requeued envelope is not JSON: %q", goRequeued)
	}
}

// TestRequeuePriorityList proves where a requeued priority-6 message goes:
// Python Kombu 5.2.4 pushes it to the queue's base list (wire spec §9.5:
// ≤5.3.7 loses the priority on restore), Kombu 5.4+ (5.5.3 in the trixie
// set) to its priority list; Go by default to its own priority list (as
// Kombu 5.4+), and Go with restore_priority=base to the base list; in each
// case byte for byte what the Python of the set under test wrote, but for
// the tag.
func TestRequeuePriorityList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	body := recoveryBody("requeue-priority")
	requeueIn := func(conn *kombu.Connection, q string) {
		t.Helper()
		goPublishOne(t, conn, q, body, kombu.WithPriority(6))
		m, err := conn.Get(ctx, q, kombu.GetWait(5*time.Second))
		if err != nil {
			t.Fatalf("Go Get: %v", err)
		}
		if err := m.Requeue(ctx); err != nil {
			t.Fatalf("Go Requeue: %v", err)
		}
	}
	id := uuid.NewString()[:8]

	qPy := "requeue-prio-py-" + id
	goPublishOne(t, e.dial(), qPy, body, kombu.WithPriority(6))
	e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": qPy}}, "count": 1,
		"timeout": 20, "action": "requeue",
	}, 30*time.Second)
	kombu54 := testenv.PythonVersionAtLeast(t, "kombu", "5.4")
	pyList := qPy
	if kombu54 {
		pyList = qPy + sep + "6"
	}
	pyRaw := e.listOne(pyList)

	qOwn := "requeue-prio-own-" + id
	requeueIn(e.dial(), qOwn)
	ownRaw := e.listOne(qOwn + sep + "6")
	if kombu54 {
		g := bytes.ReplaceAll(maskTag(ownRaw), []byte(qOwn), []byte("<q>"))
		p := bytes.ReplaceAll(maskTag(pyRaw), []byte(qPy), []byte("<q>"))
		if !bytes.Equal(g, p) {
			t.Errorf("requeued envelope differs between Go (default) and Python Kombu 5.4+ (%s)", firstDiff(g, p))
		}
	}

	qBase := "requeue-prio-base-" + id
	requeueIn(e.dial("restore_priority", "base"), qBase)
	baseRaw := e.listOne(qBase)
	if kombu54 {
		return // Python's requeue no longer writes the base list to compare with
	}
	g := bytes.ReplaceAll(maskTag(baseRaw), []byte(qBase), []byte("<q>"))
	p := bytes.ReplaceAll(maskTag(pyRaw), []byte(qPy), []byte("<q>"))
	if !bytes.Equal(g, p) {
		t.Errorf("requeued envelope differs between Go (restore_priority=base) and Python (%s)", firstDiff(g, p))
	}
}

// TestAckEmulationOffRequeueShape proves that Go reads the other envelope
// shape Kombu writes (wire spec §3.3): a Python consumer with
// ack_emulation=False requeues a zlib-compressed message as
// message.serializable() plus a top-level "redelivered": key order body,
// properties, content-type, content-encoding, headers; the body re-encoded
// after decompression and the compression header dropped. Go must take it
// from the list and decode the same payload.
func TestAckEmulationOffRequeueShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	conn := e.dial()
	q := "no-ackemu-" + uuid.NewString()[:8]
	body := recoveryBody("ack-emulation-off")
	tag := goPublishOne(t, conn, q, body, kombu.WithCompression("zlib"))
	e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions("ack_emulation", false), "queues": []any{map[string]any{"name": q}},
		"count": 1, "timeout": 20, "action": "requeue",
	}, 30*time.Second)
	raw := e.listOne(q)
	if !bytes.HasPrefix(raw, []byte(`{"body": `)) || !bytes.Contains(raw, []byte(`"redelivered": true}`)) || bytes.Contains(raw, []byte("compression")) {
		t.Fatalf("Python did not write the serializable() shape: %s", raw)
	}
	m, err := conn.Get(ctx, q, kombu.GetWait(5*time.Second))
	if err != nil {
		t.Fatalf("Go Get of the serializable() shape %s: %v", raw, err)
	}
	if m.DeliveryTag != tag {
		t.Errorf("tag %q, want %q", m.DeliveryTag, tag)
	}
	if p, err := m.Payload(); err != nil || sameJSON("payload", p, body) != "" {
		t.Errorf("payload %v (%v), want %v", p, err, body)
	}
	if d := sameJSON("headers", m.Headers, map[string]any{"h": "v", "n": 1}); d != "" {
		t.Error(d)
	}
	t.Logf("Go read the ack_emulation=False requeue shape; Redelivered=%v (Python's own Message ignores the top-level flag)", m.Redelivered)
	if err := m.Ack(ctx); err != nil {
		t.Error(err)
	}
}
