package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// sharedTests run on miniredis (TestShared) and on a real redis-server
// (TestIntegrationShared). Each works under the env's key prefix only.
var sharedTests = []struct {
	name string
	fn   func(*testing.T, *env)
}{
	{"PutPriorityLists", testPutPriorityLists},
	{"PutSepColonSteps0to9", testPutSepColonSteps},
	{"GlobalKeyPrefix", testGlobalKeyPrefix},
	{"BindMembers", testBindMembers},
	{"BindingsSkipBadMembers", testBindingsSkipBadMembers},
	{"GetStepMajor", testGetStepMajor},
	{"GetRecordsUnackedLikeKombu", testGetRecordsUnacked},
	{"GetUnackedValueEscaping", testGetUnackedValueEscaping},
	{"GetNoAck", testGetNoAck},
	{"GetReceiptReplay", testGetReceiptReplay},
	{"GetMissingDeliveryInfo", testGetMissingDeliveryInfo},
	{"GetMalformedDeadLetter", testGetMalformed},
	{"Ack", testAck},
	{"RecordUnacked", testRecordUnacked},
	{"RestoreRPushLPush", testRestoreRPushLPush},
	{"RestorePriorityOwnBase", testRestorePriority},
	{"RestoreMissingRecord", testRestoreMissing},
	{"RestoreMalformedRecord", testRestoreMalformedRecord},
	{"RestoreUnroutable", testRestoreUnroutable},
	{"RestoreExpired", testRestoreExpired},
	{"RestoreExpiredMutexHeld", testRestoreExpiredMutexHeld},
	{"RestoreExpiredLimit", testRestoreExpiredLimit},
	{"SizePurgeDeleteExists", testSizePurgeDeleteExists},
	{"PublishDirect", testPublishDirect},
	{"PublishDirectDedupe", testPublishDirectDedupe},
	{"PublishNoScript", testPublishNoScript},
	{"PublishTopic", testPublishTopic},
	{"PublishTopicFallback", testPublishTopicFallback},
	{"PublishFanoutType", testPublishFanoutType},
	{"PutBatch", testPutBatch},
	{"FanoutChannels", testFanoutChannels},
	{"SubscribeFanout", testSubscribeFanout},
	{"GetWaitWakes", testGetWaitWakes},
	{"GetWaitTimeout", testGetWaitTimeout},
	{"GetWaitCancel", testGetWaitCancel},
	{"GetWaitClose", testGetWaitClose},
	{"GetWaitBeyondWatchLimit", testGetWaitBeyondLimit},
	{"GetWaitConcurrentExactlyOnce", testGetWaitConcurrent},
	{"WatcherLeavesListsUntouched", testWatcherLeavesListsUntouched},
	{"TopicMatcherEquivalence", testTopicMatcherEquivalence},
	{"TopicMatcherRandom", testTopicMatcherRandom},
	{"ClosedBackend", testClosedBackend},
}

// TestShared runs the shared tests on miniredis.
func TestShared(t *testing.T) {
	for _, tc := range sharedTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newMiniEnv(t)) })
	}
}

// restoreTests are the shared tests that exercise Restore; they run again
// with the compare-and-set path forced.
var restoreTests = []string{
	"GetMissingDeliveryInfo", "RestoreRPushLPush", "RestorePriorityOwnBase", "RestoreMissingRecord",
	"RestoreMalformedRecord", "RestoreUnroutable", "RestoreExpired", "RestoreExpiredLimit",
}

// runRestoreCAS runs restoreTests with restores going straight to
// scripts/restore.lua, proving it leaves exactly the state the WATCH
// transaction leaves.
func runRestoreCAS(t *testing.T, newEnv func(*testing.T) *env) {
	saved := watchAttempts
	watchAttempts = 0
	defer func() { watchAttempts = saved }()
	for _, tc := range sharedTests {
		if slices.Contains(restoreTests, tc.name) {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t)) })
		}
	}
}

// TestSharedRestoreCAS runs the restore tests on miniredis through the
// compare-and-set path.
func TestSharedRestoreCAS(t *testing.T) { runRestoreCAS(t, newMiniEnv) }

var bg = context.Background()

func mustGet(t *testing.T, b *Backend, queues []string, ack bool) transport.Delivery {
	t.Helper()
	d, err := transporttest.FetchOne(bg, b, queues, ack, 0)
	if err != nil {
		t.Fatalf("Get(%v): %v", queues, err)
	}
	return d
}

func mustPut(t *testing.T, b *Backend, q string, prio int, env string) {
	t.Helper()
	if err := b.Put(bg, q, prio, []byte(env)); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

// Proves: Put LPUSHes the envelope bytes untouched to Kombu's list for each
// priority (§7.2): 0-2 → "celery", 3-5 → "celery\x06\x163", 6-8 →
// "celery\x06\x166", 9 → "celery\x06\x169"; above 9 clamps to 9 and below
// 0 clamps to 0.
func testPutPriorityLists(t *testing.T, e *env) {
	b := e.backend()
	want := map[int]string{
		0: "celery", 1: "celery", 2: "celery",
		3: "celery\x06\x163", 4: "celery\x06\x163", 5: "celery\x06\x163",
		6: "celery\x06\x166", 7: "celery\x06\x166", 8: "celery\x06\x166",
		9: "celery\x06\x169", 12: "celery\x06\x169", -1: "celery",
	}
	for prio, list := range want {
		env := testEnvelope(fmt.Sprintf("tag-%d", prio), "", "celery", prio)
		mustPut(t, b, "celery", prio, env)
		got := e.lrange(e.key(list))
		if len(got) == 0 || got[0] != env {
			t.Fatalf("priority %d: list %q starts with %q, want the envelope", prio, list, got)
		}
	}
	// The captured Celery message (priority 7) lands in celery\x06\x166 as is.
	mustPut(t, b, "celery", 7, celeryEnvelope)
	if got := e.lrange(e.key("celery\x06\x166"))[0]; got != celeryEnvelope {
		t.Fatalf("celery\\x06\\x166 head = %q", got)
	}
	wantKeys := []string{e.key("celery"), e.key("celery\x06\x163"), e.key("celery\x06\x166"), e.key("celery\x06\x169")}
	if got := e.keys(); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("keys = %q, want %q", got, wantKeys)
	}
}

// Proves: with Celery's documented sep=':' and priority_steps 0..9 the
// lists are q, q:1 .. q:9 (12 clamps to q:9), and binding members use ':'
// too ("rk::q", §11).
func testPutSepColonSteps(t *testing.T, e *env) {
	b := e.backend(WithSep(":"), WithPrioritySteps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9))
	for p := 0; p <= 9; p++ {
		mustPut(t, b, "q", p, testEnvelope(fmt.Sprint(p), "", "q", p))
		name := "q"
		if p > 0 {
			name = fmt.Sprintf("q:%d", p)
		}
		if n := len(e.lrange(e.key(name))); n != 1 {
			t.Fatalf("priority %d: %q has %d messages", p, name, n)
		}
	}
	mustPut(t, b, "q", 12, testEnvelope("12", "", "q", 12))
	if n := len(e.lrange(e.key("q:9"))); n != 2 {
		t.Fatalf("priority 12 did not clamp to q:9")
	}
	if err := b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "rk", Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	if got := e.smembers(e.key("_kombu.binding.ex")); !reflect.DeepEqual(got, []string{"rk::q"}) {
		t.Fatalf("member = %q, want rk::q", got)
	}
	// Step-major order over ten steps: q before q:1 before q:9.
	d := mustGet(t, b, []string{"q"}, false)
	if tag, _ := envelope.ExtractTag(d.Envelope); tag != "0" {
		t.Fatalf("first message has tag %q, want 0", tag)
	}
}

// Proves: global_keyprefix goes in front of every key the backend writes
// (lists, binding set, unacked hash/index, malformed list) and of fanout
// channels, never into members, fields or JSON (§10), for 'g_' and 'pfx:'.
func testGlobalKeyPrefix(t *testing.T, e *env) {
	for _, p := range []string{"g_", "pfx:"} {
		P := e.prefix + p
		b := e.backend(WithKeyPrefix(P))
		env := testEnvelope("tag-"+p, "ex_direct", "rk.direct", 5)
		mustPut(t, b, "q_direct", 5, env)
		if err := b.Bind(bg, "ex_topic", transport.BindingRow{RoutingKey: "a.#", Pattern: transport.KeyToPattern("a.#"), Queue: "q_topic2"}); err != nil {
			t.Fatal(err)
		}
		d := mustGet(t, b, []string{"q_direct"}, true)
		if string(d.Envelope) != env {
			t.Fatalf("got %q", d.Envelope)
		}
		e.lpush(P+"bad", "junk")
		if _, err := transporttest.FetchOne(bg, b, []string{"bad"}, true, 0); err == nil {
			t.Fatal("junk was not reported")
		}
		want := []string{P + "_kombu.binding.ex_topic", P + "kombu-go.malformed", P + "unacked", P + "unacked_index"}
		var got []string
		for _, k := range e.keys() {
			if strings.HasPrefix(k, P) {
				got = append(got, k)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("prefix %q: keys %q, want %q", p, got, want)
		}
		if m := e.smembers(P + "_kombu.binding.ex_topic"); m[0] != "a.#\x06\x16^a\\..*?$\x06\x16q_topic2" {
			t.Fatalf("member %q carries a prefix", m[0])
		}
		if v, ok := e.hget(P+"unacked", "tag-"+p); !ok || v != "["+env+`, "ex_direct", "rk.direct"]` {
			t.Fatalf("unacked value %q", v)
		}
		if got, want := b.k.fanoutChannel("fx", "r1"), P+"/0.fx/r1"; got != want {
			t.Fatalf("fanout channel %q, want %q", got, want)
		}
	}
}

// Proves: Bind writes binding members byte for byte as Kombu does (§5
// captured list, topic patterns included), Bindings parses them back, and
// Unbind removes exactly the member.
func testBindMembers(t *testing.T, e *env) {
	b := e.backend()
	type bind struct {
		ex  string
		row transport.BindingRow
	}
	tp := transport.KeyToPattern
	binds := []bind{
		{"celery", transport.BindingRow{RoutingKey: "celery", Queue: "celery"}},
		{"ex_direct", transport.BindingRow{RoutingKey: "rk.direct", Queue: "q_direct"}},
		{"ex_fanout", transport.BindingRow{RoutingKey: "", Queue: "q_fan"}},
		{"ex_fanout", transport.BindingRow{RoutingKey: "ev.#", Queue: "q_fan2"}},
		{"ex_topic", transport.BindingRow{RoutingKey: "a.*.#", Pattern: tp("a.*.#"), Queue: "q_topic1"}},
		{"ex_topic", transport.BindingRow{RoutingKey: "a.#", Pattern: tp("a.#"), Queue: "q_topic2"}},
		{"ex_topic", transport.BindingRow{RoutingKey: "*.x_y-z", Pattern: tp("*.x_y-z"), Queue: "q_topic3"}},
		{"celery.pidbox", transport.BindingRow{Queue: "w1@host.celery.pidbox"}},
		{"reply.celery.pidbox", transport.BindingRow{RoutingKey: "d6e84baf-a74b-306a-a247-da45faf14cd9", Queue: "d6e84baf-a74b-306a-a247-da45faf14cd9.reply.celery.pidbox"}},
	}
	for _, x := range binds {
		if err := b.Bind(bg, x.ex, x.row); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"celery":              {"celery\x06\x16\x06\x16celery"},
		"ex_direct":           {"rk.direct\x06\x16\x06\x16q_direct"},
		"ex_fanout":           {"\x06\x16\x06\x16q_fan", "ev.#\x06\x16\x06\x16q_fan2"},
		"ex_topic":            {"*.x_y-z\x06\x16^.*?[^\\.]\\.x\\_y\\-z$\x06\x16q_topic3", "a.#\x06\x16^a\\..*?$\x06\x16q_topic2", "a.*.#\x06\x16^a\\..*?[^\\.]\\..*?$\x06\x16q_topic1"},
		"celery.pidbox":       {"\x06\x16\x06\x16w1@host.celery.pidbox"},
		"reply.celery.pidbox": {"d6e84baf-a74b-306a-a247-da45faf14cd9\x06\x16\x06\x16d6e84baf-a74b-306a-a247-da45faf14cd9.reply.celery.pidbox"},
	}
	for ex, members := range want {
		if got := e.smembers(e.key("_kombu.binding." + ex)); !reflect.DeepEqual(got, members) {
			t.Fatalf("%s: members %q, want %q", ex, got, members)
		}
	}
	rows, err := b.Bindings(bg, "ex_topic")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("rows %v", rows)
	}
	for _, r := range rows {
		if r.Pattern != tp(r.RoutingKey) {
			t.Fatalf("row %+v does not parse back", r)
		}
	}
	if err := b.Unbind(bg, "ex_fanout", transport.BindingRow{Queue: "q_fan"}); err != nil {
		t.Fatal(err)
	}
	if got := e.smembers(e.key("_kombu.binding.ex_fanout")); !reflect.DeepEqual(got, []string{"ev.#\x06\x16\x06\x16q_fan2"}) {
		t.Fatalf("after unbind: %q", got)
	}
	// A missing table is empty, not an error.
	if rows, err := b.Bindings(bg, "nothing"); err != nil || len(rows) != 0 {
		t.Fatalf("missing table: %v %v", rows, err)
	}
}

// Proves: binding members that do not split into exactly three parts are
// skipped (logged), by Bindings and by the publish script, never crashing.
func testBindingsSkipBadMembers(t *testing.T, e *env) {
	b := e.backend()
	k := e.key("_kombu.binding.ex")
	if err := e.client.SAdd(bg, k, "rk\x06\x16\x06\x16q", "rk\x06\x16x\x06\x16q2\x06\x16extra", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	rows, err := b.Bindings(bg, "ex")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0] != (transport.BindingRow{RoutingKey: "rk", Queue: "q"}) {
		t.Fatalf("rows %+v", rows)
	}
	n, err := b.Publish(bg, "ex", entity.Direct, "rk", 0, []byte(testEnvelope("t", "ex", "rk", 0)))
	if err != nil || n != 1 {
		t.Fatalf("publish: %d %v", n, err)
	}
}

// Proves: Get serves lists step-major across all queues, like Kombu's BRPOP
// key order (§7.3): every queue's step-0 list first, in the order given,
// then every queue's step-3 list, ...; and FIFO within a list.
func testGetStepMajor(t *testing.T, e *env) {
	b := e.backend()
	put := func(q string, p int, tag string) { mustPut(t, b, q, p, testEnvelope(tag, "", q, p)) }
	put("A", 9, "A9")
	put("B", 0, "B0")
	put("A", 3, "A3")
	put("B", 6, "B6")
	put("A", 0, "A0")
	put("B", 0, "B0b")
	put("A", 4, "A4")
	want := []struct{ q, tag string }{{"A", "A0"}, {"B", "B0"}, {"B", "B0b"}, {"A", "A3"}, {"A", "A4"}, {"B", "B6"}, {"A", "A9"}}
	for i, w := range want {
		d := mustGet(t, b, []string{"A", "B"}, false)
		tag, _ := envelope.ExtractTag(d.Envelope)
		if d.Queue != w.q || tag != w.tag {
			t.Fatalf("get %d: queue %q tag %q, want %q %q", i, d.Queue, tag, w.q, w.tag)
		}
	}
	if _, err := transporttest.FetchOne(bg, b, []string{"A", "B"}, false, 0); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("empty: %v", err)
	}
	// Queue order within a step is the caller's.
	put("A", 0, "x")
	put("B", 0, "y")
	if d := mustGet(t, b, []string{"B", "A"}, false); d.Queue != "B" {
		t.Fatalf("got %q first, want B", d.Queue)
	}
}

// Proves: Get with ack writes the unacked record exactly as Kombu's
// QoS.append (§9.1): HSET unacked <tag> "[<envelope>, \"<exchange>\",
// \"<routing_key>\"]" and ZADD unacked_index <receive time> <tag>, for the
// captured Celery and Kombu envelopes, in the same step as the pop.
func testGetRecordsUnacked(t *testing.T, e *env) {
	now := time.Unix(1795550488, 416775000)
	b := e.backend(WithClock(newFakeClock(now)))
	mustPut(t, b, "celery", 7, celeryEnvelope)
	mustPut(t, b, "q_direct", 5, kombuEnvelope)
	// Priority 5 (step 3) is served before priority 7 (step 6).
	d := mustGet(t, b, []string{"celery", "q_direct"}, true)
	if d.Queue != "q_direct" || string(d.Envelope) != kombuEnvelope {
		t.Fatalf("delivery %q %q", d.Queue, d.Envelope)
	}
	d2 := mustGet(t, b, []string{"celery", "q_direct"}, true)
	if d2.Queue != "celery" || string(d2.Envelope) != celeryEnvelope {
		t.Fatalf("delivery %q %q", d2.Queue, d2.Envelope)
	}
	for _, c := range []struct{ tag, env, ex, rk string }{
		{celeryTag, celeryEnvelope, "", "celery"},
		{kombuTag, kombuEnvelope, "ex_direct", "rk.direct"},
	} {
		v, ok := e.hget(e.key("unacked"), c.tag)
		want := "[" + c.env + `, "` + c.ex + `", "` + c.rk + `"]`
		if !ok || v != want {
			t.Fatalf("unacked[%s] = %q\nwant %q", c.tag, v, want)
		}
		if v != string(UnackedValue([]byte(c.env), c.ex, c.rk)) {
			t.Fatalf("differs from UnackedValue")
		}
		score, ok := e.zscore(e.key("unacked_index"), c.tag)
		if !ok || score != transport.UnixSeconds(now) {
			t.Fatalf("score %v, want %v", score, transport.UnixSeconds(now))
		}
	}
	if got := formatScore(now); got != "1795550488.416775" {
		t.Fatalf("score text %q, want Python's repr 1795550488.416775", got)
	}
}

// Proves: the Lua writer of the unacked value escapes exchange and routing
// key exactly as Python's json.dumps (and UnackedValue): quotes,
// backslashes, control characters, DEL, non-ASCII as lowercase \uXXXX,
// astral characters as surrogate pairs, invalid UTF-8 bytes as \ufffd,
// and <, >, &, / as they are.
func testGetUnackedValueEscaping(t *testing.T, e *env) {
	b := e.backend()
	names := []struct{ ex, rk string }{
		{"ex\"q\\b", "a\nb\rc\td\x08e\x0cf"},
		{"\x00\x01\x1f\x7f", "é☃😀"},
		{"<a>&/'", "日本語.ключ"},
		{"bad\xffutf8\xc3", "\xed\xa0\x80surrogate\xf4\x90\x80\x80"},
		{"", ""},
	}
	for i, n := range names {
		tag := fmt.Sprintf("esc-%d", i)
		// The envelope itself is written with Python escaping; its strings
		// decode to the raw names.
		env := testEnvelope(tag, n.ex, n.rk, 0)
		mustPut(t, b, "q", 0, env)
		mustGet(t, b, []string{"q"}, true)
		got, _ := e.hget(e.key("unacked"), tag)
		parsed, err := envelope.Parse([]byte(env))
		if err != nil {
			t.Fatal(err)
		}
		want := string(UnackedValue([]byte(env), parsed.Exchange, parsed.RoutingKey))
		if got != want {
			t.Fatalf("names %q/%q:\n got %q\nwant %q", n.ex, n.rk, got, want)
		}
	}
}

// Proves: Get without ack (Kombu's no_ack) pops without any record (and
// leaves no receipt).
func testGetNoAck(t *testing.T, e *env) {
	b := e.backend()
	mustPut(t, b, "q", 0, kombuEnvelope)
	mustGet(t, b, []string{"q"}, false)
	if ks := e.allKeys(); len(ks) != 0 {
		t.Fatalf("no-ack get left keys %q", ks)
	}
}

// Proves: the Get script's receipt makes a retried call (same receipt key,
// as after a lost reply) return the same message, byte for byte, without
// taking another; the receipt expires within 10 s; and a receipt whose
// record is gone (acked or restored) no longer replays.
func testGetReceiptReplay(t *testing.T, e *env) {
	b := e.backend()
	first := testEnvelope("first", "", "rq", 0)
	mustPut(t, b, "rq", 0, first)
	mustPut(t, b, "rq", 0, testEnvelope("second", "", "rq", 0))
	keys := []string{b.k.unacked, b.k.unackedIndex, b.k.malformed, b.k.receiptKey("fixed")}
	run := func() []any {
		t.Helper()
		res, err := getScript.call(bg, e.client, keys, "1", "1795550400.5", "1", "0", "1", "1", "0", e.prefix, "", "rq").Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i := 0; i < 3; i++ {
		res := run()
		if res[0] != int64(1) || res[1] != "rq" || res[2] != first {
			t.Fatalf("call %d: %v", i, res)
		}
	}
	if n := len(e.lrange(e.key("rq"))); n != 1 {
		t.Fatalf("replays took messages: %d left", n)
	}
	if ttl, _ := e.client.PTTL(bg, b.k.receiptKey("fixed")).Result(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("receipt ttl %v", ttl)
	}
	if err := b.Ack(bg, "first"); err != nil {
		t.Fatal(err)
	}
	if res := run(); res[2] == first {
		t.Fatal("replayed an acked message")
	}
	// A corrupt receipt is ignored.
	e.client.Set(bg, b.k.receiptKey("fixed"), "junk", time.Second)
	mustPut(t, b, "rq", 0, testEnvelope("third", "", "rq", 0))
	if res := run(); res[0] != int64(1) {
		t.Fatalf("corrupt receipt: %v", res)
	}
}

// Proves: an envelope without delivery_info (which crashes Kombu) is
// delivered and recorded with exchange "" and the queue's name as routing
// key, so a restore routes it back to the same queue.
func testGetMissingDeliveryInfo(t *testing.T, e *env) {
	b := e.backend()
	raw := `{"body": "e30=", "headers": {}, "properties": {"body_encoding": "base64", "delivery_tag": "t-noinfo", "priority": 0}}`
	e.lpush(e.key("q_x"), raw)
	d := mustGet(t, b, []string{"q_x"}, true)
	if string(d.Envelope) != raw {
		t.Fatal("envelope changed")
	}
	v, _ := e.hget(e.key("unacked"), "t-noinfo")
	if v != "["+raw+`, "", "q_x"]` {
		t.Fatalf("record %q", v)
	}
	if err := b.Restore(bg, "t-noinfo", false, staticRoute(nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.lrange(e.key("q_x")); len(got) != 1 || !strings.Contains(got[0], `"redelivered": true`) {
		t.Fatalf("restored: %q", got)
	}
}

// Proves: a message that is not JSON, not an object, or has no string
// delivery tag is moved atomically to the dead-letter list (P +
// "kombu-go.malformed", or the configured key) and reported as a
// *transport.MalformedError carrying the raw bytes and where they are: it
// is never lost, never recorded as unacked, and the next Get goes on.
func testGetMalformed(t *testing.T, e *env) {
	for _, custom := range []string{"", "my.dlq"} {
		var opts []Option
		dlq := e.key(DefaultMalformedKey)
		if custom != "" {
			opts = append(opts, WithMalformedKey(custom))
			dlq = e.key(custom)
		}
		b := e.backend(opts...)
		bad := []string{
			"not json",
			`[1, 2]`,
			`{"properties": {}}`,
			`{"properties": {"delivery_tag": 5}}`,
			`{"properties": {"delivery_tag": ""}}`,
			`{"properties": null}`,
			`"just a string"`,
		}
		for _, raw := range bad {
			e.lpush(e.key("q\x06\x163"), raw)
		}
		good := testEnvelope("good", "", "q", 3)
		e.lpush(e.key("q\x06\x163"), good)
		for _, raw := range bad {
			_, err := transporttest.FetchOne(bg, b, []string{"q"}, true, 0)
			var mal *transport.MalformedError
			if !errors.As(err, &mal) || !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("%q: err %v", raw, err)
			}
			if mal.Queue != "q" || string(mal.Raw) != raw || mal.Where != dlq {
				t.Fatalf("%q: %+v", raw, mal)
			}
		}
		d := mustGet(t, b, []string{"q"}, true)
		if string(d.Envelope) != good {
			t.Fatalf("good message: %q", d.Envelope)
		}
		got := e.lrange(dlq)
		if len(got) != len(bad) {
			t.Fatalf("dead letters %q", got)
		}
		for i, raw := range bad {
			if got[len(got)-1-i] != raw {
				t.Fatalf("dead letter %d = %q, want %q", i, got[len(got)-1-i], raw)
			}
		}
		if n, _ := e.client.HLen(bg, e.key("unacked")).Result(); n != 1 {
			t.Fatalf("unacked has %d records, want only the good one", n)
		}
		e.client.Del(bg, dlq, e.key("unacked"), e.key("unacked_index"))
	}
}

// Proves: Ack removes both records (ZREM + HDEL), and acking an unknown
// tag is not an error.
func testAck(t *testing.T, e *env) {
	b := e.backend()
	mustPut(t, b, "q", 0, kombuEnvelope)
	mustGet(t, b, []string{"q"}, true)
	if err := b.Ack(bg, kombuTag); err != nil {
		t.Fatal(err)
	}
	if ks := e.keys(); len(ks) != 0 {
		t.Fatalf("keys left %q", ks)
	}
	if err := b.Ack(bg, "nope"); err != nil {
		t.Fatal(err)
	}
}

// Proves: RecordUnacked (fanout deliveries) writes the same records as Get.
func testRecordUnacked(t *testing.T, e *env) {
	now := time.Unix(1795550496, 396872300)
	b := e.backend(WithClock(newFakeClock(now)))
	if err := b.RecordUnacked(bg, kombuTag, []byte(kombuEnvelope), "ex_fanout", "ev.one"); err != nil {
		t.Fatal(err)
	}
	v, _ := e.hget(e.key("unacked"), kombuTag)
	if v != "["+kombuEnvelope+`, "ex_fanout", "ev.one"]` {
		t.Fatalf("value %q", v)
	}
	if s, _ := e.zscore(e.key("unacked_index"), kombuTag); s != transport.UnixSeconds(now) {
		t.Fatalf("score %v", s)
	}
}

// Proves: Restore with leftmost=false RPUSHes (front: consumed next) and
// with leftmost=true LPUSHes (back), the payload being the envelope with
// headers.redelivered and delivery_info.redelivered set exactly as
// envelope.MarkRedelivered writes it, and both records deleted.
func testRestoreRPushLPush(t *testing.T, e *env) {
	b := e.backend()
	route := staticRoute(nil)
	for _, leftmost := range []bool{false, true} {
		q := fmt.Sprintf("q_plain_%v", leftmost)
		env := testEnvelope("r-"+q, "", q, 0)
		mustPut(t, b, q, 0, env)
		mustGet(t, b, []string{q}, true)
		mustPut(t, b, q, 0, testEnvelope("w1", "", q, 0))
		mustPut(t, b, q, 0, testEnvelope("w2", "", q, 0))
		if err := b.Restore(bg, "r-"+q, leftmost, route); err != nil {
			t.Fatal(err)
		}
		marked, _ := envelope.MarkRedelivered([]byte(env))
		list := e.lrange(e.key(q)) // LRANGE: left (back) to right (front)
		if len(list) != 3 {
			t.Fatalf("list %q", list)
		}
		pos := 2 // RPUSH: rightmost, taken next
		if leftmost {
			pos = 0
		}
		if list[pos] != string(marked) {
			t.Fatalf("leftmost=%v: list %q, restored message not at %d", leftmost, list, pos)
		}
		if !strings.Contains(list[pos], `"headers": {"redelivered": true}`) || !strings.Contains(list[pos], `"routing_key": "`+q+`", "redelivered": true}`) {
			t.Fatalf("flags missing: %s", list[pos])
		}
		if _, ok := e.hget(e.key("unacked"), "r-"+q); ok {
			t.Fatal("record not deleted")
		}
		if _, ok := e.zscore(e.key("unacked_index"), "r-"+q); ok {
			t.Fatal("index entry not deleted")
		}
	}
}

// Proves: restore_priority=own (default, Kombu 5.4+) puts a priority-6
// message back in q\x06\x166, and restore_priority=base (Kombu ≤5.3) in q.
func testRestorePriority(t *testing.T, e *env) {
	for _, c := range []struct {
		p    RestorePriority
		list string
	}{{RestoreOwn, "q\x06\x166"}, {RestoreBase, "q"}} {
		b := e.backend(WithRestorePriority(c.p))
		mustPut(t, b, "q", 6, testEnvelope("p6", "", "q", 6))
		mustGet(t, b, []string{"q"}, true)
		if err := b.Restore(bg, "p6", false, staticRoute(nil)); err != nil {
			t.Fatal(err)
		}
		if n := len(e.lrange(e.key(c.list))); n != 1 {
			t.Fatalf("%s: %q has %d messages", c.p, c.list, n)
		}
		e.client.Del(bg, e.key(c.list))
	}
}

// Proves: restoring a tag with no record is not an error and only removes
// the index entry (Kombu's transaction still sends ZREM and HDEL).
func testRestoreMissing(t *testing.T, e *env) {
	b := e.backend()
	e.client.ZAdd(bg, e.key("unacked_index"), goredisZ(1, "ghost"))
	if err := b.Restore(bg, "ghost", false, staticRoute(nil)); err != nil {
		t.Fatal(err)
	}
	if ks := e.keys(); len(ks) != 0 {
		t.Fatalf("keys left %q", ks)
	}
}

// Proves: an unacked record that cannot be parsed is moved to the
// malformed list (not lost, not retried forever) and reported.
func testRestoreMalformedRecord(t *testing.T, e *env) {
	b := e.backend()
	e.client.HSet(bg, e.key("unacked"), "broken", "{not an array")
	e.client.ZAdd(bg, e.key("unacked_index"), goredisZ(1, "broken"))
	err := b.Restore(bg, "broken", false, staticRoute(nil))
	var mal *transport.MalformedError
	if !errors.As(err, &mal) || mal.Where != e.key(DefaultMalformedKey) {
		t.Fatalf("err %v", err)
	}
	if got := e.lrange(e.key(DefaultMalformedKey)); len(got) != 1 || got[0] != "{not an array" {
		t.Fatalf("dead letters %q", got)
	}
	if _, ok := e.hget(e.key("unacked"), "broken"); ok {
		t.Fatal("record kept")
	}
}

// Proves: a restored message that now routes to no queue (or only to the
// empty queue name) goes to the malformed list with its redelivered flags
// (Kombu drops it, or fails).
func testRestoreUnroutable(t *testing.T, e *env) {
	b := e.backend()
	env := testEnvelope("lost", "gone", "rk", 0)
	if err := b.RecordUnacked(bg, "lost", []byte(env), "gone", "rk"); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(bg, "lost", false, staticRoute(nil)); err != nil {
		t.Fatal(err)
	}
	marked, _ := envelope.MarkRedelivered([]byte(env))
	if got := e.lrange(e.key(DefaultMalformedKey)); len(got) != 1 || got[0] != string(marked) {
		t.Fatalf("dead letters %q", got)
	}
	// Default exchange with an empty routing key names no queue either.
	env2 := testEnvelope("empty-rk", "", "", 0)
	if err := b.RecordUnacked(bg, "empty-rk", []byte(env2), "", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(bg, "empty-rk", false, staticRoute(nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.lrange(e.key(DefaultMalformedKey)); len(got) != 2 {
		t.Fatalf("dead letters %q", got)
	}
	if n, _ := e.client.Exists(bg, e.key("")).Result(); n != 0 {
		t.Fatal("restored to a list with an empty queue name")
	}
}

// Proves: RestoreExpired (Kombu's restore_visible) with an injected clock
// restores only records older than the deadline, RPUSHes them newest first
// so the original order is kept (the oldest is consumed first), re-routes
// through the RouteFunc (a named exchange to two queues), counts the
// messages, and releases the mutex afterwards.
func testRestoreExpired(t *testing.T, e *env) {
	t0 := time.Unix(1795550400, 0)
	clock := newFakeClock(t0)
	b := e.backend(WithClock(clock))
	for i, tag := range []string{"old1", "old2", "fresh"} {
		clock.Set(t0.Add(time.Duration(i) * 10 * time.Second))
		mustPut(t, b, "q_plain", 0, testEnvelope(tag, "", "q_plain", 0))
		mustGet(t, b, []string{"q_plain"}, true)
	}
	clock.Set(t0.Add(30 * time.Second))
	if err := b.RecordUnacked(bg, "multi", []byte(testEnvelope("multi", "ex", "rk", 0)), "ex", "rk"); err != nil {
		t.Fatal(err)
	}
	e.client.ZAdd(bg, e.key("unacked_index"), goredisZ(transport.UnixSeconds(t0.Add(-time.Second)), "multi"))
	route := staticRoute(map[string][]string{"ex|rk": {"qa", "qb"}})
	n, err := b.RestoreExpired(bg, t0.Add(15*time.Second), route)
	if err != nil || n != 3 {
		t.Fatalf("restored %d, %v; want 3", n, err)
	}
	list := e.lrange(e.key("q_plain"))
	if len(list) != 2 {
		t.Fatalf("q_plain %q", list)
	}
	if tag, _ := envelope.ExtractTag([]byte(list[1])); tag != "old1" {
		t.Fatalf("front of the queue is %q, want old1 (order kept)", tag)
	}
	for _, q := range []string{"qa", "qb"} {
		if n := len(e.lrange(e.key(q))); n != 1 {
			t.Fatalf("%s has %d", q, n)
		}
	}
	if _, ok := e.hget(e.key("unacked"), "fresh"); !ok {
		t.Fatal("fresh record restored too early")
	}
	if n, _ := e.client.Exists(bg, e.key("unacked_mutex")).Result(); n != 0 {
		t.Fatal("mutex not released")
	}
	d := mustGet(t, b, []string{"q_plain"}, false)
	if tag, _ := envelope.ExtractTag(d.Envelope); tag != "old1" {
		t.Fatalf("next message %q, want old1", tag)
	}
}

// Proves: when another process holds unacked_mutex, RestoreExpired does
// nothing, returns 0 without error, and leaves the other's token alone.
func testRestoreExpiredMutexHeld(t *testing.T, e *env) {
	b := e.backend()
	mustPut(t, b, "q", 0, kombuEnvelope)
	mustGet(t, b, []string{"q"}, true)
	e.client.Set(bg, e.key("unacked_mutex"), "d5e12646e84111f1bdeb02fc00000001", time.Minute)
	n, err := b.RestoreExpired(bg, time.Now().Add(time.Hour), staticRoute(nil))
	if err != nil || n != 0 {
		t.Fatalf("restored %d, %v", n, err)
	}
	if v, _ := e.client.Get(bg, e.key("unacked_mutex")).Result(); v != "d5e12646e84111f1bdeb02fc00000001" {
		t.Fatalf("mutex token changed to %q", v)
	}
	if _, ok := e.hget(e.key("unacked"), kombuTag); !ok {
		t.Fatal("record restored despite the mutex")
	}
	// Our own lock: the release script deletes only a matching token.
	if r, err := releaseLockScript.call(bg, e.client, []string{e.key("unacked_mutex")}, "other").Int(); err != nil || r != 0 {
		t.Fatalf("release with a wrong token: %d %v", r, err)
	}
	if r, err := releaseLockScript.call(bg, e.client, []string{e.key("unacked_mutex")}, "d5e12646e84111f1bdeb02fc00000001").Int(); err != nil || r != 1 {
		t.Fatalf("release with the token: %d %v", r, err)
	}
}

// Proves: unacked_restore_limit caps one sweep, taking the newest expired
// records first (ZREVRANGEBYSCORE ... LIMIT 0 N).
func testRestoreExpiredLimit(t *testing.T, e *env) {
	t0 := time.Unix(1795550400, 0)
	clock := newFakeClock(t0)
	b := e.backend(WithClock(clock), WithUnackedRestoreLimit(1))
	for i, tag := range []string{"a", "b"} {
		clock.Set(t0.Add(time.Duration(i) * time.Second))
		mustPut(t, b, "q", 0, testEnvelope(tag, "", "q", 0))
		mustGet(t, b, []string{"q"}, true)
	}
	n, err := b.RestoreExpired(bg, t0.Add(time.Hour), staticRoute(nil))
	if err != nil || n != 1 {
		t.Fatalf("restored %d %v", n, err)
	}
	if _, ok := e.hget(e.key("unacked"), "a"); !ok {
		t.Fatal("oldest restored first; want newest first")
	}
}

// Proves: Size sums LLEN over all steps, Purge returns that count and
// empties every list, QueueExists is true only while a list is non-empty
// (with the prefix applied, unlike Kombu's EXISTS), DeleteQueue deletes
// every step.
func testSizePurgeDeleteExists(t *testing.T, e *env) {
	b := e.backend()
	for _, p := range []int{0, 2, 3, 7, 9, 9} {
		mustPut(t, b, "q", p, testEnvelope(fmt.Sprint(p), "", "q", p))
	}
	if n, err := b.Size(bg, "q"); err != nil || n != 6 {
		t.Fatalf("size %d %v", n, err)
	}
	if ok, err := b.QueueExists(bg, "q"); err != nil || !ok {
		t.Fatalf("exists %v %v", ok, err)
	}
	if n, err := b.Purge(bg, "q"); err != nil || n != 6 {
		t.Fatalf("purge %d %v", n, err)
	}
	if ok, _ := b.QueueExists(bg, "q"); ok {
		t.Fatal("exists after purge")
	}
	if n, _ := b.Size(bg, "q"); n != 0 {
		t.Fatal("size after purge")
	}
	mustPut(t, b, "q", 9, testEnvelope("x", "", "q", 9))
	mustPut(t, b, "q", 0, testEnvelope("y", "", "q", 0))
	if err := b.DeleteQueue(bg, "q"); err != nil {
		t.Fatal(err)
	}
	if ks := e.keys(); len(ks) != 0 {
		t.Fatalf("keys left %q", ks)
	}
}

// Proves: Publish on a direct exchange LPUSHes to every queue whose
// binding routing key equals the publish key, once per queue, to the list
// of the message's priority, and returns the count; no match is a silent
// 0 (Kombu drops the message).
func testPublishDirect(t *testing.T, e *env) {
	b := e.backend()
	for _, r := range []transport.BindingRow{
		{RoutingKey: "rk.direct", Queue: "q_direct"},
		{RoutingKey: "rk.direct", Pattern: "junk", Queue: "q_other"},
		{RoutingKey: "rk.other", Queue: "q_no"},
		{RoutingKey: "rk.direct", Queue: ""},
	} {
		if err := b.Bind(bg, "ex_direct", r); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.Publish(bg, "ex_direct", entity.Direct, "rk.direct", 5, []byte(kombuEnvelope))
	if err != nil || n != 2 {
		t.Fatalf("n %d %v", n, err)
	}
	for _, q := range []string{"q_direct\x06\x163", "q_other\x06\x163"} {
		if got := e.lrange(e.key(q)); len(got) != 1 || got[0] != kombuEnvelope {
			t.Fatalf("%q: %q", q, got)
		}
	}
	if n, err := b.Publish(bg, "ex_direct", "", "nobody", 0, []byte(kombuEnvelope)); err != nil || n != 0 {
		t.Fatalf("unrouted: %d %v", n, err)
	}
	if n, err := b.Publish(bg, "no_such_exchange", entity.Direct, "rk", 0, []byte(kombuEnvelope)); err != nil || n != 0 {
		t.Fatalf("missing table: %d %v", n, err)
	}
}

// Proves: the publish script routes a direct exchange as transport.Lookup
// does over a table where several members name one queue, one routing key
// is a prefix of another and one is empty: every queue once, in each of its
// lists exactly one copy.
func testPublishDirectDedupe(t *testing.T, e *env) {
	b := e.backend()
	rows := []transport.BindingRow{
		{RoutingKey: "a", Queue: "dq1"},
		{RoutingKey: "a", Pattern: "x", Queue: "dq1"},
		{RoutingKey: "a", Queue: "dq2"},
		{RoutingKey: "ab", Queue: "dq3"},
		{RoutingKey: "", Queue: "dq4"},
		{RoutingKey: "a", Pattern: "y", Queue: "dq2"},
		{RoutingKey: "a", Pattern: "z", Queue: "dq3"},
		{RoutingKey: "a", Pattern: "w", Queue: "dq5"},
	}
	for _, r := range rows {
		if err := b.Bind(bg, "ex_dedupe", r); err != nil {
			t.Fatal(err)
		}
	}
	for _, rk := range []string{"a", "ab", "", "b"} {
		want, err := transport.Lookup(rows, "direct", rk, "")
		if err != nil {
			t.Fatal(err)
		}
		n, err := b.Publish(bg, "ex_dedupe", entity.Direct, rk, 0, []byte(kombuEnvelope))
		if err != nil || n != len(want) {
			t.Fatalf("rk %q: n %d %v, want %d", rk, n, err, len(want))
		}
		for _, q := range want {
			if got := e.lrange(e.key(q)); len(got) != 1 || got[0] != kombuEnvelope {
				t.Fatalf("rk %q, %q: %d messages", rk, q, len(got))
			}
			e.client.Del(bg, e.key(q))
		}
	}
}

// Proves: Publish works after the server's script cache was flushed (its
// EVALSHA fails with NOSCRIPT and the script is sent whole with EVAL).
func testPublishNoScript(t *testing.T, e *env) {
	b := e.backend()
	if err := b.Bind(bg, "ex_ns", transport.BindingRow{RoutingKey: "k", Queue: "q_ns"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := e.client.ScriptFlush(bg).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := b.Publish(bg, "ex_ns", entity.Direct, "k", 0, []byte(kombuEnvelope)); err != nil || n != 1 {
			t.Fatalf("publish %d: %d %v", i, n, err)
		}
	}
	if got := e.lrange(e.key("q_ns")); len(got) != 2 {
		t.Fatalf("q_ns: %d messages", len(got))
	}
}

// Proves: Publish on a topic exchange matches the stored Kombu patterns in
// Lua exactly as transport.Lookup (the captured a.*.# / a.# / *.x_y-z
// table), pushing the same bytes (same tag) to each matching queue.
func testPublishTopic(t *testing.T, e *env) {
	b := e.backend()
	for _, x := range []struct{ key, q string }{{"a.*.#", "q_topic1"}, {"a.#", "q_topic2"}, {"*.x_y-z", "q_topic3"}} {
		if err := b.Bind(bg, "ex_topic", transport.BindingRow{RoutingKey: x.key, Pattern: transport.KeyToPattern(x.key), Queue: x.q}); err != nil {
			t.Fatal(err)
		}
	}
	table, _ := b.Bindings(bg, "ex_topic")
	for _, rk := range []string{"a.b.c", "a.b", "a", "a.", "z.x_y-z", "a.x_y-z", "", "b.c"} {
		want, err := transport.Lookup(table, "topic", rk, "")
		if err != nil {
			t.Fatal(err)
		}
		env := testEnvelope("topic-"+rk, "ex_topic", rk, 0)
		n, err := b.Publish(bg, "ex_topic", entity.Topic, rk, 0, []byte(env))
		if err != nil || n != len(want) {
			t.Fatalf("rk %q: n %d (%v), want %v", rk, n, err, want)
		}
		for _, q := range want {
			got := e.lrange(e.key(q))
			if len(got) == 0 || got[0] != env {
				t.Fatalf("rk %q: %s lacks the message", rk, q)
			}
		}
	}
}

// Proves: a stored pattern outside the Lua subset makes Publish route in Go
// (transport.Lookup) with the same result, and a pattern Python cannot
// compile fails the publish as it does in Kombu, writing nothing.
func testPublishTopicFallback(t *testing.T, e *env) {
	b := e.backend()
	if err := b.Bind(bg, "ex_t", transport.BindingRow{RoutingKey: "x", Pattern: `^a(b|c)$`, Queue: "qf"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(bg, "ex_t", transport.BindingRow{RoutingKey: "a.#", Pattern: transport.KeyToPattern("a.#"), Queue: "qg"}); err != nil {
		t.Fatal(err)
	}
	n, err := b.Publish(bg, "ex_t", entity.Topic, "ac", 3, []byte(kombuEnvelope))
	if err != nil || n != 1 {
		t.Fatalf("fallback: %d %v", n, err)
	}
	if got := e.lrange(e.key("qf\x06\x163")); len(got) != 1 {
		t.Fatalf("qf: %q", got)
	}
	if err := b.Bind(bg, "ex_bad", transport.BindingRow{RoutingKey: "*a", Pattern: transport.KeyToPattern("*a"), Queue: "qb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(bg, "ex_bad", entity.Topic, "a", 0, []byte(kombuEnvelope)); err == nil {
		t.Fatal("pattern ^*a$ (nothing to repeat) did not fail")
	}
	if n, _ := e.client.Exists(bg, e.key("qb")).Result(); n != 0 {
		t.Fatal("failed publish wrote")
	}
}

// Proves: Publish with type fanout (used only when routing a fanout
// exchange into lists) reaches every bound queue, like Lookup.
func testPublishFanoutType(t *testing.T, e *env) {
	b := e.backend()
	for _, q := range []string{"f1", "f2"} {
		if err := b.Bind(bg, "fx", transport.BindingRow{RoutingKey: "x", Queue: q}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.Publish(bg, "fx", entity.Fanout, "whatever", 0, []byte(kombuEnvelope)); err != nil || n != 2 {
		t.Fatalf("%d %v", n, err)
	}
}

// Proves: PutBatch LPUSHes every item to its priority list.
func testPutBatch(t *testing.T, e *env) {
	b := e.backend()
	err := b.PutBatch(bg, []transport.PutItem{
		{Queue: "a", Priority: 0, Envelope: []byte("1")},
		{Queue: "a", Priority: 9, Envelope: []byte("2")},
		{Queue: "b", Priority: 4, Envelope: []byte("3")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{e.key("a"), e.key("a\x06\x169"), e.key("b\x06\x163")}
	if got := e.keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %q", got)
	}
}

// Proves: fanout PUBLISH channel names match Kombu's captures (§6.3): db 0
// and 3, routing key appended only when non-empty and fanout_patterns is
// on, a custom fanout_prefix, fanout_prefix=false, and global_keyprefix
// 'g_' in front.
func testFanoutChannels(t *testing.T, e *env) {
	cases := []struct {
		opts    []Option
		ex, rk  string
		channel string
	}{
		{nil, "celeryev", "worker.heartbeat", "/0.celeryev/worker.heartbeat"},
		{nil, "celery.pidbox", "", "/0.celery.pidbox"},
		{[]Option{WithDB(3)}, "fx", "r1", "/3.fx/r1"},
		{[]Option{WithFanoutPrefix("/custom."), WithFanoutPatterns(false)}, "fx", "r1", "/custom.fx"},
		{[]Option{WithFanoutPrefix("")}, "fx", "r1", "fx/r1"},
		{[]Option{WithKeyPrefix(e.prefix + "g_")}, "fx", "r1", "g_/0.fx/r1"},
		{[]Option{WithFanoutPrefix("/{{db}}.")}, "fx", "", "/{db}.fx"},
	}
	ps := e.client.PSubscribe(bg, escapeGlob(e.prefix)+"*")
	defer ps.Close()
	if _, err := ps.Receive(bg); err != nil {
		t.Fatal(err)
	}
	ch := ps.Channel()
	for _, c := range cases {
		b := e.backend(c.opts...)
		payload := "payload-" + c.channel
		if err := b.PublishFanout(bg, c.ex, c.rk, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-ch:
			if m.Channel != e.prefix+c.channel || m.Payload != payload {
				t.Fatalf("channel %q payload %q, want %q", m.Channel, m.Payload, e.prefix+c.channel)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message on %q", c.channel)
		}
	}
}

// Proves: SubscribeFanout PSUBSCRIBEs Kombu's patterns ("#" → "*", empty
// key → exact channel) and delivers the raw payload with the exchange
// parsed from the channel; an empty-key binding does not hear routed
// publishes; empty payloads are dropped; Close closes C.
func testSubscribeFanout(t *testing.T, e *env) {
	for _, opts := range [][]Option{nil, {WithFanoutPrefix("")}, {WithKeyPrefix(e.prefix + "pfx:")}} {
		b := e.backend(opts...)
		sub, err := b.SubscribeFanout(bg, []transport.FanoutSub{
			{Exchange: "ex_fanout", RoutingKey: "ev.#", Queue: "q1"},
			{Exchange: "celery.pidbox", RoutingKey: "", Queue: "q2"},
		})
		if err != nil {
			t.Fatal(err)
		}
		pub := func(ex, rk, payload string) {
			if err := b.PublishFanout(bg, ex, rk, []byte(payload)); err != nil {
				t.Fatal(err)
			}
		}
		pub("celery.pidbox", "routed", "not for q2")
		pub("ex_fanout", "ev.one", "")
		pub("ex_fanout", "ev.one", "m1")
		pub("celery.pidbox", "", "m2")
		for _, want := range []transport.Delivery{{Exchange: "ex_fanout", Envelope: []byte("m1")}, {Exchange: "celery.pidbox", Envelope: []byte("m2")}} {
			select {
			case d := <-sub.C():
				if d.Exchange != want.Exchange || string(d.Envelope) != string(want.Envelope) {
					t.Fatalf("got %q %q, want %q %q", d.Exchange, d.Envelope, want.Exchange, want.Envelope)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no delivery")
			}
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-sub.C(); ok {
			t.Fatal("C open after Close")
		}
	}
}

// Proves: a GetWait blocked on empty queues returns a message published
// afterwards promptly (well before its timeout), records it as unacked,
// and the wait itself changed no list.
func testGetWaitWakes(t *testing.T, e *env) {
	b := e.backend()
	type res struct {
		d   transport.Delivery
		err error
		at  time.Time
	}
	out := make(chan res, 1)
	go func() {
		d, err := transporttest.FetchOne(bg, b, []string{"w1", "w2"}, true, 10*time.Second)
		out <- res{d, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond) // let it block
	sent := time.Now()
	mustPut(t, b, "w2", 9, kombuEnvelope)
	select {
	case r := <-out:
		if r.err != nil || r.d.Queue != "w2" || string(r.d.Envelope) != kombuEnvelope {
			t.Fatalf("GetWait: %+v %v", r.d, r.err)
		}
		lat := r.at.Sub(sent)
		t.Logf("wake latency %v", lat)
		if lat > 500*time.Millisecond {
			t.Fatalf("woke after %v", lat)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetWait did not wake")
	}
	if _, ok := e.hget(e.key("unacked"), kombuTag); !ok {
		t.Fatal("no unacked record")
	}
	if ks := e.keys(); len(ks) != 2 {
		t.Fatalf("keys %q", ks)
	}
}

// Proves: GetWait on empty queues returns ErrEmpty after about timeout, and
// with a zero timeout after one try.
func testGetWaitTimeout(t *testing.T, e *env) {
	b := e.backend()
	start := time.Now()
	_, err := transporttest.FetchOne(bg, b, []string{"nothing"}, true, 300*time.Millisecond)
	if !errors.Is(err, transport.ErrEmpty) {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 3*time.Second {
		t.Fatalf("returned after %v", el)
	}
	if _, err := transporttest.FetchOne(bg, b, []string{"nothing"}, true, 0); !errors.Is(err, transport.ErrEmpty) {
		t.Fatal(err)
	}
}

// Proves: cancelling ctx makes a blocked GetWait return ctx.Err() at once
// (well within its timeout), and an already cancelled ctx takes nothing.
func testGetWaitCancel(t *testing.T, e *env) {
	b := e.backend()
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := transporttest.FetchOne(ctx, b, []string{"c"}, true, 30*time.Second)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 200*time.Millisecond {
			t.Fatalf("returned %v after cancel", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetWait ignored cancel")
	}
	mustPut(t, b, "c", 0, kombuEnvelope)
	if _, err := transporttest.FetchOne(ctx, b, []string{"c"}, true, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if n := len(e.lrange(e.key("c"))); n != 1 {
		t.Fatal("cancelled GetWait took the message")
	}
}

// Proves: Close wakes a blocked GetWait with ErrClosed, returns after its
// watchers stopped, leaves the client it was given open, and methods
// called afterwards fail with ErrClosed.
func testGetWaitClose(t *testing.T, e *env) {
	b, err := New(e.client, WithKeyPrefix(e.prefix))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := transporttest.FetchOne(bg, b, []string{"c"}, true, 30*time.Second)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetWait survived Close")
	}
	if err := e.client.Ping(bg).Err(); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
	if _, err := transporttest.FetchOne(bg, b, []string{"c"}, true, time.Second); !errors.Is(err, transport.ErrClosed) {
		t.Fatal(err)
	}
}

// Proves: with more lists than wait connections (1 watcher for 2 queues ×
// 4 steps, and 0 watchers), GetWait still finds a message on an unwatched
// list quickly (polling with backoff).
func testGetWaitBeyondLimit(t *testing.T, e *env) {
	for _, limit := range []int{1, 0} {
		b := e.backend(WithWaitConnections(limit))
		out := make(chan error, 1)
		go func() {
			d, err := transporttest.FetchOne(bg, b, []string{"l1", "l2"}, true, 10*time.Second)
			if err == nil && d.Queue != "l2" {
				err = fmt.Errorf("queue %q", d.Queue)
			}
			out <- err
		}()
		time.Sleep(150 * time.Millisecond)
		mustPut(t, b, "l2", 9, kombuEnvelope)
		select {
		case err := <-out:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("limit %d: message on an unwatched list not found", limit)
		}
	}
}

// Proves: concurrent GetWait consumers (sharing one Backend and its
// watchers, plus a second Backend) receive every published message exactly
// once, with an unacked record each.
func testGetWaitConcurrent(t *testing.T, e *env) {
	b1 := e.backend()
	b2 := e.backend()
	const consumers, messages = 6, 200
	got := make(chan string, messages*2)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var done = make(chan struct{})
	var running = consumers
	finished := make(chan struct{}, consumers)
	for i := 0; i < consumers; i++ {
		b := b1
		if i%2 == 1 {
			b = b2
		}
		go func() {
			defer func() { finished <- struct{}{} }()
			for ctx.Err() == nil {
				d, err := transporttest.FetchOne(ctx, b, []string{"cq1", "cq2"}, true, 200*time.Millisecond)
				if err != nil {
					continue
				}
				tag, _ := envelope.ExtractTag(d.Envelope)
				got <- tag
			}
		}()
	}
	go func() {
		for i := 0; i < messages; i++ {
			q := "cq1"
			if i%3 == 0 {
				q = "cq2"
			}
			if err := b1.Put(bg, q, i%10, []byte(testEnvelope(fmt.Sprintf("m%d", i), "", q, i%10))); err != nil {
				t.Error(err)
			}
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		close(done)
	}()
	seen := map[string]int{}
	timeout := time.After(30 * time.Second)
	for len(seen) < messages {
		select {
		case tag := <-got:
			seen[tag]++
			if seen[tag] > 1 {
				t.Fatalf("%s delivered twice", tag)
			}
		case <-timeout:
			t.Fatalf("got %d of %d", len(seen), messages)
		}
	}
	<-done
	cancel()
	for ; running > 0; running-- {
		<-finished
	}
	select {
	case tag := <-got:
		t.Fatalf("extra delivery %s", tag)
	default:
	}
	if n, _ := e.client.HLen(bg, e.key("unacked")).Result(); n != messages {
		t.Fatalf("%d unacked records, want %d", n, messages)
	}
}

// Proves: the watchers' BLMOVE list list RIGHT RIGHT leaves a list exactly
// as it was: three messages pushed at once to a watched list wake the
// consumer, which takes the oldest, and the other two stay in order.
func testWatcherLeavesListsUntouched(t *testing.T, e *env) {
	b := e.backend()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	// A consumer waits on "idle" and takes one message.
	go func() { _, _ = transporttest.FetchOne(ctx, b, []string{"idle"}, true, 5*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	// Push three messages to the watched list "idle" in one MULTI: the
	// watcher wakes, the consumer takes the oldest, the rest stay in order.
	_, err := e.client.TxPipelined(bg, func(p goredisPipeliner) error {
		for i := 0; i < 3; i++ {
			p.LPush(bg, e.key("idle"), fmt.Sprintf(`{"properties": {"delivery_tag": "i%d"}}`, i))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	want := []string{`{"properties": {"delivery_tag": "i2"}}`, `{"properties": {"delivery_tag": "i1"}}`}
	if got := e.lrange(e.key("idle")); !reflect.DeepEqual(got, want) {
		t.Fatalf("list after wait %q, want %q", got, want)
	}
}

// Proves: every method of a closed backend fails with ErrClosed.
func testClosedBackend(t *testing.T, e *env) {
	b := e.backend()
	_ = b.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Put":     b.Put(bg, "q", 0, nil),
		"Ack":     b.Ack(bg, "t"),
		"Bind":    b.Bind(bg, "x", transport.BindingRow{}),
		"Restore": b.Restore(bg, "t", false, staticRoute(nil)),
		"Ping":    b.Ping(bg),
	} {
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := transporttest.FetchOne(bg, b, []string{"q"}, true, 0); !errors.Is(err, transport.ErrClosed) {
		t.Fatal(err)
	}
}
