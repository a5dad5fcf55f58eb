package transporttest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// capturedPlain is the plain Kombu envelope captured in the wire spec §3.1
// (Producer.publish({'hello':'world','n':1,'u':'é'}, exchange=ex_direct,
// routing_key='rk.direct', priority=5, headers={'x':1},
// correlation_id='cid-1', reply_to='rq')), with EXCHANGE and TAG standing
// for the exchange name and delivery tag.
const capturedPlain = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "EXCHANGE", "routing_key": "rk.direct"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "TAG"}}`

// capturedPlainRestored is capturedPlain as Kombu's restore writes it back
// (wire spec §3.3, §9.5): both redelivered flags appended, nothing else
// changed.
const capturedPlainRestored = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1, "redelivered": true}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "EXCHANGE", "routing_key": "rk.direct", "redelivered": true}, "priority": 5, "body_encoding": "base64", "delivery_tag": "TAG"}}`

func fill(tmpl, exchange, tag string) []byte {
	return []byte(strings.NewReplacer("EXCHANGE", exchange, "TAG", tag).Replace(tmpl))
}

// testCapabilities proves the backend declares exactly the optional
// capabilities its Features promise.
func (s *suite) testCapabilities(t *testing.T) {
	b := s.newBackend(t, NewClock(Epoch))
	t.Cleanup(func() { _ = b.Close() })
	if _, ok := b.(transport.Fanout); ok != s.f.Fanout {
		t.Errorf("backend implements Fanout: %v, Features.Fanout: %v", ok, s.f.Fanout)
	}
	if s.f.RestartBroker != nil && !s.f.Persistent {
		t.Errorf("Features.RestartBroker is set but Persistent is not")
	}
}

// testEnvelopeRoundTrip proves that what Put stores is what Get returns,
// byte for byte, whoever wrote it; that Publish writes the envelope Kombu
// writes (the §3.1 capture); and that a requeue writes Kombu's restored
// shape (the §3.3 capture).
func (s *suite) testEnvelopeRoundTrip(t *testing.T) {
	e := s.parallelEnv(t)
	ex, q := name("ex"), name("q")
	e.declareExchange(ex, entity.Direct)
	e.bind(q, ex, "rk.direct")
	tag := uuid.NewString()
	raw := fill(capturedPlain, ex, tag)

	// Put then Get: the same bytes.
	if err := e.backend.Put(e.ctx, q, 5, raw); err != nil {
		t.Fatal(err)
	}
	d := e.take(q)
	if d == nil || !bytes.Equal(d.Envelope, raw) || d.Queue != q {
		t.Fatalf("Get after Put returned %+v\nwant queue %s and %s", d, q, raw)
	}

	// Publish writes Kombu's bytes.
	n, err := e.tr.Publish(e.ctx, ex, "rk.direct", &envelope.Envelope{
		Body:            []byte(`{"hello": "world", "n": 1, "u": "\u00e9"}`),
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers:         map[string]any{"x": 1},
		Properties:      entity.Properties{CorrelationID: "cid-1", ReplyTo: "rq", Priority: 5},
		DeliveryTag:     tag,
	}, false)
	if err != nil || n != 1 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if d := e.take(q); d == nil || !bytes.Equal(d.Envelope, raw) {
		t.Fatalf("published envelope differs from Kombu's:\n got %s\nwant %s", envelopeOf(d), raw)
	}

	// A consumer sees every field, and a requeue writes the restored shape.
	if err := e.backend.Put(e.ctx, q, 5, raw); err != nil {
		t.Fatal(err)
	}
	ch := e.channel()
	m, err := ch.Get(e.ctx, q, false, nil)
	if err != nil {
		t.Fatalf("Channel.Get: %v", err)
	}
	if !bytes.Equal(m.Raw, raw) {
		t.Errorf("Message.Raw = %s, want %s", m.Raw, raw)
	}
	if string(m.Body) != `{"hello": "world", "n": 1, "u": "\u00e9"}` || m.ContentType != "application/json" ||
		m.ContentEncoding != "utf-8" || m.DeliveryTag != tag || m.Redelivered ||
		m.Properties.CorrelationID != "cid-1" || m.Properties.ReplyTo != "rq" ||
		m.Properties.Priority != 5 || m.Properties.DeliveryMode != entity.Persistent ||
		m.DeliveryInfo.Exchange != ex || m.DeliveryInfo.RoutingKey != "rk.direct" || m.DeliveryInfo.Queue != q {
		t.Errorf("message fields wrong: %+v", m)
	}
	if v, err := m.Payload(); err != nil {
		t.Errorf("Payload: %v", err)
	} else if mv, ok := v.(map[string]any); !ok || mv["hello"] != "world" || mv["u"] != "é" {
		t.Errorf("Payload = %#v", v)
	}
	if err := m.Requeue(e.ctx); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	if d := e.take(q); d == nil || !bytes.Equal(d.Envelope, fill(capturedPlainRestored, ex, tag)) {
		t.Fatalf("requeued envelope:\n got %s\nwant %s", envelopeOf(d), fill(capturedPlainRestored, ex, tag))
	}

	// Bytes written by other producers are kept as they are.
	others := []string{
		`{"body":"eyJhIjoxfQ==","content-type":"application/json","headers":{},"properties":{"delivery_info":{"exchange":"","routing_key":"q"},"delivery_tag":"` + uuid.NewString() + `","body_encoding":"base64"}}`,
		`{"body": "plain text \u00e9 <&>", "properties": {"delivery_tag": "` + uuid.NewString() + `", "body_encoding": "utf-8"}, "content-type": "text/plain", "content-encoding": "utf-8", "headers": {"h": 1}, "redelivered": true}`,
		`{"body": "eA==", "headers": {"big": 123456789012345678901234567890, "f": 1795550496.3968723}, "properties": {"delivery_tag": "` + uuid.NewString() + `"}}`,
	}
	if s.f.NoNonFiniteJSON {
		t.Log("Features.NoNonFiniteJSON: not checking an envelope with NaN and -Infinity")
	} else {
		others = append(others, `{"body": "eA==", "headers": {"nan": NaN, "inf": -Infinity}, "properties": {"delivery_tag": "`+uuid.NewString()+`"}}`)
	}
	for _, other := range others {
		if err := e.backend.Put(e.ctx, q, 0, []byte(other)); err != nil {
			t.Fatal(err)
		}
		if d := e.take(q); d == nil || string(d.Envelope) != other {
			t.Errorf("Get after Put of a foreign envelope:\n got %s\nwant %s", envelopeOf(d), other)
		}
	}

	// Binary and large bodies survive the round trip.
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(i*7 + i>>8)
	}
	for _, body := range [][]byte{bin[:256], bin, {}} {
		env := &envelope.Envelope{Body: body, ContentType: "application/data", ContentEncoding: "binary", Headers: map[string]any{}}
		if _, err := e.tr.Publish(e.ctx, "", q, env, false); err != nil {
			t.Fatal(err)
		}
		m, err := ch.Get(e.ctx, q, true, nil)
		if err != nil {
			t.Fatalf("Get binary body: %v", err)
		}
		if !bytes.Equal(m.Body, body) {
			t.Errorf("binary body of %d bytes came back as %d bytes", len(body), len(m.Body))
		}
	}
}

func envelopeOf(d *transport.Delivery) string {
	if d == nil {
		return "<queue empty>"
	}
	return string(d.Envelope)
}

// testPriorityOrder proves Kombu's Redis priority semantics: the lower the
// number the sooner (steps 0, 3, 6, 9: priority p goes to the largest step
// ≤ p, clamped to 0..9), FIFO within a step, both for Get and for a
// consumer.
func (s *suite) testPriorityOrder(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	type pm struct {
		id  string
		pri int
	}
	published := []pm{{"a", 9}, {"b", 0}, {"c", 6}, {"d", 3}, {"e", 2}, {"f", 5}, {"g", 7}, {"h", 0},
		{"i", 4}, {"j", 8}, {"k", 1}, {"l", 9}, {"m", -1}, {"n", 12}, {"o", 3}, {"p", 6}}
	want := []string{"b", "e", "h", "k", "m", "d", "f", "i", "o", "c", "g", "j", "p", "a", "l", "n"}
	pub := func() {
		for _, p := range published {
			e.publish("", q, p.id, p.pri, 1)
		}
	}
	pub()
	if got := e.drain(q); !slices.Equal(got, want) {
		t.Errorf("Get order = %v, want %v", got, want)
	}

	pub()
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 1}, nil)
	var got []string
	for range want {
		m := c.next()
		got = append(got, idOf(m))
		e.ack(m)
	}
	if !slices.Equal(got, want) {
		t.Errorf("consumer order = %v, want %v", got, want)
	}
}

// testStepMajor proves the step-major order across queues: every queue's
// step-0 list is served before any step-3 list, then queue order within a
// step (Kombu's BRPOP key order, wire spec §7.3).
func (s *suite) testStepMajor(t *testing.T) {
	e := s.parallelEnv(t)
	qa, qb, qc := name("qa"), name("qb"), name("qc")
	pub := func() {
		e.publish("", qa, "a6", 6, 1)
		e.publish("", qb, "b0", 0, 1)
		e.publish("", qa, "a3", 3, 1)
		e.publish("", qc, "c9", 9, 1)
		e.publish("", qc, "c0", 0, 1)
		e.publish("", qb, "b3", 4, 1)
		e.publish("", qa, "a0", 2, 1)
	}
	want := []string{"a0", "b0", "c0", "a3", "b3", "a6", "c9"}
	check := func(what string, got []string) {
		t.Helper()
		if s.f.NoCrossQueuePriority == "" {
			if !slices.Equal(got, want) {
				t.Errorf("%s order over [a b c] = %v, want %v", what, got, want)
			}
			return
		}
		// Per queue only: each queue's messages in its priority order.
		for _, q := range []string{"a", "b", "c"} {
			var mine, wantMine []string
			for _, id := range got {
				if id[:1] == q {
					mine = append(mine, id)
				}
			}
			for _, id := range want {
				if id[:1] == q {
					wantMine = append(wantMine, id)
				}
			}
			if !slices.Equal(mine, wantMine) {
				t.Errorf("%s order of queue %s = %v (of %v), want %v", what, q, mine, got, wantMine)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s took %v, want each of %v once", what, got, want)
		}
	}
	if s.f.NoCrossQueuePriority != "" {
		t.Logf("Features.NoCrossQueuePriority: %s; checking the order within each queue only", s.f.NoCrossQueuePriority)
	}
	pub()
	check("Fetch", e.drain(qa, qb, qc))
	{
		pub()
		var got []string
		for range want {
			d, err := e.get([]string{qa, qb, qc}, false, s.f.PollingInterval)
			if err != nil {
				t.Fatalf("waiting Fetch: %v", err)
			}
			env, err := envelope.Parse(d.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, env.Headers["id"].(string))
			if !slices.Contains([]string{qa, qb, qc}, d.Queue) {
				t.Errorf("waiting Fetch reported queue %q, a list key rather than a queue name", d.Queue)
			}
		}
		check("waiting Fetch", got)
	}
}

// testDirectRouting proves direct exchanges compare the routing key
// exactly, deliver one copy per distinct bound queue with the same delivery
// tag in every copy, keep bindings a set, route through bindings another
// process made for an exchange this process never declared (undeclared
// means direct), and stop routing after an unbind.
func (s *suite) testDirectRouting(t *testing.T) {
	e := s.parallelEnv(t)
	ex := name("ex")
	q1, q2, q3 := name("q1"), name("q2"), name("q3")
	e.declareExchange(ex, entity.Direct)
	e.bind(q1, ex, "rk.a")
	e.bind(q1, ex, "rk.a") // twice: still one binding
	e.bind(q1, ex, "rk.c")
	e.bind(q2, ex, "rk.b")
	e.bind(q3, ex, "rk.a")

	rows, err := e.backend.Bindings(e.ctx, ex)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Errorf("binding table has %d rows, want 4: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Pattern != "" {
			t.Errorf("direct binding row %+v has a pattern", r)
		}
	}

	tag := e.publish(ex, "rk.a", "m1", 0, 2)
	e.publish(ex, "rk.b", "m2", 0, 1)
	e.publish(ex, "rk.c", "m3", 0, 1)
	e.publish(ex, "rk", "none", 0, 0)
	e.publish(ex, "RK.A", "none", 0, 0)
	e.publish(ex, "rk.*", "none", 0, 0)
	e.publish(ex, "rk.a ", "none", 0, 0)
	for _, q := range []string{q1, q3} {
		d := e.take(q)
		if d == nil {
			t.Fatalf("queue %s got no copy", q)
		}
		if env, err := envelope.Parse(d.Envelope); err != nil || env.DeliveryTag != tag {
			t.Errorf("copy in %s has tag %v (err %v), want the publish's tag %s", q, env, err, tag)
		}
	}
	if got := e.drain(q1); !slices.Equal(got, []string{"m3"}) {
		t.Errorf("q1 holds %v, want [m3]", got)
	}
	if got := e.drain(q2); !slices.Equal(got, []string{"m2"}) {
		t.Errorf("q2 holds %v, want [m2]", got)
	}
	if got := e.drain(q3); len(got) != 0 {
		t.Errorf("q3 holds %v, want nothing more", got)
	}

	// A binding made by another process, for an exchange this process never
	// declared: routed as direct.
	ex2, q4 := name("ex"), name("q4")
	if err := e.backend.Bind(e.ctx, ex2, transport.BindingRow{RoutingKey: "k", Queue: q4}); err != nil {
		t.Fatal(err)
	}
	e.publish(ex2, "k", "m4", 0, 1)
	e.publish(ex2, "K", "none", 0, 0)
	if got := e.drain(q4); !slices.Equal(got, []string{"m4"}) {
		t.Errorf("q4 holds %v, want [m4]", got)
	}

	// Unbind stops the routing.
	if err := e.tr.UnbindQueue(e.ctx, q2, ex, "rk.b"); err != nil {
		t.Fatal(err)
	}
	e.publish(ex, "rk.b", "none", 0, 0)
}

// topicCase is one binding key with the routing keys, out of topicKeys,
// that Kombu's pattern matches (checked against Python's re.match).
type topicCase struct {
	key, pattern string
	matches      []string
}

var topicKeys = []string{"", "a", "a.", "a.b", "a.b.c", "a.bc", "c", "x.c", "a..b", "aaa", "ab",
	"ab-c_d", "é.x", "a→b", "abc", "abcd", "日本.東京", "a.b.", "q.x_y-z"}

var topicTable = []topicCase{
	{"#", `^.*?$`, topicKeys},
	{"*", `^.*?[^\.]$`, []string{"a", "a.b", "a.b.c", "a.bc", "c", "x.c", "a..b", "aaa", "ab", "ab-c_d", "é.x", "a→b", "abc", "abcd", "日本.東京", "q.x_y-z"}},
	{"a.*", `^a\..*?[^\.]$`, []string{"a.b", "a.b.c", "a.bc", "a..b"}},
	{"a.#", `^a\..*?$`, []string{"a.", "a.b", "a.b.c", "a.bc", "a..b", "a.b."}}, // not "a"
	{"#.c", `^.*?\.c$`, []string{"a.b.c", "x.c"}},                               // not "c"
	{"*.*", `^.*?[^\.]\..*?[^\.]$`, []string{"a.b", "a.b.c", "a.bc", "x.c", "a..b", "é.x", "日本.東京", "q.x_y-z"}},
	{"a*", `^a*$`, []string{"", "a", "aaa"}}, // a bare regex star
	{"a..b", `^a\.\.b$`, []string{"a..b"}},
	{"abc", `^abc$`, []string{"abc"}},
	{"ab-c_d", `^ab\-c\_d$`, []string{"ab-c_d"}},
	{"é.*", `^é\..*?[^\.]$`, []string{"é.x"}},
	{"a→b", `^a\→b$`, []string{"a→b"}},
	{"日本.#", `^日本\..*?$`, []string{"日本.東京"}},
	{"a.*.#", `^a\..*?[^\.]\..*?$`, []string{"a.b.c", "a.b."}},
	{"*.x_y-z", `^.*?[^\.]\.x\_y\-z$`, []string{"q.x_y-z"}},
}

// testTopicRouting proves topic exchanges follow Kombu's regex translation,
// not AMQP: the stored pattern text is Kombu's, and every routing key of a
// table checked against Python reaches exactly the queues whose pattern
// matches. It also proves that an empty stored pattern (bound by a process
// that thought the exchange direct) matches everything, and that a binding
// whose pattern Python cannot compile makes publishes fail, as Python raises
// re.error.
func (s *suite) testTopicRouting(t *testing.T) {
	e := s.parallelEnv(t)
	ex := name("ex")
	e.declareExchange(ex, entity.Topic)
	queueOf := map[string]string{}
	for _, c := range topicTable {
		q := name("q")
		queueOf[c.key] = q
		e.bind(q, ex, c.key)
	}
	// A row written by a peer that thought the exchange direct.
	qEmpty := name("q")
	if err := e.backend.Bind(e.ctx, ex, transport.BindingRow{RoutingKey: "whatever", Queue: qEmpty}); err != nil {
		t.Fatal(err)
	}

	rows, err := e.backend.Bindings(e.ctx, ex)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, r := range rows {
		stored[r.Queue] = r.Pattern
	}
	for _, c := range topicTable {
		if got := stored[queueOf[c.key]]; got != c.pattern {
			t.Errorf("binding key %q stored pattern %q, want Kombu's %q", c.key, got, c.pattern)
		}
	}

	for i, rk := range topicKeys {
		want := 1 // qEmpty
		for _, c := range topicTable {
			if slices.Contains(c.matches, rk) {
				want++
			}
		}
		e.publish(ex, rk, "rk"+string(rune('A'+i)), 0, want)
	}
	for _, c := range topicTable {
		var want []string
		for i, rk := range topicKeys {
			if slices.Contains(c.matches, rk) {
				want = append(want, "rk"+string(rune('A'+i)))
			}
		}
		if got := e.drain(queueOf[c.key]); !slices.Equal(got, want) {
			t.Errorf("binding key %q received %v, want %v (routing keys %q)", c.key, got, want, c.matches)
		}
	}
	if got := e.drain(qEmpty); len(got) != len(topicKeys) {
		t.Errorf("empty-pattern binding received %d messages, want all %d", len(got), len(topicKeys))
	}

	// "*a" translates to ^*a$, which Python refuses to compile.
	bad := name("ex")
	e.declareExchange(bad, entity.Topic)
	e.bind(name("q"), bad, "*a")
	if n, err := e.tr.Publish(e.ctx, bad, "xa", message("bad", 0), false); err == nil {
		t.Errorf("publish to a topic exchange with binding %q (re.error in Python) = %d, nil; want an error", "*a", n)
	}
}

// testFanoutRouting proves fanout exchanges broadcast as Kombu's Redis
// pub/sub does: a binding key "" hears only publishes with an empty routing
// key; other binding keys are globs ("#" read as "*") over the routing key;
// deliveries land on the queue the consumer mapped to the exchange. Without
// the Fanout capability, declaring a fanout exchange fails with
// ErrUnsupported.
func (s *suite) testFanoutRouting(t *testing.T) {
	e := s.parallelEnv(t)
	ex := name("ex")
	err := e.tr.DeclareExchange(e.ctx, entity.Exchange{Name: ex, Type: entity.Fanout})
	if !s.f.Fanout {
		if !errors.Is(err, transport.ErrUnsupported) {
			t.Fatalf("DeclareExchange(fanout) without Fanout = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"all": "", "ev": "ev.#", "one": "ev.one", "hash": "#"}
	cons := map[string]*consumer{}
	queues := map[string]string{}
	for who, key := range keys {
		q := name("q-" + who)
		queues[who] = q
		e.bind(q, ex, key)
		cons[who] = e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, NoAck: true}, nil)
	}
	// Subscriptions may take effect asynchronously: probe until each
	// consumer hears its probe (pub/sub is at-most-once).
	seen := func(who string, end string) []string {
		var got []string
		for _, m := range cons[who].nextUntil(t, end) {
			got = append(got, idOf(m))
			if m.DeliveryInfo.Queue != queues[who] || m.DeliveryInfo.Exchange != ex {
				t.Errorf("%s: delivery info %+v, want queue %s exchange %s", who, m.DeliveryInfo, queues[who], ex)
			}
		}
		return got
	}
	probe := func(rk string, who ...string) {
		e.waitFor("fanout subscriptions", func() bool {
			if n, err := e.tr.Publish(e.ctx, ex, rk, message("probe", 0), false); err != nil || n != 1 {
				t.Fatalf("fanout Publish = %d, %v", n, err)
			}
			for _, w := range who {
				if !cons[w].heard("probe") {
					return false
				}
			}
			return true
		})
	}
	probe("", "all")
	probe("ev.one", "ev", "one", "hash")

	e.publish(ex, "", "m1", 0, 1)
	e.publish(ex, "ev.one", "m2", 0, 1)
	e.publish(ex, "ev.two", "m3", 0, 1)
	e.publish(ex, "other", "m4", 0, 1)
	e.publish(ex, "ev", "m5", 0, 1)
	e.publish(ex, "", "end", 0, 1)
	e.publish(ex, "ev.one", "end", 0, 1)
	want := map[string][]string{
		"all":  {"m1", "end"},
		"ev":   {"m2", "m3", "end"},
		"one":  {"m2", "end"},
		"hash": {"m2", "m3", "m4", "m5", "end"},
	}
	for who, w := range want {
		if got := seen(who, "end"); !slices.Equal(got, w) {
			t.Errorf("fanout consumer bound %q received %v, want %v", keys[who], got, w)
		}
	}
	for who := range want {
		if got := e.size(queues[who]); got != 0 {
			t.Errorf("fanout queue %s has %d messages in its list; fanout never writes lists", who, got)
		}
	}
}

// testFanoutAckAndRestore proves fanout deliveries consumed with acks get
// unacked records: an acked one is gone, an unacked one is restored into
// the list of the queue bound to the exchange when the channel closes (as
// Kombu's restore re-routes it).
func (s *suite) testFanoutAckRestore(t *testing.T) {
	if !s.f.Fanout {
		t.Skip("Features.Fanout is off")
	}
	e := s.parallelEnv(t)
	ex, q := name("ex"), name("q")
	e.declareExchange(ex, entity.Fanout)
	e.bind(q, ex, "")
	ch := e.channel()
	c := e.consume(ch, virtual.ConsumeOptions{Queues: []string{q}}, nil)
	e.waitFor("fanout subscription", func() bool {
		e.publish(ex, "", "probe", 0, 1)
		select {
		case m := <-c.msgs:
			e.ack(m)
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	// Late probes may still arrive: ack them.
	e.publish(ex, "", "acked", 0, 1)
	e.publish(ex, "", "kept", 0, 1)
	for {
		m := c.next()
		if idOf(m) == "kept" {
			break
		}
		e.ack(m)
	}
	if err := ch.Close(e.ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := e.drain(q); !slices.Equal(got, []string{"kept*"}) {
		t.Errorf("after close the fanout queue's list holds %v, want [kept*]", got)
	}
}
