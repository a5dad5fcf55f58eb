package interop

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestGoToPython proves that messages a Go producer publishes are received
// by a Python Kombu 5.2.4 consumer with every field as Python itself would
// have produced it: payload, message.body, content_type, content_encoding,
// headers, properties, delivery_info and delivery_tag, over direct routing,
// topic routing (several patterns, routed by Go over bindings Python wrote),
// fanout (pub/sub), the default exchange, every priority 0..9 (lower number
// consumed first), json/binary/text bodies, zlib compression, rich headers
// and properties. Nothing is delivered twice or to a queue that should not
// get it, and every list is empty afterwards. It runs with Kombu's default
// options and with the Celery docs' sep ":" and ten priority steps.
func TestGoToPython(t *testing.T) {
	t.Parallel()
	for _, prof := range profiles {
		t.Run(prof.name, func(t *testing.T) {
			t.Parallel()
			testGoToPython(t, newEnv(t).withProfile(prof))
		})
	}
}

func testGoToPython(t *testing.T, e *env) {
	tp := newTopology()
	cases := tp.cases()
	want := 0
	for _, c := range cases {
		want += len(c.expect)
	}

	// Python declares the topology (its bindings), starts consuming, and
	// waits for "go" before draining so that the priority messages are all
	// queued before it takes the first one.
	py := e.startPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": tp.pyQueues(),
		"count": want, "timeout": 60, "wait_go": true,
	})
	py.expect("ready", 20*time.Second)

	conn := e.dial()
	prod := conn.Producer()
	tags := map[string]string{}
	for _, c := range cases {
		if !c.fanout() {
			tags[c.name] = c.goPublish(t, prod)
		}
	}
	py.send("go")
	// Fanout is at-most-once: publish only once Python's PSUBSCRIBE is live.
	e.waitSubscribed(e.fanoutChannel(tp.exF.Name, ""))
	e.waitSubscribed(e.fanoutChannel(tp.exF2.Name, "ev.probe"))
	for _, c := range cases {
		if c.fanout() {
			tags[c.name] = c.goPublish(t, prod)
		}
	}
	got := py.collect(60 * time.Second)
	py.wait(10 * time.Second)

	byCase := map[string]msgCase{}
	for _, c := range cases {
		byCase[c.name] = c
	}
	ta := newTally()
	seen := map[[2]string]int{}
	var prioOrder []string
	for _, m := range got {
		name := m.header("case")
		c, ok := byCase[name]
		if !ok {
			t.Errorf("Python got a message with no known case header: %+v", m)
			continue
		}
		seen[[2]string{name, m.Queue}]++
		if m.Queue == tp.qP {
			prioOrder = append(prioOrder, name)
		}
		ta.add(c, checkPyMsg(c, m, tags[name]), t, m.Queue)
	}
	checkRouting(t, ta, cases, seen)
	if want := tp.wantPriorityOrder(e.prof.steps); !slices.Equal(prioOrder, want) {
		t.Errorf("Python consumed the priority queue in the wrong order:\n\tgot:  %v\n\twant: %v", prioOrder, want)
	}
	for _, q := range tp.queueNames() {
		if n := e.queueLen(q); n != 0 {
			t.Errorf("queue %s still holds %d messages", q, n)
		}
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left after Python acked everything: hash %d, index %d", h, i)
	}
	t.Log(ta.summary("Go→Python [" + e.prof.name + "]"))
}

// checkPyMsg compares what Python saw with what Go published.
func checkPyMsg(c msgCase, m pyMsg, tag string) []string {
	var p []string
	add := func(s string) {
		if s != "" {
			p = append(p, s)
		}
	}
	if m.DecodeError != nil {
		add(fmt.Sprintf("message.payload raised %v", m.DecodeError))
	} else {
		add(sameJSON("message.payload", m.Payload, c.body.tagged()))
	}
	if !bytes.Equal(m.Body, c.body.serialized()) {
		add(fmt.Sprintf("message.body: got %q, want %q", m.Body, c.body.serialized()))
	}
	ct, enc := c.body.contentType()
	add(sameJSON("content_type", m.ContentType, ct))
	add(sameJSON("content_encoding", m.ContentEncoding, enc))
	add(sameJSON("headers", m.Headers, c.wantHeaders()))
	add(sameJSON("properties", m.Properties, c.wantProperties(tag)))
	add(sameJSON("delivery_info", m.DeliveryInfo, map[string]any{"exchange": c.exchange.Name, "routing_key": c.routingKey}))
	if m.DeliveryTag != tag {
		add(fmt.Sprintf("delivery_tag: got %q, Go published %q", m.DeliveryTag, tag))
	}
	if m.Redelivered {
		add("redelivered: got true for a first delivery")
	}
	return p
}

// checkRouting checks that every case reached exactly its queues, once, and
// counts the cases that must reach no queue.
func checkRouting(t *testing.T, ta *tally, cases []msgCase, seen map[[2]string]int) {
	t.Helper()
	want := map[[2]string]bool{}
	for _, c := range cases {
		var problems []string
		for _, q := range c.expect {
			want[[2]string{c.name, q}] = true
			if n := seen[[2]string{c.name, q}]; n != 1 {
				problems = append(problems, fmt.Sprintf("delivered %d times to %s, want once", n, q))
			}
		}
		if len(c.expect) == 0 {
			for k, n := range seen {
				if k[0] == c.name {
					problems = append(problems, fmt.Sprintf("delivered %d times to %s, want nowhere", n, k[1]))
				}
			}
			ta.add(c, problems, t, "(none)")
		} else if len(problems) > 0 {
			t.Errorf("case %s routing (%s %q → %v):\n%v", c.name, c.exchange.Type.Normalize(), c.routingKey, c.expect, problems)
		}
	}
	for k, n := range seen {
		if !want[k] && n > 0 && !slices.ContainsFunc(cases, func(c msgCase) bool { return c.name == k[0] && len(c.expect) == 0 }) {
			t.Errorf("case %s delivered %d times to %s, which it must not reach", k[0], n, k[1])
		}
	}
}

// TestPythonToGo proves that messages a Python Kombu 5.2.4 producer
// publishes are received by a Go consumer with every field intact: body,
// decoded payload, content type and encoding, headers (types kept: int vs
// float, null, nesting, unicode), properties, delivery info (exchange,
// routing key, queue), the delivery tag (shared by the copies of one
// publish) and the redelivered flag; with Python routing over bindings Go
// wrote (topic patterns included), fanout over pub/sub, and priorities
// consumed lower number first. It runs with Kombu's default options and
// with the Celery docs' sep ":" and ten priority steps.
func TestPythonToGo(t *testing.T) {
	t.Parallel()
	for _, prof := range profiles {
		t.Run(prof.name, func(t *testing.T) {
			t.Parallel()
			testPythonToGo(t, newEnv(t).withProfile(prof))
		})
	}
}

func testPythonToGo(t *testing.T, e *env) {
	tp := newTopology()
	cases := tp.cases()
	want := 0
	var queued, fanned []any
	for _, c := range cases {
		want += len(c.expect)
		if c.fanout() {
			fanned = append(fanned, c.pySpec())
		} else {
			queued = append(queued, c.pySpec())
		}
	}

	conn := e.dial()
	ctx := t.Context()
	for _, q := range tp.queues {
		if _, err := conn.DeclareQueue(ctx, q); err != nil {
			t.Fatalf("DeclareQueue %s: %v", q.Name, err)
		}
	}
	py := e.startPy("publish", map[string]any{
		"url": e.url, "options": e.pyOptions(), "messages": queued,
		"fanout_messages": fanned, "wait_go": true,
	})
	py.expect("published", 30*time.Second)

	gc := startGoConsumer(t, conn, tp.queues, nil)
	e.waitSubscribed(e.fanoutChannel(tp.exF.Name, ""))
	e.waitSubscribed(e.fanoutChannel(tp.exF2.Name, "ev.probe"))
	py.send("go")
	py.expect("done", 30*time.Second)
	py.wait(10 * time.Second)
	gc.waitFor(want, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // let any duplicate arrive
	gc.stop()
	gc.checkNoErrors()

	byCase := map[string]msgCase{}
	for _, c := range cases {
		byCase[c.name] = c
	}
	ta := newTally()
	seen := map[[2]string]int{}
	tagOf := map[string]string{}
	var prioOrder []string
	for _, g := range gc.messages() {
		name := g.header("case")
		c, ok := byCase[name]
		if !ok {
			t.Errorf("Go got a message with no known case header: %v headers %v", g, g.m.Headers)
			continue
		}
		q := g.m.DeliveryInfo.Queue
		seen[[2]string{name, q}]++
		if q == tp.qP {
			prioOrder = append(prioOrder, name)
		}
		problems := checkGoMsg(c, g, q)
		if prev, ok := tagOf[name]; ok && prev != g.m.DeliveryTag {
			problems = append(problems, fmt.Sprintf("copies of one publish carry different tags: %s and %s (wire spec §3.2: one tag per publish)", prev, g.m.DeliveryTag))
		}
		tagOf[name] = g.m.DeliveryTag
		ta.add(c, problems, t, q)
	}
	checkRouting(t, ta, cases, seen)
	if want := tp.wantPriorityOrder(e.prof.steps); !slices.Equal(prioOrder, want) {
		t.Errorf("Go consumed the priority queue in the wrong order:\n\tgot:  %v\n\twant: %v", prioOrder, want)
	}
	for _, q := range tp.queueNames() {
		if n := e.queueLen(q); n != 0 {
			t.Errorf("queue %s still holds %d messages", q, n)
		}
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left after Go acked everything: hash %d, index %d", h, i)
	}
	t.Log(ta.summary("Python→Go [" + e.prof.name + "]"))
}

// checkGoMsg compares what Go received with what Python published.
func checkGoMsg(c msgCase, g goMsg, queue string) []string {
	var p []string
	add := func(s string) {
		if s != "" {
			p = append(p, s)
		}
	}
	m := g.m
	if g.payloadErr != nil {
		add(fmt.Sprintf("Payload(): %v", g.payloadErr))
	} else {
		add(sameJSON("Payload()", g.taggedPayload(), c.body.tagged()))
	}
	if !bytes.Equal(m.Body, c.body.serialized()) {
		add(fmt.Sprintf("Body: got %q, want %q", m.Body, c.body.serialized()))
	}
	ct, enc := c.body.contentType()
	if m.ContentType != ct || m.ContentEncoding != enc {
		add(fmt.Sprintf("content type/encoding: got %q/%q, want %q/%q", m.ContentType, m.ContentEncoding, ct, enc))
	}
	add(sameJSON("Headers", m.Headers, c.wantHeaders()))
	pr := m.Properties
	if pr.CorrelationID != c.corrID || pr.ReplyTo != c.replyTo {
		add(fmt.Sprintf("CorrelationID/ReplyTo: got %q/%q, want %q/%q", pr.CorrelationID, pr.ReplyTo, c.corrID, c.replyTo))
	}
	if int(pr.DeliveryMode) != c.deliveryMode() {
		add(fmt.Sprintf("DeliveryMode: got %d, want %d", pr.DeliveryMode, c.deliveryMode()))
	}
	if pr.Expiration != c.expirationText() {
		add(fmt.Sprintf("Expiration: got %q, want %q", pr.Expiration, c.expirationText()))
	}
	if pr.Priority != c.priority {
		add(fmt.Sprintf("Priority: got %d, want %d", pr.Priority, c.priority))
	}
	wantExtra := map[string]any{}
	if c.messageID != "" {
		wantExtra["message_id"] = c.messageID
	}
	gotExtra := pr.Extra
	if gotExtra == nil {
		gotExtra = map[string]any{}
	}
	add(sameJSON("Properties.Extra", gotExtra, wantExtra))
	di := m.DeliveryInfo
	if di.Exchange != c.exchange.Name || di.RoutingKey != c.routingKey {
		add(fmt.Sprintf("DeliveryInfo exchange/routing key: got %q/%q, want %q/%q", di.Exchange, di.RoutingKey, c.exchange.Name, c.routingKey))
	}
	if !slices.Contains(c.expect, queue) {
		add(fmt.Sprintf("DeliveryInfo.Queue %q is not one of %v", queue, c.expect))
	}
	if !uuid4Re.MatchString(m.DeliveryTag) {
		add(fmt.Sprintf("DeliveryTag %q is not a uuid4", m.DeliveryTag))
	}
	if m.Redelivered {
		add("Redelivered: true for a first delivery")
	}
	if !bytes.Contains(m.Raw, []byte(m.DeliveryTag)) {
		add(fmt.Sprintf("Raw does not hold the envelope: %q", m.Raw))
	}
	return p
}
