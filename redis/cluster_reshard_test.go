package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// redirects counts, per reply kind, what the node clients of a
// ClusterClient were told while it routed commands: MOVED and ASK
// redirections (go-redis follows them), TRYAGAIN (a multi-key command
// during a migration: go-redis, then the backend, retries it), and a
// script's "non local key" error. It is a go-redis hook added to every
// node client (ClusterClient.OnNewNode), so it sees each node's reply,
// not only the final one.
type redirects struct {
	moved, ask, tryAgain, nonLocal, other atomic.Int64
	mu                                    sync.Mutex
	samples                               []string // a few of the "other" errors
}

func (h *redirects) note(cmd goredis.Cmder, err error) {
	var rerr goredis.Error
	if err == nil || !errors.As(err, &rerr) || errors.Is(err, goredis.Nil) || cmd.Name() == "client" {
		return // CLIENT SETINFO: go-redis's handshake, unknown to Redis 7.0
	}
	msg := rerr.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED "):
		h.moved.Add(1)
	case strings.HasPrefix(msg, "ASK "):
		h.ask.Add(1)
	case strings.HasPrefix(msg, "TRYAGAIN"):
		h.tryAgain.Add(1)
	case strings.Contains(msg, "non local key"):
		h.nonLocal.Add(1)
	default:
		h.other.Add(1)
		h.mu.Lock()
		if len(h.samples) < 5 {
			h.samples = append(h.samples, msg)
		}
		h.mu.Unlock()
	}
}

func (h *redirects) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *redirects) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd) // a reply error is returned here; cmd.Err() is set later
		h.note(cmd, err)
		return err
	}
}

func (h *redirects) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.note(c, c.Err())
		}
		return err
	}
}

func (h *redirects) String() string {
	return fmt.Sprintf("MOVED %d, ASK %d, TRYAGAIN %d, script non-local-key errors %d, other error replies %d %q",
		h.moved.Load(), h.ask.Load(), h.tryAgain.Load(), h.nonLocal.Load(), h.other.Load(), h.samples)
}

// reshardClient returns a cluster client on c's nodes whose node clients
// count their redirections in h.
func reshardClient(t *testing.T, addrs []string, h *redirects) *goredis.ClusterClient {
	t.Helper()
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, Protocol: 2, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	cl.OnNewNode(func(n *goredis.Client) { n.AddHook(h) })
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestClusterReshard moves the slot of the compatible layout's hash tag
// from its master to another master, by hand as `redis-cli --cluster
// reshard` does (CLUSTER SETSLOT IMPORTING on the target, MIGRATING on the
// source, MIGRATE ... KEYS one key at a time, CLUSTER SETSLOT NODE on every
// master), but slowly: the migration stays in progress for about 2.5 s
// while five producers (on the default exchange, an LPUSH, and through a
// bound direct exchange, publish.lua; each once on a plain backend and once
// with publish_wait_replicas=1, whose writes go in a pipeline on the tag's
// master that follows no redirection by itself; and PublishBatch of four
// messages through the exchange, publish_batch.lua) and two consumers (takes
// with acks; each Ack 1.2 s later, so unacked records exist) run on a local
// 3+3 cluster. The consumers pause for 300 ms before the migration, so
// the queue's list holds a backlog on the source. The keys move in the
// order that hurts most: the binding key first, then unacked_index, then
// unacked (an Ack's MULTI touches both), the take receipts, and the
// queue's list last. Without the slot guard of the publish scripts (see
// cluster.go), publish.lua ran on the target through ASK and made a
// second queue list there, MIGRATE of the list failed with BUSYKEY, and
// the source's messages were stranded (about 1,100 confirmed messages
// undelivered in one run).
// Proves: every publish that returned nil is delivered; nothing is
// delivered that was not published; no message is delivered twice (no
// restore runs here, and a take retried after a TRYAGAIN or redirect did
// not run, or is answered from its receipt); every key of the slot
// reaches the target (no BUSYKEY) and the busy keys did move under
// traffic; producers and consumers ride the migration out without an
// error returned (takes and acks retry, Publish waits while the slot
// migrates). The MOVED, ASK and TRYAGAIN replies the node clients got are
// counted in the output, and the test fails if any of the three was never
// seen.
func TestClusterReshard(t *testing.T) {
	c := startCluster(t)
	const tag = "{kombu}"
	src, err := c.MasterOf(tag)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := c.CLI(src, "CLUSTER", "KEYSLOT", tag)
	if err != nil {
		t.Fatal(err)
	}
	masters, err := c.Masters(src)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v", masters, err)
	}
	dst := masters[0]
	if dst == src {
		dst = masters[1]
	}
	srcID, err := c.NodeID(src)
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := c.NodeID(dst)
	if err != nil {
		t.Fatal(err)
	}

	var hooks redirects
	pubClient := reshardClient(t, c.Addrs(), &hooks)
	consClient := reshardClient(t, c.Addrs(), &hooks)
	pub, err := New(pubClient, WithHashTag("kombu"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// A second publisher waits for a replica (WAIT on a pipeline of the
	// tag's master, which follows no redirection itself).
	waitPub, err := New(reshardClient(t, c.Addrs(), &hooks), WithHashTag("kombu"), WithPublishWaitReplicas(1, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer waitPub.Close()
	cons, err := New(consClient, WithHashTag("kombu"))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := pub.LoadScripts(bg); err != nil {
		t.Fatal(err)
	}
	if err := pub.Bind(bg, "ex", transport.BindingRow{RoutingKey: "q", Queue: "q"}); err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		attempted = map[string]bool{}
		confirmed = map[string]bool{}
		failed    int
		delivered = map[string]int{}
		takeErrs  atomic.Int64
		ackErrs   atomic.Int64
		errSample atomic.Value
		pubErr    atomic.Value
	)
	ctx, stopProducers := context.WithCancel(bg)
	var prod sync.WaitGroup
	note := func(id string, n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && n == 1:
			confirmed[id] = true
		case err == nil:
			t.Errorf("publish %s reached %d queues", id, n)
		default:
			failed++
			pubErr.Store(err.Error())
		}
	}
	for p, pc := range []struct {
		b        *Backend
		exchange string
		batch    int // > 0: PublishBatch of that many messages
	}{{pub, "", 0}, {pub, "ex", 0}, {waitPub, "", 0}, {waitPub, "ex", 0}, {pub, "ex", 4}} {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for i := 0; ctx.Err() == nil; i++ {
				ids := []string{fmt.Sprintf("p%d-%d", p, i)}
				if pc.batch > 0 {
					ids = ids[:0]
					for k := range pc.batch {
						ids = append(ids, fmt.Sprintf("p%d-%d.%d", p, i, k))
					}
				}
				mu.Lock()
				for _, id := range ids {
					attempted[id] = true
				}
				mu.Unlock()
				if pc.batch == 0 {
					n, err := pc.b.Publish(bg, pc.exchange, entity.Direct, "q", 0, faultEnvelope(ids[0]))
					note(ids[0], n, err)
				} else {
					items := make([]transport.PublishItem, len(ids))
					for k, id := range ids {
						items[k] = transport.PublishItem{Exchange: pc.exchange, Type: entity.Direct, RoutingKey: "q", Envelope: faultEnvelope(id)}
					}
					ns, errs := pc.b.PublishBatch(bg, items)
					for k, id := range ids {
						note(id, ns[k], errs[k])
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	// The consumers ack each message 1.2 s after taking it (so the
	// unacked records are never empty and move with the slot), and pause
	// while hold is set (so the queue's list holds a backlog when the
	// migration starts).
	var hold atomic.Bool
	var acks sync.WaitGroup
	ack := func(tag string) {
		defer acks.Done()
		time.Sleep(1200 * time.Millisecond)
		for err := cons.Ack(bg, tag); err != nil; err = cons.Ack(bg, tag) {
			errSample.Store("ack: " + err.Error())
			ackErrs.Add(1) // retried until it lands: an unacked record would be restored later
			time.Sleep(20 * time.Millisecond)
		}
	}
	cctx, stopConsumers := context.WithCancel(bg)
	var consWG sync.WaitGroup
	for range 2 {
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			for cctx.Err() == nil {
				if hold.Load() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				d, err := transporttest.FetchOne(cctx, cons, []string{"q"}, true, 200*time.Millisecond)
				if errors.Is(err, transport.ErrEmpty) || cctx.Err() != nil {
					continue
				}
				if err != nil {
					takeErrs.Add(1)
					errSample.Store("take: " + err.Error())
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var env struct {
					Properties struct {
						DeliveryTag string `json:"delivery_tag"`
					} `json:"properties"`
				}
				if err := json.Unmarshal(d.Envelope, &env); err != nil {
					t.Errorf("undecodable delivery %q: %v", d.Envelope, err)
					continue
				}
				mu.Lock()
				delivered[env.Properties.DeliveryTag]++
				mu.Unlock()
				acks.Add(1)
				go ack(env.Properties.DeliveryTag)
			}
		}()
	}

	cli := func(port int, args ...string) string {
		t.Helper()
		out, err := c.CLI(port, args...)
		if err != nil || strings.HasPrefix(out, "ERR") || strings.HasPrefix(out, "(error)") {
			t.Fatalf("redis-cli -p %d %v: %v: %s", port, args, err, out)
		}
		return out
	}
	count := func() (moved, ask, try int64) { return hooks.moved.Load(), hooks.ask.Load(), hooks.tryAgain.Load() }

	// Warm up until messages flow and unacked records exist (slow under
	// -race), then let a backlog build.
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n, d := len(confirmed), len(delivered)
		mu.Unlock()
		if u, _ := consClient.HLen(bg, tag+"unacked").Result(); n >= 300 && d >= 100 && u > 0 && time.Since(start) >= time.Second {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("warm-up: %d confirmed, %d delivered after 15 s", n, d)
		}
	}
	mu.Lock()
	before := len(confirmed)
	mu.Unlock()
	m0, a0, t0 := count()
	hold.Store(true)
	time.Sleep(300 * time.Millisecond)

	// The migration, as redis-cli --cluster reshard runs it
	// (clusterManagerMoveSlot), one key per step and slowly.
	migStart := time.Now()
	cli(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	cli(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	hold.Store(false)
	var order []string
	migrate := func(key string) {
		out, err := c.CLI(src, "MIGRATE", "127.0.0.1", strconv.Itoa(dst), "", "0", "5000", "KEYS", key)
		if err != nil || (out != "OK" && out != "NOKEY") {
			t.Errorf("MIGRATE %q: %v: %s (a key the transport wrote on both nodes during the migration)", key, err, out)
			return
		}
		if out == "OK" {
			order = append(order, key)
		}
	}
	bindKey, queueKey := tag+"_kombu.binding.ex", tag+"q"
	migrate(bindKey)
	time.Sleep(100 * time.Millisecond)
	migrate(tag + "unacked_index") // apart from unacked: an Ack's MULTI touches both
	time.Sleep(100 * time.Millisecond)
	migrate(tag + "unacked")
	time.Sleep(100 * time.Millisecond)
	for step := 0; step < 200; step++ {
		out := cli(src, "CLUSTER", "GETKEYSINSLOT", slot, "2")
		var keys []string
		for _, k := range strings.Split(out, "\n") {
			if k = strings.TrimSpace(k); k != "" && k != queueKey {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			migrate(k)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	migrate(queueKey)
	for time.Since(migStart) < 2500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	if out := cli(src, "CLUSTER", "GETKEYSINSLOT", slot, "100"); out != "" {
		migrate(queueKey) // a queue list recreated meanwhile would fail here
		for _, k := range strings.Fields(out) {
			migrate(k)
		}
	}
	m1, a1, t1 := count()
	// Assign the slot: the target first, then the source, then the others
	// (redis-cli's order: the target stops answering ASK-only, the source
	// starts answering MOVED).
	cli(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	cli(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for _, m := range masters {
		if m != src && m != dst {
			cli(m, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		}
	}
	migDur := time.Since(migStart)
	time.Sleep(1500 * time.Millisecond)
	stopProducers()
	prod.Wait()
	m2, a2, t2 := count()

	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		return undelivered(confirmed, delivered)
	}
	for deadline := time.Now().Add(15 * time.Second); missing() > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stopConsumers()
	consWG.Wait()
	acks.Wait()

	now, err := c.MasterOf(tag)
	if err != nil || now != dst {
		t.Errorf("after the reshard the tag's slot is served by %d, %v; want %d", now, err, dst)
	}
	if out := cli(src, "CLUSTER", "COUNTKEYSINSLOT", slot); out != "0" {
		t.Errorf("the source still holds %s keys of the slot", out)
	}

	mu.Lock()
	defer mu.Unlock()
	dups, unknown, miss, lostFailed := tally(attempted, confirmed, delivered)
	receipts := 0
	var named []string
	for _, k := range order {
		if strings.HasPrefix(k, tag+"kombu-go.get.") {
			receipts++
		} else {
			named = append(named, k)
		}
	}
	t.Logf("reshard: slot %s from %d to %d; migration in progress %v; keys moved in order %q and %d take receipts", slot, src, dst, migDur.Round(time.Millisecond), named, receipts)
	t.Logf("replies seen by the clients: %s", &hooks)
	t.Logf("  before the migration MOVED %d ASK %d TRYAGAIN %d; during it +%d +%d +%d; after the slot was assigned +%d +%d +%d",
		m0, a0, t0, m1-m0, a1-a0, t1-t0, m2-m1, a2-a1, t2-t1)
	t.Logf("published %d: confirmed %d (%d before the migration), failed %d (last error: %v)",
		len(attempted), len(confirmed), before, failed, pubErr.Load())
	t.Logf("delivered %d distinct, %d duplicates, %d never published; confirmed but not delivered %d; failed and not delivered %d; take errors %d, ack errors %d; last take or ack error %v",
		len(delivered), dups, unknown, miss, lostFailed, takeErrs.Load(), ackErrs.Load(), errSample.Load())
	if miss > 0 {
		t.Errorf("%d confirmed publishes were lost", miss)
	}
	if unknown > 0 {
		t.Errorf("%d deliveries were never published", unknown)
	}
	if dups > 0 {
		t.Errorf("%d duplicate deliveries (no restore ran, and a retried take returns its receipt's messages)", dups)
	}
	if before == 0 || len(confirmed) == before {
		t.Errorf("confirmed publishes before the migration %d, in all %d: the producers did not run across it", before, len(confirmed))
	}
	if failed > 0 || takeErrs.Load() > 0 || ackErrs.Load() > 0 {
		t.Errorf("errors returned: %d publishes, %d takes, %d acks; the migration should only delay them", failed, takeErrs.Load(), ackErrs.Load())
	}
	for _, k := range []string{bindKey, tag + "unacked_index", tag + "unacked", queueKey} {
		if !slices.Contains(order, k) {
			t.Errorf("%q was not moved by MIGRATE: the migration did not move the busy keys it is meant to test", k)
		}
	}
	if m2 == 0 || a2 == 0 || t2 == 0 {
		t.Errorf("MOVED %d, ASK %d, TRYAGAIN %d: the migration did not meet the traffic it is meant to test", m2, a2, t2)
	}
	if n, err := cons.Size(bg, "q"); err != nil || n != 0 {
		t.Errorf("queue holds %d, %v after the drain", n, err)
	}
	if n, err := consClient.HLen(bg, tag+"unacked").Result(); err != nil || n != 0 {
		t.Errorf("unacked holds %d, %v after the drain", n, err)
	}
}

// argsHook records the arguments of every EVAL and EVALSHA a client sends.
type argsHook struct {
	mu    sync.Mutex
	evals [][]any
}

func (h *argsHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *argsHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.record(cmd)
		return next(ctx, cmd)
	}
}

func (h *argsHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, c := range cmds {
			h.record(c)
		}
		return next(ctx, cmds)
	}
}

func (h *argsHook) record(cmd goredis.Cmder) {
	if n := cmd.Name(); n == "eval" || n == "evalsha" {
		h.mu.Lock()
		h.evals = append(h.evals, slices.Clone(cmd.Args()))
		h.mu.Unlock()
	}
}

// TestClusterSlotGuard proves, on miniredis, that with a hash tag both
// publish scripts (Publish's publish.lua, PublishBatch's
// publish_batch.lua) declare the slot guard as their second key, so that
// a cluster answers TRYAGAIN rather than run them while the tag's slot
// migrates (TestClusterReshard shows what happens without it); that
// without a hash tag they declare the binding key alone; and that the
// messages still arrive and the guard key is never written.
func TestClusterSlotGuard(t *testing.T) {
	for _, tc := range []struct {
		tag, guard string
	}{{"kombu", "{kombu}kombu-go.slot-guard"}, {"", ""}} {
		e := newMiniEnv(t)
		var h argsHook
		e.client.AddHook(&h)
		b := e.backend(WithHashTag(tc.tag))
		if err := b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "q", Queue: "q"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(bg, "ex", entity.Direct, "q", 0, faultEnvelope("a")); err != nil {
			t.Fatal(err)
		}
		_, errs := b.PublishBatch(bg, []transport.PublishItem{{Exchange: "ex", Type: entity.Direct, RoutingKey: "q", Envelope: faultEnvelope("b")}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		if len(h.evals) < 2 {
			t.Fatalf("tag %q: %d script calls recorded, want 2", tc.tag, len(h.evals))
		}
		for _, a := range h.evals {
			bind := fmt.Sprint(a[3])
			if !strings.HasSuffix(bind, "_kombu.binding.ex") {
				t.Errorf("tag %q: first key %q, want the binding key", tc.tag, bind)
			}
			switch n := fmt.Sprint(a[2]); {
			case tc.guard == "" && n != "1":
				t.Errorf("no tag: %s keys declared, want 1 (%.80v)", n, a)
			case tc.guard != "" && (n != "2" || argText(a[4]) != tc.guard):
				t.Errorf("tag %q: keys %s, second %q; want 2, the guard %q", tc.tag, n, argText(a[4]), tc.guard)
			}
		}
		if n, err := b.Size(bg, "q"); err != nil || n != 2 {
			t.Errorf("tag %q: queue holds %d, %v; want 2", tc.tag, n, err)
		}
		if tc.guard != "" && e.mr.Exists(tc.guard) {
			t.Errorf("the slot guard %q was written", tc.guard)
		}
	}
}

// argText is a command argument as go-redis writes it (runPublish passes
// some as pointers).
func argText(v any) string {
	if p, ok := v.(*string); ok {
		return *p
	}
	return fmt.Sprint(v)
}

// TestMovingTail proves which failed batches PublishBatch sends again
// while a slot migrates: only a tail of messages that all failed with
// TRYAGAIN, ASK or MOVED (none written, none written after them), so the
// batch's order holds; a written message after a failed one, or another
// error, returns the errors as they are.
func TestMovingTail(t *testing.T) {
	try := goredisError("TRYAGAIN Multiple keys request during rehashing of slot")
	ask := goredisError("ASK 8799 127.0.0.1:7001")
	moved := goredisError("MOVED 8799 127.0.0.1:7001")
	other := errors.New("i/o timeout")
	for _, tc := range []struct {
		errs []error
		want int
	}{
		{[]error{nil, nil}, -1},
		{[]error{try, try}, 0},
		{[]error{nil, ask, moved}, 1},
		{[]error{nil, nil, try}, 2},
		{[]error{try, nil}, -1},
		{[]error{nil, try, other}, -1},
		{[]error{other, try}, -1},
		{[]error{fmt.Errorf("kombu: redis: publish: %w", try)}, 0},
	} {
		if got := movingTail(tc.errs); got != tc.want {
			t.Errorf("movingTail(%v) = %d, want %d", tc.errs, got, tc.want)
		}
	}
}
