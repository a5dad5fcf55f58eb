package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
)

// migrateSlot moves slot from the master on port from to the master on
// port to, the way redis-cli --cluster reshard does it for one slot:
// IMPORTING on the target, MIGRATING on the source, MIGRATE of the slot's
// keys one at a time (pausing 100 ms after each, so the clients meet the
// slot half-moved: ASK redirections, TRYAGAIN for scripts whose keys are
// split), then SETSLOT NODE on every master. It returns how many keys it
// moved.
func migrateSlot(t *testing.T, c *testenv.Cluster, masters []int, slot int64, from, to int) int {
	t.Helper()
	node := func(port int) *goredis.Client {
		return goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Protocol: 2})
	}
	src, dst := node(from), node(to)
	defer src.Close()
	defer dst.Close()
	srcID, err := src.Do(bg, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.Do(bg, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Do(bg, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := src.Do(bg, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for {
		keys, err := src.ClusterGetKeysInSlot(bg, int(slot), 1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(bg, args...).Err(); err != nil && !strings.Contains(err.Error(), "NOKEY") {
			t.Fatalf("MIGRATE %v: %v", keys, err)
		}
		moved += len(keys)
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range masters {
		n := node(p)
		if err := n.Do(bg, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
			t.Fatalf("SETSLOT NODE on %d: %v", p, err)
		}
		_ = n.Close()
	}
	return moved
}

// TestShardedReshard moves the slot of a busy queue from its master to
// another one while two producers publish to it (and to a queue on a third
// master) and two consumers take from both with acks, in the sharded
// layout; the slot's keys (the queue's lists, its unacked records, its
// receipts) move a few at a time, so takes, acks and publishes meet the
// slot half-moved (ASK redirections and TRYAGAIN replies).
// Proves: every publish that returned nil is delivered, nothing is
// delivered that was not published, the busy queue is served on its new
// master afterwards, and no unacked record is left behind. Duplicates, the
// errors the callers saw and the TRYAGAIN replies the backend retried by
// itself (the take's receipt makes a retry safe) are counted in the
// test's output.
func TestShardedReshard(t *testing.T) {
	c := startCluster(t)
	masters := clusterMasters(t, c)
	queues, owner := spreadQueues(t, c, masters, "rs.", 1)
	busy, other := queues[0], queues[1]
	from, to := owner[busy], owner[queues[2]]
	raw := c.URL() + "?cluster_layout=sharded"
	pub, err := Open(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	retries := &countingHandler{}
	cons, err := Open(bg, raw, WithLogger(slog.New(retries)))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	route := func(_ context.Context, _, rk string) ([]string, error) { return []string{rk}, nil }
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(bg, busy).Result()
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu                sync.Mutex
		published         = map[string]bool{}
		attempted         = map[string]bool{}
		delivered         = map[string]int{}
		perQueue          = map[string]int{}
		pubErrs, takeErrs atomic.Int64
		firstError        atomic.Value
	)
	ctx, stopProducers := context.WithCancel(bg)
	var prod sync.WaitGroup
	for p := range 2 {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for i := 0; ctx.Err() == nil; i++ {
				q := busy
				if i%4 == 3 {
					q = other
				}
				id := fmt.Sprintf("p%d-%d", p, i)
				mu.Lock()
				attempted[id] = true
				mu.Unlock()
				if _, err := pub.Publish(bg, "", entity.Direct, q, 0, shardEnvelope(id, q)); err != nil {
					pubErrs.Add(1)
					firstError.CompareAndSwap(nil, err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				published[id] = true
				mu.Unlock()
			}
		}()
	}
	cctx, stopConsumers := context.WithCancel(bg)
	var consWG sync.WaitGroup
	for range 2 {
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			for cctx.Err() == nil {
				ds, err := shardFetch(cctx, cons, transport.FetchRequest{Queues: []string{busy, other}, Ack: true, Max: 8, Rotate: true})
				if errors.Is(err, transport.ErrEmpty) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					takeErrs.Add(1)
					firstError.CompareAndSwap(nil, err.Error())
					time.Sleep(10 * time.Millisecond)
				}
				var tags []string
				mu.Lock()
				for _, d := range ds {
					tag := deliveryTag(d.Envelope)
					delivered[tag]++
					perQueue[d.Queue]++
					tags = append(tags, tag)
				}
				mu.Unlock()
				for len(tags) > 0 && cctx.Err() == nil && shardAckTags(bg, cons, tags...) != nil {
					time.Sleep(20 * time.Millisecond) // retried until it lands
				}
				time.Sleep(2 * time.Millisecond) // slower than the producers: a backlog
			}
		}()
	}

	time.Sleep(time.Second)
	start := time.Now()
	moved := migrateSlot(t, c, masters, slot, from, to)
	took := time.Since(start)
	if m, err := c.MasterOf("{" + busy + "}"); err != nil || m != to {
		t.Fatalf("after the move %s's slot is on %d, %v; want %d", busy, m, err, to)
	}
	mu.Lock()
	atMove := perQueue[busy]
	mu.Unlock()
	time.Sleep(time.Second)
	stopProducers()
	prod.Wait()

	deadline := time.Now().Add(20 * time.Second)
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		return undelivered(published, delivered)
	}
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		_, _ = cons.RestoreExpired(bg, time.Now().Add(-2*time.Second), route)
	}
	stopConsumers()
	consWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	dups, unknown, miss, _ := tally(attempted, published, delivered)
	first, _ := firstError.Load().(string)
	t.Logf("slot %d of %s moved from master %d to %d: %d keys in %v", slot, busy, from, to, moved, took.Round(time.Millisecond))
	t.Logf("published %d (attempted %d, %d publish errors); delivered %d distinct (per queue %v, %d from %s before the move ended), %d duplicates, %d never published, %d published but not delivered; take errors %d; first error: %q; takes and acks retried after %d errors (%v)",
		len(published), len(attempted), pubErrs.Load(), len(delivered), perQueue, atMove, busy, dups, unknown, miss, takeErrs.Load(), first, retries.n.Load(), retries.errors())
	if miss > 0 {
		t.Errorf("%d published messages were lost", miss)
	}
	if unknown > 0 {
		t.Errorf("%d deliveries were never published", unknown)
	}
	if moved == 0 {
		t.Errorf("the slot had no keys to move: the queue was not busy")
	}
	if perQueue[busy] <= atMove {
		t.Errorf("nothing taken from %s on its new master", busy)
	}
	if n, _, err := cons.Unacked(bg); err != nil || n != 0 {
		t.Errorf("unacked records left: %d, %v", n, err)
	}
}

// countingHandler counts the backend's retry logs and keeps the first
// words of their errors.
type countingHandler struct {
	n    atomic.Int64
	mu   sync.Mutex
	seen map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "retrying") {
		return nil
	}
	h.n.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			msg := a.Value.String()
			if i := strings.Index(msg, "redis: "); i >= 0 {
				msg = msg[i+len("redis: "):]
			}
			word, _, _ := strings.Cut(msg, " ")
			h.mu.Lock()
			if h.seen == nil {
				h.seen = map[string]int{}
			}
			h.seen[word]++
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) errors() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.seen)
}
