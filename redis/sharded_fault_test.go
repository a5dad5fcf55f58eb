package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
)

// shardEnvelope is a minimal Kombu envelope whose delivery tag is id,
// published to the default exchange with routing key q.
func shardEnvelope(id, q string) []byte {
	return fmt.Appendf(nil, `{"body":%q,"content-encoding":"utf-8","content-type":"text/plain","headers":{},"properties":{"delivery_tag":%q,"delivery_info":{"exchange":"","routing_key":%q},"priority":0,"body_encoding":"base64","delivery_mode":2}}`, id, id, q)
}

// TestShardedFailover SIGKILLs one master of a local 3+3 cluster while two
// producers (publish_wait_replicas=1) publish round robin to three queues
// whose slots are on the three masters and two consumers take from all
// three (manual acks), in the sharded layout; the replica is promoted, the
// killed node comes back as a replica, and the consumers drain the queues
// (with a visibility sweep for messages whose take or ack reply was lost).
// Proves: every publish confirmed by a replica is delivered; nothing is
// delivered that was not published; the queues on the other masters are
// served throughout, and the killed master's queue resumes on the
// promoted replica before the killed node returns, its publishes
// returning ErrNotReplicated until then (none confirmed). Duplicates (at-least-once) and unconfirmed publishes
// are counted in the test's output, not failed.
func TestShardedFailover(t *testing.T) {
	c := startCluster(t)
	masters := clusterMasters(t, c)
	queues, owner := spreadQueues(t, c, masters, "fo.", 1)
	victim := owner[queues[0]]
	raw := c.URL() + "?cluster_layout=sharded&publish_wait_replicas=1&publish_wait_timeout=0.5&socket_timeout=2&socket_connect_timeout=0.5"
	pub, err := Open(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cons, err := Open(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	route := func(_ context.Context, _, rk string) ([]string, error) { return []string{rk}, nil }

	var (
		mu          sync.Mutex
		attempted   = map[string]bool{}
		confirmed   = map[string]bool{}
		unconfirmed int
		failed      int
		delivered   = map[string]int{}
		perQueue    = map[string]int{}
		// per queue: confirmed, and written on the master only
		confirmedIn   = map[string]int{}
		unconfirmedIn = map[string]int{}
		takeErrs      atomic.Int64
	)
	ctx, stopProducers := context.WithCancel(bg)
	var prod sync.WaitGroup
	for p := range 2 {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for i := 0; ctx.Err() == nil; i++ {
				q := queues[i%len(queues)]
				id := fmt.Sprintf("p%d-%d", p, i)
				mu.Lock()
				attempted[id] = true
				mu.Unlock()
				_, err := pub.Publish(bg, "", entity.Direct, q, 0, shardEnvelope(id, q))
				mu.Lock()
				switch {
				case err == nil:
					confirmed[id] = true
					confirmedIn[q]++
				case errors.Is(err, ErrNotReplicated):
					unconfirmed++
					unconfirmedIn[q]++
				default:
					failed++
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, ErrNotReplicated) {
					time.Sleep(50 * time.Millisecond)
				}
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
				d, err := shardWait(cctx, cons, queues, 200*time.Millisecond)
				if errors.Is(err, transport.ErrEmpty) || cctx.Err() != nil {
					continue
				}
				if err != nil {
					takeErrs.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				tag := deliveryTag(d.Envelope)
				mu.Lock()
				delivered[tag]++
				perQueue[d.Queue]++
				mu.Unlock()
				for cctx.Err() == nil && shardAckTags(bg, cons, tag) != nil {
					time.Sleep(50 * time.Millisecond) // the ack is retried until it lands
				}
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	before := len(confirmed)
	mu.Unlock()
	killedAt := time.Now()
	c.Kill(victim)
	var promoted int
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		p, err := c.MasterOf("{" + queues[0] + "}")
		if err == nil && p != victim {
			promoted = p
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no replica promoted for %s's slot within 30 s (last: %d, %v)", queues[0], p, err)
		}
	}
	failover := time.Since(killedAt)
	// The promoted master has no replica until the killed node returns:
	// a publish to its queue must return ErrNotReplicated, none may be
	// confirmed. Waiting for one proves the producers found the promoted
	// master by themselves (the backend reloads the slot map after a
	// waiting write's connection error) and that their publishes to the
	// default exchange wait for a replica.
	awaitNotReplicated(t, queues[0], func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return confirmedIn[queues[0]], unconfirmedIn[queues[0]], failed
	})
	c.StartNode(victim)
	time.Sleep(2 * time.Second)
	stopProducers()
	prod.Wait()

	deadline := time.Now().Add(30 * time.Second)
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		return undelivered(confirmed, delivered)
	}
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		_, _ = cons.RestoreExpired(bg, time.Now().Add(-2*time.Second), route)
	}
	time.Sleep(500 * time.Millisecond)
	stopConsumers()
	consWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	dups, unknown, miss, _ := tally(attempted, confirmed, delivered)
	t.Logf("failover: master %d (queue %s) killed, replica %d promoted after %v", victim, queues[0], promoted, failover.Round(time.Millisecond))
	t.Logf("published %d: confirmed by a replica %d (%d before the kill), on the master only %d, failed %d",
		len(attempted), len(confirmed), before, unconfirmed, failed)
	t.Logf("delivered %d distinct (per queue %v), %d duplicates, %d never published; confirmed but not delivered %d; take errors %d",
		len(delivered), perQueue, dups, unknown, miss, takeErrs.Load())
	if miss > 0 {
		t.Errorf("%d confirmed publishes were lost", miss)
	}
	if unknown > 0 {
		t.Errorf("%d deliveries were never published", unknown)
	}
	if before == 0 || len(confirmed) == before {
		t.Errorf("confirmed publishes before the kill %d, in all %d: the producers did not run on both sides of the failover", before, len(confirmed))
	}
	for _, q := range queues {
		if perQueue[q] == 0 {
			t.Errorf("nothing delivered from %s", q)
		}
		if n, err := cons.Size(bg, q); err != nil || n != 0 {
			t.Errorf("queue %s holds %d, %v after the drain", q, n, err)
		}
	}
}
