package redis

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// batchTests are the shared tests of the batch operations (Fetch of many,
// Ack of many, PublishBatch); they run on miniredis and on a real server.
var batchTests = []struct {
	name string
	fn   func(*testing.T, *env)
}{
	{"FetchBatchIsSuccessiveGets", testFetchBatchIsSuccessiveGets},
	{"FetchBatchRecordsUnacked", testFetchBatchRecords},
	{"FetchBatchReceiptReplay", testFetchBatchReceiptReplay},
	{"FetchBatchMalformedEndsBatch", testFetchBatchMalformed},
	{"FetchBatchSpentReceiptsDeleted", testFetchBatchSpentReceipts},
	{"FetchBatchSettle", testFetchBatchSettle},
	{"AckMany", testAckMany},
	{"PublishBatchIsSuccessivePublishes", testPublishBatchIsSuccessivePublishes},
	{"PublishBatchTopicFallback", testPublishBatchTopicFallback},
	{"PublishBatchNoScript", testPublishBatchNoScript},
}

func TestBatch(t *testing.T) {
	for _, tc := range batchTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newMiniEnv(t)) })
	}
}

func TestIntegrationBatch(t *testing.T) {
	for _, tc := range batchTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, integrationEnv(t)) })
	}
}

// epochForTests is the fake receive time of the batch tests.
var epochForTests = time.Unix(1795550496, 396872300)

func tagOf(t *testing.T, d transport.Delivery) string {
	t.Helper()
	tag, ok := envelope.ExtractTag(d.Envelope)
	if !ok {
		t.Fatalf("no tag in %q", d.Envelope)
	}
	return tag
}

// Proves: FetchBatch(n) takes exactly what n successive Gets take, in the
// same order (step-major; queue order fixed, or rotated after each take
// as the consumer loop does for round robin), for every n.
func testFetchBatchIsSuccessiveGets(t *testing.T, e *env) {
	fill := func(b *Backend) {
		for i := 0; i < 5; i++ {
			for _, q := range []string{"A", "B", "C"} {
				for _, p := range []int{0, 3, 9} {
					if q == "B" && p == 0 && i > 1 {
						continue // B runs dry early in step 0
					}
					mustPut(t, b, q, p, testEnvelope(fmt.Sprintf("%s%d-%d", q, p, i), "", q, p))
				}
			}
		}
	}
	queues := []string{"A", "B", "C"}
	for _, rotate := range []bool{false, true} {
		for _, n := range []int{1, 2, 7, 100} {
			name := fmt.Sprintf("rotate=%v/n=%d", rotate, n)
			one := e.backend(WithKeyPrefix(e.prefix + fmt.Sprintf("one-%v-%d:", rotate, n)))
			batch := e.backend(WithKeyPrefix(e.prefix + fmt.Sprintf("batch-%v-%d:", rotate, n)))
			fill(one)
			fill(batch)
			var want []string
			order := append([]string(nil), queues...)
			for {
				d, err := transporttest.FetchOne(bg, one, order, true, 0)
				if errors.Is(err, transport.ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, d.Queue+"/"+tagOf(t, d))
				if rotate {
					rotateTo(order, d.Queue)
				}
			}
			var got []string
			order = append([]string(nil), queues...)
			for {
				ds, err := batch.Fetch(bg, transport.FetchRequest{Queues: order, Ack: true, Max: n, Rotate: rotate}, nil)
				if errors.Is(err, transport.ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) == 0 || len(ds) > n {
					t.Fatalf("%s: batch of %d", name, len(ds))
				}
				for _, d := range ds {
					got = append(got, d.Queue+"/"+tagOf(t, d))
					if rotate {
						rotateTo(order, d.Queue)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("%s:\n got %v\nwant %v", name, got, want)
			}
		}
	}
}

// rotateTo moves q to the end of order, as the consumer loop does.
func rotateTo(order []string, q string) {
	for i, x := range order {
		if x == q {
			copy(order[i:], order[i+1:])
			order[len(order)-1] = q
			return
		}
	}
}

// Proves: every message of a batch is recorded exactly as Get records it
// (the Kombu value and the receive-time score), and a no-ack batch records
// nothing.
func testFetchBatchRecords(t *testing.T, e *env) {
	now := newFakeClock(epochForTests)
	b := e.backend(WithClock(now))
	raws := []string{testEnvelope("t1", "ex", "rk1", 0), kombuEnvelope, celeryEnvelope}
	for _, r := range raws {
		e.lpush(e.key("q"), r)
	}
	ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 10}, nil)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Fetch: %d, %v", len(ds), err)
	}
	for i, d := range ds {
		if string(d.Envelope) != raws[i] || d.Queue != "q" {
			t.Fatalf("delivery %d: %q from %q", i, d.Envelope, d.Queue)
		}
		env, err := envelope.Parse(d.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := e.hget(e.key("unacked"), env.DeliveryTag)
		if want := string(UnackedValue(d.Envelope, env.Exchange, env.RoutingKey)); !ok || v != want {
			t.Fatalf("record %d:\n got %q\nwant %q", i, v, want)
		}
		// One call's messages share the receive time, plus a microsecond
		// per message so the index keeps their delivery order.
		want := transport.UnixSeconds(epochForTests) + float64(i)*1e-6
		if s, ok := e.zscore(e.key("unacked_index"), env.DeliveryTag); !ok || math.Abs(s-want) > 1e-7 {
			t.Fatalf("score %d: %v %v, want %v", i, s, ok, want)
		}
	}
	mustPut(t, b, "q2", 0, testEnvelope("t2", "", "q2", 0))
	if ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q2"}, Max: 10}, nil); err != nil || len(ds) != 1 {
		t.Fatalf("no-ack Fetch: %d, %v", len(ds), err)
	}
	if _, ok := e.hget(e.key("unacked"), "t2"); ok {
		t.Fatal("no-ack batch wrote a record")
	}
}

// Proves: a batch call retried with the same receipt (a lost reply)
// returns the same messages, byte for byte, without taking more; records
// acked in between are left out; large messages replay too.
func testFetchBatchReceiptReplay(t *testing.T, e *env) {
	b := e.backend()
	big := strings.Replace(testEnvelope("big", "", "rq", 0), `"body": "`, `"body": "`+strings.Repeat("A", 10000), 1)
	sent := []string{testEnvelope("r1", "", "rq", 0), big, testEnvelope("r3", "", "rq", 0)}
	for _, r := range sent {
		e.lpush(e.key("rq"), r)
	}
	e.lpush(e.key("rq"), testEnvelope("r4", "", "rq", 0))
	keys := []string{b.k.unacked, b.k.unackedIndex, b.k.malformed, b.k.receiptKey("fixed")}
	run := func() []any {
		t.Helper()
		res, err := getScript.call(bg, e.client, keys, "1", "1795550400.5", "3", "0", "1", "1", "0", e.prefix, "", "rq").Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i := 0; i < 3; i++ {
		res := run()
		if len(res) != 9 {
			t.Fatalf("call %d: %d items", i, len(res))
		}
		for j, want := range sent {
			if res[3*j] != int64(1) || res[3*j+1] != "rq" || res[3*j+2] != want {
				t.Fatalf("call %d message %d: %v %v %.40q", i, j, res[3*j], res[3*j+1], res[3*j+2])
			}
		}
	}
	if n := len(e.lrange(e.key("rq"))); n != 1 {
		t.Fatalf("replays took messages: %d left", n)
	}
	if err := b.Ack(bg, "r1"); err != nil {
		t.Fatal(err)
	}
	if res := run(); len(res) != 6 || res[2] != big || res[5] != sent[2] {
		t.Fatalf("after acking r1: %d items", len(res))
	}
	if err := b.Ack(bg, []string{"big", "r3"}...); err != nil {
		t.Fatal(err)
	}
	if res := run(); len(res) != 3 || !strings.Contains(res[2].(string), `"r4"`) {
		t.Fatalf("all acked: want a fresh take of r4, got %v", res)
	}
	// Flag "2" (a first attempt no one resends) does not look for the
	// receipt: it takes r5 although the receipt lists r4, still unacked.
	e.lpush(e.key("rq"), testEnvelope("r5", "", "rq", 0))
	res, err := getScript.call(bg, e.client, keys, "2", "1795550400.5", "3", "0", "1", "1", "0", e.prefix, "", "rq").Slice()
	if err != nil || len(res) != 3 || !strings.Contains(res[2].(string), `"r5"`) {
		t.Fatalf("flag 2: want a fresh take of r5, got %v, %v", res, err)
	}
	if _, ok := e.hget(b.k.unacked, "r5"); !ok {
		t.Fatal("flag 2 did not record r5")
	}
}

// Proves: a malformed message ends a batch: the messages before it are
// returned (and recorded), it is moved to the malformed list and reported
// as a *transport.MalformedError, and the messages after it stay queued.
func testFetchBatchMalformed(t *testing.T, e *env) {
	b := e.backend()
	e.lpush(e.key("q"), testEnvelope("g1", "", "q", 0), "not json", testEnvelope("g2", "", "q", 0))
	ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 10}, nil)
	var mal *transport.MalformedError
	if !errors.As(err, &mal) || mal.Queue != "q" || string(mal.Raw) != "not json" || mal.Where != e.key(DefaultMalformedKey) {
		t.Fatalf("err %v", err)
	}
	if len(ds) != 1 || tagOf(t, ds[0]) != "g1" {
		t.Fatalf("deliveries %v", ds)
	}
	if _, ok := e.hget(e.key("unacked"), "g1"); !ok {
		t.Fatal("g1 not recorded")
	}
	if got := e.lrange(e.key(DefaultMalformedKey)); len(got) != 1 || got[0] != "not json" {
		t.Fatalf("malformed list %q", got)
	}
	ds, err = b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 10}, nil)
	if err != nil || len(ds) != 1 || tagOf(t, ds[0]) != "g2" {
		t.Fatalf("after: %v %v", ds, err)
	}
}

// Proves: the receipts of takes whose replies arrived are deleted by a
// later take, spentBatch at a time, so they do not pile up for 10 s under
// load: the count climbs to spentBatch, then the next take deletes those
// and leaves its own.
func testFetchBatchSpentReceipts(t *testing.T, e *env) {
	b := e.backend()
	const takes = 2*spentBatch + 3
	for i := 0; i < takes; i++ {
		mustPut(t, b, "q", 0, testEnvelope(fmt.Sprintf("s%d", i), "", "q", 0))
	}
	receipts := func() int {
		n := 0
		for _, k := range e.allKeys() {
			if strings.Contains(k, "kombu-go.get.") {
				n++
			}
		}
		return n
	}
	for i := 0; i < takes; i++ {
		if _, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 1}, nil); err != nil {
			t.Fatal(err)
		}
		if n, want := receipts(), i%spentBatch+1; n != want {
			t.Fatalf("after take %d: %d receipts, want %d", i, n, want)
		}
	}
}

// Proves: Ack of many tags deletes every record of its tags in one call (missing
// tags are fine), leaving the others.
func testAckMany(t *testing.T, e *env) {
	b := e.backend()
	for i := 0; i < 4; i++ {
		mustPut(t, b, "q", 0, testEnvelope(fmt.Sprintf("a%d", i), "", "q", 0))
	}
	if ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 4}, nil); err != nil || len(ds) != 4 {
		t.Fatal(err)
	}
	if err := b.Ack(bg, []string{"a0", "a2", "a3", "nope"}...); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false, false} {
		tag := fmt.Sprintf("a%d", i)
		_, inHash := e.hget(e.key("unacked"), tag)
		_, inIndex := e.zscore(e.key("unacked_index"), tag)
		if inHash != want || inIndex != want {
			t.Fatalf("%s: hash %v index %v, want %v", tag, inHash, inIndex, want)
		}
	}
	if err := b.Ack(bg); err != nil {
		t.Fatal(err)
	}
}

// Proves: PublishBatch leaves exactly the lists that the same messages
// published one by one leave (direct, topic with the captured Kombu table,
// fanout-typed routing into lists, the default exchange, priorities,
// unrouted messages, a missing table), returns the same counts, and keeps
// each list in the order given across runs of different exchanges; large
// batches (over one script call, over one LPUSH chunk) too.
func testPublishBatchIsSuccessivePublishes(t *testing.T, e *env) {
	setup := func(b *Backend) {
		for _, r := range []transport.BindingRow{
			{RoutingKey: "rk.direct", Queue: "q_direct"},
			{RoutingKey: "rk.direct", Pattern: "junk", Queue: "q_other"},
			{RoutingKey: "rk.other", Queue: "q_direct"},
		} {
			if err := b.Bind(bg, "ex_direct", r); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range []struct{ key, q string }{{"a.*.#", "q_topic1"}, {"a.#", "q_topic2"}, {"*.x_y-z", "q_topic3"}} {
			if err := b.Bind(bg, "ex_topic", transport.BindingRow{RoutingKey: x.key, Pattern: transport.KeyToPattern(x.key), Queue: x.q}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var items []transport.PublishItem
	add := func(ex string, typ entity.ExchangeType, rk string, prio int) {
		tag := fmt.Sprintf("m%d", len(items))
		items = append(items, transport.PublishItem{Exchange: ex, Type: typ, RoutingKey: rk, Priority: prio,
			Envelope: []byte(testEnvelope(tag, ex, rk, prio))})
	}
	for i := 0; i < 3; i++ {
		add("ex_direct", entity.Direct, "rk.direct", i*3)
		add("", "", "q_direct", 0)
		add("ex_direct", entity.Direct, "rk.other", 0)
		add("ex_topic", entity.Topic, "a.b.c", 0)
		add("ex_topic", entity.Topic, "z.x_y-z", 9)
		add("ex_topic", entity.Topic, "nothing", 0)
		add("ex_direct", entity.Fanout, "ignored", 0)
		add("no_such_exchange", entity.Direct, "rk", 0)
		add("", "", "q_topic2", 4)
	}
	for i := 0; i < 1100; i++ {
		add("ex_direct", entity.Direct, "rk.direct", 0)
	}
	for i := 0; i < 1100; i++ {
		add("", "", "q_big", 0)
	}
	one := e.backend(WithKeyPrefix(e.prefix + "one:"))
	batch := e.backend(WithKeyPrefix(e.prefix + "batch:"))
	setup(one)
	setup(batch)
	var want []int
	for _, it := range items {
		var n int
		var err error
		if it.Exchange == "" {
			n, err = 1, one.Put(bg, it.RoutingKey, it.Priority, it.Envelope)
		} else {
			n, err = one.Publish(bg, it.Exchange, it.Type, it.RoutingKey, it.Priority, it.Envelope)
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
	}
	got, errs := batch.PublishBatch(bg, items)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("counts\n got %v\nwant %v", got, want)
	}
	lists := func(prefix string) map[string][]string {
		out := map[string][]string{}
		for _, k := range e.allKeys() {
			if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.HasPrefix(rest, "_kombu.binding.") {
				out[rest] = e.lrange(k)
			}
		}
		return out
	}
	gotLists, wantLists := lists(e.prefix+"batch:"), lists(e.prefix+"one:")
	if len(wantLists) < 6 {
		t.Fatalf("only %d lists written", len(wantLists))
	}
	for k, w := range wantLists {
		if !slices.Equal(gotLists[k], w) {
			t.Errorf("list %q: batch wrote %d messages, one by one %d (or a different order)", k, len(gotLists[k]), len(w))
		}
	}
	if len(gotLists) != len(wantLists) {
		t.Errorf("batch wrote %d lists, one by one %d", len(gotLists), len(wantLists))
	}
}

// Proves: PublishBatch with a stored pattern outside the Lua matcher
// routes in Go with the same result, and one with a pattern Python cannot
// compile fails those messages only, writing none of them.
func testPublishBatchTopicFallback(t *testing.T, e *env) {
	b := e.backend()
	for _, r := range []struct{ ex, key, pattern, q string }{
		{"ex_t", "x", `^a(b|c)$`, "qf"},
		{"ex_t", "a.#", transport.KeyToPattern("a.#"), "qg"},
		{"ex_bad", "*a", transport.KeyToPattern("*a"), "qb"},
	} {
		if err := b.Bind(bg, r.ex, transport.BindingRow{RoutingKey: r.key, Pattern: r.pattern, Queue: r.q}); err != nil {
			t.Fatal(err)
		}
	}
	items := []transport.PublishItem{
		{Exchange: "ex_t", Type: entity.Topic, RoutingKey: "ac", Envelope: []byte(testEnvelope("f1", "ex_t", "ac", 0))},
		{Exchange: "ex_t", Type: entity.Topic, RoutingKey: "a.b", Envelope: []byte(testEnvelope("f2", "ex_t", "a.b", 0))},
		{Exchange: "ex_bad", Type: entity.Topic, RoutingKey: "a", Envelope: []byte(testEnvelope("f3", "ex_bad", "a", 0))},
		{Exchange: "", RoutingKey: "qd", Envelope: []byte(testEnvelope("f4", "", "qd", 0))},
	}
	ns, errs := b.PublishBatch(bg, items)
	if errs[0] != nil || errs[1] != nil || errs[3] != nil || errs[2] == nil {
		t.Fatalf("errors %v", errs)
	}
	if !slices.Equal(ns, []int{1, 1, 0, 1}) {
		t.Fatalf("counts %v", ns)
	}
	if got := e.lrange(e.key("qf")); len(got) != 1 {
		t.Fatalf("qf %q", got)
	}
	if n, _ := e.client.Exists(bg, e.key("qb")).Result(); n != 0 {
		t.Fatal("failed publish wrote")
	}
}

// Proves: PublishBatch works after the server's script cache was flushed
// (a pipeline sends only EVALSHA: NOSCRIPT calls are loaded and sent
// again, once).
func testPublishBatchNoScript(t *testing.T, e *env) {
	b := e.backend()
	if err := b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "k", Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.ScriptFlush(bg).Err(); err != nil {
		t.Fatal(err)
	}
	items := []transport.PublishItem{
		{Exchange: "ex", Type: entity.Direct, RoutingKey: "k", Envelope: []byte(testEnvelope("n1", "ex", "k", 0))},
		{Exchange: "", RoutingKey: "q", Envelope: []byte(testEnvelope("n2", "", "q", 0))},
		{Exchange: "ex", Type: entity.Direct, RoutingKey: "k", Envelope: []byte(testEnvelope("n3", "ex", "k", 0))},
	}
	ns, errs := b.PublishBatch(bg, items)
	for i, err := range errs {
		if err != nil || ns[i] != 1 {
			t.Fatalf("message %d: %d %v", i, ns[i], err)
		}
	}
	got := e.lrange(e.key("q"))
	if len(got) != 3 || !strings.Contains(got[2], `"n1"`) || !strings.Contains(got[1], `"n2"`) || !strings.Contains(got[0], `"n3"`) {
		t.Fatalf("q %v", got)
	}
}

// Proves: FetchBatch deletes the records of req.Settle in the same call
// (exactly as Ack), before taking, and also when nothing is taken.
func testFetchBatchSettle(t *testing.T, e *env) {
	b := e.backend()
	for i := 0; i < 3; i++ {
		mustPut(t, b, "q", 0, testEnvelope(fmt.Sprintf("s%d", i), "", "q", 0))
	}
	if ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 2}, nil); err != nil || len(ds) != 2 {
		t.Fatal(err)
	}
	ds, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 5, Settle: []string{"s0", "nope"}}, nil)
	if err != nil || len(ds) != 1 || tagOf(t, ds[0]) != "s2" {
		t.Fatalf("%v %v", ds, err)
	}
	if _, ok := e.hget(e.key("unacked"), "s0"); ok {
		t.Fatal("s0 not settled")
	}
	for _, tag := range []string{"s1", "s2"} {
		if _, ok := e.hget(e.key("unacked"), tag); !ok {
			t.Fatalf("%s settled", tag)
		}
	}
	if _, err := b.Fetch(bg, transport.FetchRequest{Queues: []string{"q"}, Ack: true, Max: 5, Settle: []string{"s1", "s2"}}, nil); !errors.Is(err, transport.ErrEmpty) {
		t.Fatal(err)
	}
	for _, k := range []string{"unacked", "unacked_index"} {
		if n, _ := e.client.Exists(bg, e.key(k)).Result(); n != 0 {
			t.Fatalf("%s left", k)
		}
	}
}
