package interop

// The interop matrix: one topology (exchanges, queues, bindings) and one
// list of publishes, used in both directions and by the wire comparison.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// body is a message body of one of Kombu's three kinds.
type body struct {
	kind  string // "json", "text" or "bytes"
	json  any
	text  string
	bytes []byte
}

func jsonBody(v any) body     { return body{kind: "json", json: v} }
func textBody(s string) body  { return body{kind: "text", text: s} }
func bytesBody(b []byte) body { return body{kind: "bytes", bytes: b} }

// goValue is what the Go producer publishes.
func (b body) goValue() any {
	switch b.kind {
	case "json":
		return b.json
	case "text":
		return b.text
	}
	return b.bytes
}

// tagged is the body as peer.py exchanges it (bytes in base64).
func (b body) tagged() any {
	switch b.kind {
	case "json":
		return map[string]any{"json": b.json}
	case "text":
		return map[string]any{"text": b.text}
	}
	return map[string]any{"bytes": b64(b.bytes)}
}

// serialized is the body after serialization, before compression: what a
// consumer sees as message.body.
func (b body) serialized() []byte {
	switch b.kind {
	case "json":
		out, err := pyjson.Marshal(b.json)
		if err != nil {
			panic(err)
		}
		return out
	case "text":
		return []byte(b.text)
	}
	return b.bytes
}

// contentType is what Kombu's dumps picks for the body with no serializer
// given (wire spec §4).
func (b body) contentType() (ct, enc string) {
	switch b.kind {
	case "json":
		return "application/json", "utf-8"
	case "text":
		return "text/plain", "utf-8"
	}
	return "application/data", "binary"
}

// msgCase is one publish of the matrix.
type msgCase struct {
	name       string // unique; sent in headers["case"]
	group      string // direct, topic, fanout, priority, body, zlib, headers, properties
	exchange   kombu.Exchange
	routingKey string
	body       body
	headers    map[string]any // besides "case"
	priority   int
	corrID     string
	replyTo    string
	messageID  string // an extra property (properties.message_id)
	delivMode  int
	expiration time.Duration
	zlib       bool
	expect     []string // queues that must receive it
}

func (c msgCase) fanout() bool { return c.exchange.Type == kombu.Fanout }

// allHeaders are the application headers as published.
func (c msgCase) allHeaders() map[string]any {
	h := maps.Clone(c.headers)
	if h == nil {
		h = map[string]any{}
	}
	h["case"] = c.name
	return h
}

// wantHeaders are the headers a consumer sees.
func (c msgCase) wantHeaders() map[string]any {
	h := c.allHeaders()
	if c.zlib {
		h["compression"] = "application/x-gzip"
	}
	return h
}

// deliveryMode is the mode on the wire: the publish's, else the
// exchange's default, else 2 (persistent).
func (c msgCase) deliveryMode() int {
	switch {
	case c.delivMode != 0:
		return c.delivMode
	case c.exchange.DeliveryMode != 0:
		return int(c.exchange.DeliveryMode)
	}
	return 2
}

// expirationText is properties.expiration as Kombu writes it, or "".
func (c msgCase) expirationText() string {
	if c.expiration == 0 {
		return ""
	}
	return fmt.Sprint(c.expiration.Milliseconds())
}

// wantProperties are the properties a Python consumer sees (delivery_tag
// filled in by the caller).
func (c msgCase) wantProperties(tag string) map[string]any {
	p := map[string]any{
		"delivery_mode": c.deliveryMode(),
		"delivery_info": map[string]any{"exchange": c.exchange.Name, "routing_key": c.routingKey},
		"priority":      c.priority,
		"body_encoding": "base64",
		"delivery_tag":  tag,
	}
	if c.corrID != "" {
		p["correlation_id"] = c.corrID
	}
	if c.replyTo != "" {
		p["reply_to"] = c.replyTo
	}
	if c.messageID != "" {
		p["message_id"] = c.messageID
	}
	if e := c.expirationText(); e != "" {
		p["expiration"] = e
	}
	return p
}

// pySpec is the publish spec peer.py takes. Properties go in the order Go
// writes them (correlation_id, reply_to, then extras sorted) so that the
// envelopes can be compared byte for byte.
func (c msgCase) pySpec() pyjson.Object {
	var ex any
	if c.exchange.Name != "" {
		ex = pyExchange(c.exchange)
	}
	props := pyjson.Object{}
	if c.corrID != "" {
		props = append(props, pyjson.Member{Key: "correlation_id", Value: c.corrID})
	}
	if c.replyTo != "" {
		props = append(props, pyjson.Member{Key: "reply_to", Value: c.replyTo})
	}
	if c.messageID != "" {
		props = append(props, pyjson.Member{Key: "message_id", Value: c.messageID})
	}
	o := pyjson.Object{
		{Key: "exchange", Value: ex},
		{Key: "routing_key", Value: c.routingKey},
		{Key: "body", Value: c.body.tagged()},
		{Key: "headers", Value: c.allHeaders()},
		{Key: "properties", Value: props},
		{Key: "priority", Value: c.priority},
	}
	if c.delivMode != 0 {
		o = append(o, pyjson.Member{Key: "delivery_mode", Value: c.delivMode})
	}
	if c.expiration != 0 {
		o = append(o, pyjson.Member{Key: "expiration", Value: c.expiration.Seconds()})
	}
	if c.zlib {
		o = append(o, pyjson.Member{Key: "compression", Value: "zlib"})
	}
	return o
}

// goPublish publishes the case with the Go producer and returns its tag.
func (c msgCase) goPublish(t *testing.T, p *kombu.Producer) string {
	t.Helper()
	opts := []kombu.PublishOption{
		kombu.WithRoutingKey(c.routingKey),
		kombu.WithHeaders(c.allHeaders()),
		kombu.WithPriority(c.priority),
	}
	if c.exchange.Name != "" {
		opts = append(opts, kombu.WithExchange(c.exchange))
	}
	if c.corrID != "" {
		opts = append(opts, kombu.WithCorrelationID(c.corrID))
	}
	if c.replyTo != "" {
		opts = append(opts, kombu.WithReplyTo(c.replyTo))
	}
	if c.messageID != "" {
		opts = append(opts, kombu.WithProperty("message_id", c.messageID))
	}
	if c.delivMode != 0 {
		opts = append(opts, kombu.WithDeliveryMode(entity.DeliveryMode(c.delivMode)))
	}
	if c.expiration != 0 {
		opts = append(opts, kombu.WithExpiration(c.expiration))
	}
	if c.zlib {
		opts = append(opts, kombu.WithCompression("zlib"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.Publish(ctx, c.body.goValue(), opts...)
	if err != nil {
		t.Fatalf("case %s: Go publish: %v", c.name, err)
	}
	return res.DeliveryTag
}

// pyExchange is an exchange as peer.py takes it.
func pyExchange(ex kombu.Exchange) map[string]any {
	m := map[string]any{"name": ex.Name, "type": string(ex.Type.Normalize())}
	if ex.DeliveryMode != 0 {
		m["delivery_mode"] = int(ex.DeliveryMode)
	}
	return m
}

// topology is the matrix's exchanges and queues; names carry a fresh id.
type topology struct {
	id                   string
	exD, exT, exF, exF2  kombu.Exchange
	qD, qD2              string
	qT1, qT2, qT3, qT4   string
	qF, qF2, qP, qB      string
	queues               []kombu.Queue
	priorityPublishOrder []int
}

func newTopology() *topology {
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	n := func(s string) string { return s + "-" + id }
	tp := &topology{id: id}
	tp.exD = kombu.Exchange{Name: n("exD-é"), Type: kombu.Direct, Durable: true}
	tp.exT = kombu.Exchange{Name: n("exT"), Type: kombu.Topic, Durable: true}
	tp.exF = kombu.Exchange{Name: n("exF"), Type: kombu.Fanout, Durable: true}
	// Transient by default, as Celery's event exchange.
	tp.exF2 = kombu.Exchange{Name: n("exF2"), Type: kombu.Fanout, Durable: true, DeliveryMode: entity.Transient}
	tp.qD, tp.qD2 = n("qD"), n("qD2")
	tp.qT1, tp.qT2, tp.qT3, tp.qT4 = n("qT1"), n("qT2"), n("qT3"), n("qT4-ñ")
	tp.qF, tp.qF2, tp.qP, tp.qB = n("qF"), n("qF2"), n("qP"), n("qB")
	bind := func(q string, ex kombu.Exchange, keys ...string) kombu.Queue {
		out := kombu.Queue{Name: q, Durable: true}
		for _, k := range keys {
			out.Bindings = append(out.Bindings, kombu.Binding{Exchange: ex, RoutingKey: k})
		}
		return out
	}
	tp.queues = []kombu.Queue{
		bind(tp.qD, tp.exD, "rk.direct", "rk.ünï"),
		bind(tp.qD2, tp.exD, "rk.direct", "rk.two"),
		bind(tp.qT1, tp.exT, "a.*.#"),
		bind(tp.qT2, tp.exT, "a.#"),
		// "→" is not alphanumeric: Python stores the pattern ^\→\..*?[^\.]$,
		// which Go's RE2 cannot compile (wire spec §6.2).
		bind(tp.qT3, tp.exT, "*.x_y-z", "→.*"),
		bind(tp.qT4, tp.exT, "#.c", "ü.#"),
		bind(tp.qF, tp.exF, ""),
		bind(tp.qF2, tp.exF2, "ev.#"),
		{Name: tp.qP, Durable: true}, // default exchange only
		{Name: tp.qB, Durable: true},
	}
	// 12 and -1 are out of range: stored as given, queued as 9 and 0.
	tp.priorityPublishOrder = []int{9, 5, 0, 7, 3, 12, 1, 8, -1, 6, 2, 4}
	return tp
}

// pyQueues is the topology as peer.py queue specs.
func (tp *topology) pyQueues() []any {
	var out []any
	for _, q := range tp.queues {
		var bs []any
		for _, b := range q.Bindings {
			bs = append(bs, map[string]any{"exchange": pyExchange(b.Exchange), "routing_key": b.RoutingKey})
		}
		out = append(out, map[string]any{"name": q.Name, "bindings": bs})
	}
	return out
}

// queueNames lists every queue of the topology.
func (tp *topology) queueNames() []string {
	var out []string
	for _, q := range tp.queues {
		out = append(out, q.Name)
	}
	return out
}

// allBytes is every byte value 0..255.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// richJSON exercises pyjson's Python formatting: ints, floats (integral,
// tiny, huge), big ints, unicode (BMP and astral), escapes, <>&, nesting.
func richJSON() any {
	return map[string]any{
		"int":   42,
		"neg":   -7,
		"big":   json.Number("12345678901234567890"),
		"float": 3.14,
		"whole": 2.0,
		"tiny":  1.5e-05,
		"huge":  1e100,
		"t":     true,
		"f":     false,
		"null":  nil,
		"str":   "héllo wörld ✓ 𝄞 <&> \u007f",
		"ctrl":  "tab\tnl\nquote\"bs\\",
		"list":  []any{1, "two", 3.0, nil, []any{}, map[string]any{}},
		"nest":  map[string]any{"a": map[string]any{"b": []any{1, 2}}},
	}
}

// cases returns the matrix for a topology.
func (tp *topology) cases() []msgCase {
	d := func(name, rk string, expect ...string) msgCase {
		return msgCase{name: name, group: "direct", exchange: tp.exD, routingKey: rk,
			body: jsonBody(map[string]any{"case": name}), expect: expect}
	}
	tc := func(name, rk string, expect ...string) msgCase {
		return msgCase{name: name, group: "topic", exchange: tp.exT, routingKey: rk,
			body: jsonBody(map[string]any{"case": name, "rk": rk}), expect: expect}
	}
	b := func(name, group string, bd body) msgCase {
		return msgCase{name: name, group: group, routingKey: tp.qB, body: bd, expect: []string{tp.qB}}
	}
	cs := []msgCase{
		d("direct-both", "rk.direct", tp.qD, tp.qD2),
		d("direct-one", "rk.two", tp.qD2),
		d("direct-none", "nobody"),
		d("direct-unicode", "rk.ünï", tp.qD),
		tc("topic-abc", "a.b.c", tp.qT1, tp.qT2, tp.qT4),
		tc("topic-ab", "a.b", tp.qT2),
		tc("topic-xyz", "q.x_y-z", tp.qT3),
		tc("topic-a", "a"),
		tc("topic-xyc", "x.y.c", tp.qT4),
		tc("topic-axyz", "a.x_y-z", tp.qT2, tp.qT3),
		tc("topic-arrow", "→.x", tp.qT3),
		tc("topic-umlaut", "ü.c", tp.qT4), // two bindings match: one copy
		{name: "fanout-empty-rk", group: "fanout", exchange: tp.exF, routingKey: "",
			body: jsonBody(map[string]any{"fan": 1}), expect: []string{tp.qF}},
		{name: "fanout-pattern", group: "fanout", exchange: tp.exF2, routingKey: "ev.one",
			body: jsonBody(map[string]any{"fan": 2}), expect: []string{tp.qF2}},
	}
	for i, p := range tp.priorityPublishOrder {
		cs = append(cs, msgCase{name: fmt.Sprintf("priority-%d", p), group: "priority", routingKey: tp.qP,
			priority: p, body: jsonBody(map[string]any{"p": p, "i": i}), expect: []string{tp.qP}})
	}
	cs = append(cs,
		b("body-json", "body", jsonBody(richJSON())),
		b("body-bytes", "body", bytesBody(allBytes())),
		b("body-text", "body", textBody("plain text: héllo wörld ✓ 𝄞 \"q\" <&>\n")),
	)
	z := func(c msgCase) msgCase { c.zlib = true; return c }
	cs = append(cs,
		z(b("zlib-json", "zlib", jsonBody(richJSON()))),
		z(b("zlib-bytes", "zlib", bytesBody(allBytes()))),
		z(b("zlib-text", "zlib", textBody(strings.Repeat("compress me ✓ ", 20)))),
	)
	h := b("headers", "headers", jsonBody(map[string]any{"h": 1}))
	h.headers = map[string]any{
		"x-int":         1,
		"x-neg":         -42,
		"x-big":         json.Number("9007199254740993"),
		"x-float":       1.25,
		"x-whole-float": 10.0,
		"x-true":        true,
		"x-false":       false,
		"x-null":        nil,
		"x-unicode":     "ünïcødé ✓ 𝄞 日本",
		"x-nested":      map[string]any{"list": []any{1, 2.5, "s", nil, true}, "obj": map[string]any{"k": "v", "deeper": map[string]any{"n": 0}}},
		"x-empty-obj":   map[string]any{},
		"x-empty-list":  []any{},
		"ünï-key":       "unicode key",
		// Python's json.dumps writes these non-JSON tokens (wire spec §3.2).
		"x-nan":  math.NaN(),
		"x-inf":  math.Inf(1),
		"x-ninf": math.Inf(-1),
	}
	cs = append(cs, h)
	p := b("properties", "properties", jsonBody(map[string]any{"props": true}))
	p.corrID = "corr-" + tp.id
	p.replyTo = "reply-" + tp.id
	p.messageID = "msg-" + tp.id
	p.delivMode = 1
	p.expiration = 12500 * time.Millisecond
	p.priority = 5
	cs = append(cs, p)
	return cs
}

// stepOf is the priority step a priority is queued at: the largest step
// not above the priority clamped to 0..9 (wire spec §7.2).
func stepOf(p int, steps []int) int {
	p = min(max(p, 0), 9)
	s := steps[len(steps)-1]
	for _, st := range steps {
		if st <= p {
			s = st
		}
	}
	return s
}

// wantPriorityOrder is the order a consumer must see the priority cases in:
// lower step first, FIFO within a step (wire spec §7.2).
func (tp *topology) wantPriorityOrder(steps []int) []string {
	var out []string
	for _, step := range steps {
		for _, p := range tp.priorityPublishOrder {
			if stepOf(p, steps) == step {
				out = append(out, fmt.Sprintf("priority-%d", p))
			}
		}
	}
	return out
}

// wantPriorityLists is how many priority cases each of the priority
// queue's lists holds after publishing, in step order.
func (tp *topology) wantPriorityLists(steps []int) []int {
	out := make([]int, len(steps))
	for _, p := range tp.priorityPublishOrder {
		out[slices.Index(steps, stepOf(p, steps))]++
	}
	return out
}

// groups lists the case groups in report order.
var groups = []string{"direct", "topic", "fanout", "priority", "body", "zlib", "headers", "properties"}

// tally counts checked deliveries and failures per group.
type tally struct {
	checked, failed map[string]int
	cases           map[string]map[string]bool
	failedCases     map[string]map[string]bool
}

func newTally() *tally {
	return &tally{checked: map[string]int{}, failed: map[string]int{}, cases: map[string]map[string]bool{}, failedCases: map[string]map[string]bool{}}
}

func (ta *tally) add(c msgCase, problems []string, t *testing.T, queue string) {
	t.Helper()
	if ta.cases[c.group] == nil {
		ta.cases[c.group] = map[string]bool{}
		ta.failedCases[c.group] = map[string]bool{}
	}
	ta.cases[c.group][c.name] = true
	ta.checked[c.group]++
	if len(problems) > 0 {
		ta.failed[c.group]++
		ta.failedCases[c.group][c.name] = true
		t.Errorf("case %s (queue %s):\n%s", c.name, queue, strings.Join(problems, "\n"))
	}
}

// summary is one line: per group, passed cases / cases (deliveries).
func (ta *tally) summary(direction string) string {
	var parts []string
	tc, tf, td := 0, 0, 0
	for _, g := range groups {
		n := len(ta.cases[g])
		f := len(ta.failedCases[g])
		parts = append(parts, fmt.Sprintf("%s %d/%d", g, n-f, n))
		tc += n
		tf += f
		td += ta.checked[g]
	}
	return fmt.Sprintf("%s: %d/%d cases passed (%d deliveries checked): %s", direction, tc-tf, tc, td, strings.Join(parts, ", "))
}
