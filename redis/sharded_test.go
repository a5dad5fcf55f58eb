package redis

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
	"github.com/kombu-go/kombu/transport/virtual"
)

// TestShardedConformance runs the transport conformance suite in the
// sharded layout on a local Redis Cluster of three masters and three
// replicas, through a go-redis ClusterClient handed to New.
// Proves: every transport guarantee the suite checks (at-least-once
// takes, visibility restore, strict priorities within a queue, round
// robin over queues, batches, deferred acks, fanout) holds when each
// queue's keys live in that queue's own slot and no command spans two
// slots (a cross-slot command fails with CROSSSLOT on a cluster). The
// step-major order across queues is the one guarantee this layout does
// not make (Features.NoCrossQueuePriority).
func TestShardedConformance(t *testing.T) {
	c := startCluster(t)
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { _ = client.Close() })
	conformance(t, client, "shconf:", shardedFeatures(), WithClusterLayout(LayoutSharded))
}

// TestShardedConformanceSingle runs the same suite in the sharded layout
// on the single server of KOMBU_TEST_REDIS_URL (the layout works on any
// Redis; a cluster only adds the slot checks).
func TestShardedConformanceSingle(t *testing.T) {
	e := integrationEnv(t)
	conformance(t, e.client, e.prefix, shardedFeatures(), WithClusterLayout(LayoutSharded))
}

func shardedFeatures() transporttest.Features {
	// The dead-letter list of a queue's malformed messages is in the
	// queue's slot (P{queue}kombu-go.malformed), not a queue of its own.
	return transporttest.Features{
		DeadLetterQueue:      "-",
		NoCrossQueuePriority: "the sharded layout keeps each queue in its own slot, and no Redis command reads lists of two slots: priorities are strict within a queue, queues are served round robin",
	}
}

// TestShardedKeys proves the sharded layout's key formula: every key of a
// queue (its priority lists, unacked records, index, restore mutex,
// dead-letter list) is P+"{"+queue+"}"+name, so all of them hash to the
// queue's slot; binding tables keep Kombu's names; the fanout channel of
// an exchange carries the exchange as its hash tag.
func TestShardedKeys(t *testing.T) {
	o := DefaultOptions()
	o.KeyPrefix, o.ClusterLayout = "app:", LayoutSharded
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	k, err := newKeys(&o, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := k.group("celery")
	for got, want := range map[string]string{
		k.queueKey("celery", 0):             "app:{celery}",
		k.queueKey("celery", 9):             "app:{celery}\x06\x169",
		g.unacked:                           "app:{celery}unacked",
		g.index:                             "app:{celery}unacked_index",
		g.mutex:                             "app:{celery}unacked_mutex",
		g.malformed:                         "app:{celery}kombu-go.malformed",
		k.bindingKey("celery"):              "app:_kombu.binding.celery",
		k.shardFanoutChannel("bcast"):       "app:{bcast}/0.bcast",
		strings.Join(k.queueKeys("q"), ","): "app:{q},app:{q}\x06\x163,app:{q}\x06\x166,app:{q}\x06\x169",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}

// TestShardedBadInput proves that bad input in the sharded layout fails
// with a clear error before anything is written: at Open (no server is
// reached: the hosts are unreachable) a hash tag (which would put every
// key in one slot), an unknown layout, the layout on a redis:// URL, a
// global_keyprefix with a brace; at New the same
// conflict; at declare, put, publish, bind and take a queue name holding
// a brace (errors.Is ErrShardedName and entity.ErrInvalid), leaving the
// server empty.
func TestShardedBadInput(t *testing.T) {
	for _, tc := range []struct{ url, says string }{
		{"rediscluster://127.0.0.1:1?cluster_layout=sharded&hash_tag=app", "conflict"},
		{"rediscluster://127.0.0.1:1?cluster_layout=spread", "cluster_layout"},
		{"redis://127.0.0.1:1?cluster_layout=sharded", "cluster_layout is an option of rediscluster"},
		{"rediscluster://127.0.0.1:1?cluster_layout=sharded&global_keyprefix=%7Bapp%7D", "brace"},
	} {
		_, err := Open(bg, tc.url)
		if !errors.Is(err, transport.ErrBadURL) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Open(%q) = %v; want ErrBadURL saying %q", tc.url, err, tc.says)
		}
	}
	mr := miniredis.RunT(t)
	client := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	defer client.Close()
	if _, err := New(client, WithClusterLayout(LayoutSharded), WithHashTag("app")); !errors.Is(err, ErrBadOption) {
		t.Errorf("New(sharded, hash tag) = %v; want ErrBadOption", err)
	}
	b, err := New(client, WithClusterLayout(LayoutSharded), WithWaitConnections(0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr := virtual.New(b, virtual.Options{})
	bad := []string{"a{b}", "{celery}", "x}", "y{"}
	for _, q := range bad {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrShardedName) || !errors.Is(err, entity.ErrInvalid) || !strings.Contains(err.Error(), q) {
				t.Errorf("%s(%q) = %v; want ErrShardedName naming the queue", op, q, err)
			}
		}
		_, err := tr.DeclareQueue(bg, entity.Queue{Name: q})
		check("DeclareQueue", err)
		check("Put", b.Put(bg, q, 0, faultEnvelope("t")))
		_, err = b.Publish(bg, "", entity.Direct, q, 0, faultEnvelope("t"))
		check("Publish", err)
		check("Bind", b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "rk", Queue: q}))
		_, err = shardFetch(bg, b, transport.FetchRequest{Queues: []string{"ok", q}, Ack: true, Max: 1})
		check("Get", err)
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("keys written: %v", keys)
	}
}

// TestShardedOpenURL proves rediscluster://...?cluster_layout=sharded
// opens the sharded layout on a local 3+3 cluster: messages put on queues
// whose slots are on different masters land in lists named P{queue} on
// those masters; a take with acks writes the record under P{queue}unacked
// on the queue's master and adds the queue to P_kombu-go.queues; an ack
// through another backend (which did not take it) finds and deletes it;
// a fanout broadcast goes over sharded pub/sub (the subscriber's channel
// is listed by PUBSUB SHARDCHANNELS on the exchange's master; Redis here
// is 7.0, which has it).
func TestShardedOpenURL(t *testing.T) {
	c := startCluster(t)
	masters := clusterMasters(t, c)
	queues, owner := spreadQueues(t, c, masters, "url.", 1)
	raw := c.URL() + "?cluster_layout=sharded&global_keyprefix=app:"
	b, err := Open(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other, err := Open(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	node := func(port int) *goredis.Client {
		cl := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Protocol: 2})
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	for i, q := range queues {
		if err := b.Put(bg, q, 0, faultEnvelope("t"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if n, err := node(owner[q]).LLen(bg, "app:{"+q+"}").Result(); err != nil || n != 1 {
			t.Errorf("LLEN app:{%s} on master %d = %d, %v; want 1", q, owner[q], n, err)
		}
	}
	ds, err := shardFetch(bg, b, transport.FetchRequest{Queues: queues, Ack: true, Max: 10, Rotate: true})
	if err != nil || len(ds) != len(queues) {
		t.Fatalf("GetBatch = %d, %v", len(ds), err)
	}
	for _, q := range queues {
		if n, _ := node(owner[q]).HLen(bg, "app:{"+q+"}unacked").Result(); n != 1 {
			t.Errorf("HLEN app:{%s}unacked on master %d = %d, want 1", q, owner[q], n)
		}
	}
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	defer cl.Close()
	if got, _ := cl.SMembers(bg, "app:_kombu-go.queues").Result(); len(got) != len(queues) {
		t.Errorf("app:_kombu-go.queues = %v, want %v", got, queues)
	}
	for _, d := range ds {
		if err := shardAckTags(bg, other, deliveryTag(d.Envelope)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range queues {
		if n, _ := node(owner[q]).HLen(bg, "app:{"+q+"}unacked").Result(); n != 0 {
			t.Errorf("after the acks app:{%s}unacked holds %d", q, n)
		}
	}

	sub, err := b.SubscribeFanout(bg, []transport.FanoutSub{{Exchange: "bcast", RoutingKey: "", Queue: "q1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	m, err := c.MasterOf("{bcast}")
	if err != nil {
		t.Fatal(err)
	}
	if chans, err := node(m).Do(bg, "PUBSUB", "SHARDCHANNELS").StringSlice(); err != nil || !slices.Contains(chans, "app:{bcast}/0.bcast") {
		t.Errorf("PUBSUB SHARDCHANNELS on the exchange's master %d = %v, %v", m, chans, err)
	}
	if err := other.PublishFanout(bg, "bcast", "", faultEnvelope("f1")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-sub.C():
		if d.Exchange != "bcast" || deliveryTag(d.Envelope) != "f1" {
			t.Errorf("fanout delivery %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no fanout delivery within 5 s")
	}
	if b.shard.plainPubSub.Load() || other.shard.plainPubSub.Load() {
		t.Error("fell back to PUBLISH/SUBSCRIBE on a Redis 7 cluster")
	}
}

// TestShardedConformanceMini runs the suite in the sharded layout on
// miniredis, which has no SPUBLISH: fanout then falls back to PUBLISH and
// SUBSCRIBE on the exchange's channel, with the binding keys matched in
// Go (the fallback for servers before Redis 7.0).
func TestShardedConformanceMini(t *testing.T) {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	f := shardedFeatures()
	f.NoNonFiniteJSON = true
	conformance(t, c, "conf:", f, WithClusterLayout(LayoutSharded), WithWaitConnections(0))
}

// ExampleOpen_clusterSharded opens the backend on a Redis Cluster in the
// sharded layout: each queue's keys are in that queue's own slot, so the
// queues spread over the masters (Go producers and consumers only).
func ExampleOpen_clusterSharded() {
	ctx := context.Background()
	b, err := Open(ctx, "rediscluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?cluster_layout=sharded")
	if err != nil {
		log.Fatal(err) // ErrBadURL with hash_tag, ErrNotCluster on a single instance
	}
	defer b.Close()
	for _, q := range []string{"emails", "reports", "thumbnails"} { // LPUSH {emails}, {reports}, {thumbnails}
		if err := b.Put(ctx, q, 0, []byte(`{"body": "..."}`)); err != nil {
			log.Fatal(err)
		}
	}
}

// TestShardedRoundAfterScriptFlush proves a round-robin batch, whose
// per-queue takes go out in one pipeline as EVALSHA, survives a server
// whose script cache was flushed (a restart, a failover to a fresh
// replica): each NOSCRIPT call is sent again on its own as EVAL, with its
// receipt, and the batch takes exactly what it would have.
func TestShardedRoundAfterScriptFlush(t *testing.T) {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	defer c.Close()
	b, err := New(c, WithClusterLayout(LayoutSharded), WithWaitConnections(0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	qs := []string{"a", "b", "c"}
	for i := range 9 {
		if err := b.Put(bg, qs[i%3], 0, shardEnvelope(fmt.Sprint("m", i), qs[i%3])); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ScriptFlush(bg).Err(); err != nil {
		t.Fatal(err)
	}
	ds, err := shardFetch(bg, b, transport.FetchRequest{Queues: qs, Ack: true, Max: 6, Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, deliveryTag(d.Envelope))
	}
	if want := []string{"m0", "m1", "m2", "m3", "m4", "m5"}; !slices.Equal(got, want) {
		t.Fatalf("batch after SCRIPT FLUSH = %v, want %v", got, want)
	}
	if n, _, err := b.Unacked(bg); err != nil || n != 6 {
		t.Fatalf("unacked = %d, %v; want 6", n, err)
	}
}

// movedOnce is a go-redis hook that fails the LPUSHes to key of the first
// command or pipeline that has any with a MOVED reply, without sending
// them: what a slot migration does to one queue of a batch (every push to
// a moved slot is refused; a key that has moved does not move back).
type movedOnce struct {
	key  string
	done atomic.Bool
}

type fakeMoved string

func (e fakeMoved) Error() string { return string(e) }
func (fakeMoved) RedisError()     {}

func (h *movedOnce) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *movedOnce) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, c goredis.Cmder) error {
		if a := c.Args(); len(a) > 1 && strings.EqualFold(c.Name(), "lpush") && a[1] == h.key && h.done.CompareAndSwap(false, true) {
			c.SetErr(fakeMoved("MOVED 1234 127.0.0.1:1"))
			return c.Err()
		}
		return next(ctx, c)
	}
}

func (h *movedOnce) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		keep := cmds[:0:0]
		refuse := !h.done.Load()
		for _, c := range cmds {
			a := c.Args()
			if refuse && len(a) > 1 && strings.EqualFold(c.Name(), "lpush") && a[1] == h.key {
				c.SetErr(fakeMoved("MOVED 1234 127.0.0.1:1"))
				h.done.Store(true)
				continue
			}
			keep = append(keep, c)
		}
		if len(keep) == 0 {
			return nil
		}
		return next(ctx, keep)
	}
}

// TestShardedPushMovedOnce proves that a publish in the sharded layout
// whose push to one queue is refused with MOVED (its slot migrating) sends
// again only that queue's push: every queue ends with each message once,
// in order. It used to send the whole write again, doubling the messages
// of the queues whose push had gone through. It covers PutBatch, Put,
// Publish of one message routed to three queues, and PublishBatch (which
// had no retry: it returned the MOVED). On miniredis, with a hook playing the
// migrating slot.
func TestShardedPushMovedOnce(t *testing.T) {
	bg := context.Background()
	open := func(t *testing.T) (*Backend, *goredis.Client, *movedOnce) {
		mr := miniredis.RunT(t)
		hook := &movedOnce{key: "{b}"}
		c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
		c.AddHook(hook)
		t.Cleanup(func() { _ = c.Close() })
		b, err := New(c, WithClusterLayout(LayoutSharded))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		for _, q := range []string{"a", "b", "c"} {
			if err := b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "k", Queue: q}); err != nil {
				t.Fatal(err)
			}
		}
		return b, c, hook
	}
	check := func(t *testing.T, b *Backend, hook *movedOnce, want func(q string, i int) []string) {
		t.Helper()
		if !hook.done.Load() {
			t.Fatal("the hook refused no push: the test proves nothing")
		}
		for i, q := range []string{"a", "b", "c"} {
			ds, err := shardFetch(bg, b, transport.FetchRequest{Queues: []string{q}, Max: 10})
			if err != nil && !errors.Is(err, transport.ErrEmpty) {
				t.Fatalf("Fetch(%s): %v", q, err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, deliveryTag(d.Envelope))
			}
			if w := want(q, i); !slices.Equal(got, w) {
				t.Errorf("queue %s holds %v, want %v", q, got, w)
			}
		}
	}
	t.Run("PutBatch", func(t *testing.T) {
		b, _, hook := open(t)
		var items []transport.PutItem
		for i := range 6 {
			q := []string{"a", "b", "c"}[i%3]
			items = append(items, transport.PutItem{Queue: q, Envelope: shardEnvelope(q+strconv.Itoa(i), q)})
		}
		if err := b.PutBatch(bg, items); err != nil {
			t.Fatal(err)
		}
		check(t, b, hook, func(q string, i int) []string { return []string{q + strconv.Itoa(i), q + strconv.Itoa(i+3)} })
	})
	t.Run("Put", func(t *testing.T) {
		b, _, hook := open(t)
		if err := b.Put(bg, "b", 0, shardEnvelope("m", "b")); err != nil {
			t.Fatal(err)
		}
		check(t, b, hook, func(q string, _ int) []string {
			if q == "b" {
				return []string{"m"}
			}
			return nil
		})
	})
	t.Run("Publish", func(t *testing.T) {
		b, _, hook := open(t)
		n, err := b.Publish(bg, "ex", entity.Direct, "k", 0, shardEnvelope("m", "k"))
		if err != nil || n != 3 {
			t.Fatalf("Publish = %d, %v; want 3 queues", n, err)
		}
		check(t, b, hook, func(string, int) []string { return []string{"m"} })
	})
	t.Run("PublishBatch", func(t *testing.T) {
		b, _, hook := open(t)
		items := []transport.PublishItem{
			{Exchange: "ex", Type: entity.Direct, RoutingKey: "k", Envelope: shardEnvelope("m1", "k")},
			{Exchange: "ex", Type: entity.Direct, RoutingKey: "k", Envelope: shardEnvelope("m2", "k")},
		}
		ns, errs := b.PublishBatch(bg, items)
		for i := range items {
			if errs[i] != nil || ns[i] != 3 {
				t.Fatalf("PublishBatch item %d = %d, %v; want 3 queues", i, ns[i], errs[i])
			}
		}
		check(t, b, hook, func(string, int) []string { return []string{"m1", "m2"} })
	})
}
