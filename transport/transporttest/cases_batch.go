package transporttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Fetch of many messages, Ack of many tags, and the consumer features
// built on them: batched fetches, coalesced acks, deferred acks.

// recordLeft reports whether the backend still holds an unacked record for
// tag: Restore of a live record puts the message back at the front of its
// queue, so the queue's size tells. What came back is taken again (from
// the front), leaving the queue as it was; nothing else may take from the
// queue meanwhile.
func (e *env) recordLeft(queue, tag string) bool {
	e.t.Helper()
	before := e.size(queue)
	if err := e.backend.Restore(e.ctx, tag, false, e.tr.Route); err != nil {
		e.t.Fatalf("Restore(%s): %v", tag, err)
	}
	n := e.size(queue) - before
	for range n {
		e.take(queue)
	}
	return n > 0
}

// testFetchBatch proves Fetch with Max n takes exactly what n successive
// one-message Fetches take, in the same order (step-major; the queue order
// fixed, or rotated after each take), never returns more than n, returns
// ErrEmpty when nothing waits, and records each message it takes with
// acks (a Restore brings it back) and none without.
func (s *suite) testFetchBatch(t *testing.T) {
	e := s.parallelEnv(t)
	fill := func(qs []string) {
		for i := range 4 {
			for j, q := range qs {
				for _, p := range []int{0, 4, 9} {
					if j == 1 && p == 0 && i > 0 {
						continue // the second queue runs dry early in step 0
					}
					e.publish("", q, fmt.Sprintf("%d-%d-%d", j, p, i), p, 1)
				}
			}
		}
	}
	for _, rotate := range []bool{false, true} {
		for _, n := range []int{1, 3, 50} {
			single := []string{name("q"), name("q"), name("q")}
			batched := []string{name("q"), name("q"), name("q")}
			fill(single)
			fill(batched)
			var want, got []string
			order := slices.Clone(single)
			for {
				d, err := e.get(order, false, 0)
				if errors.Is(err, transport.ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				want = append(want, fmt.Sprintf("%d:%s", slices.Index(single, d.Queue), headerID(t, d)))
				if rotate {
					rotateOrder(order, d.Queue)
				}
			}
			order = slices.Clone(batched)
			for {
				ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: order, Max: n, Rotate: rotate}, nil)
				if errors.Is(err, transport.ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if len(ds) == 0 || len(ds) > n {
					t.Fatalf("Fetch(%d) returned %d messages", n, len(ds))
				}
				for _, d := range ds {
					got = append(got, fmt.Sprintf("%d:%s", slices.Index(batched, d.Queue), headerID(t, d)))
					if rotate {
						rotateOrder(order, d.Queue)
					}
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("rotate %v, n %d: Fetch took\n%v\nsuccessive Gets took\n%v", rotate, n, got, want)
			}
			ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: batched, Ack: true, Max: n, Rotate: rotate}, nil)
			if !errors.Is(err, transport.ErrEmpty) || len(ds) != 0 {
				t.Errorf("Fetch on empty queues = %d messages, %v; want ErrEmpty", len(ds), err)
			}
		}
	}
	q := name("q")
	e.send(q, "r1", "r2", "r3")
	ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Max: 10}, nil)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Fetch = %d messages, %v", len(ds), err)
	}
	for _, d := range ds {
		if !e.recordLeft(q, tagOf(t, d)) {
			t.Errorf("Fetch with acks left no unacked record for %s", headerID(t, d))
		}
	}
	// Without acks nothing is recorded.
	e.send(q, "n1")
	ds, err = e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q}, Max: 10}, nil)
	if err != nil || len(ds) != 1 {
		t.Fatalf("no-ack Fetch = %d messages, %v", len(ds), err)
	}
	if e.recordLeft(q, tagOf(t, ds[0])) {
		t.Errorf("no-ack Fetch left an unacked record")
	}
}

// testFetchBatchMalformed proves a malformed envelope ends a batch: the
// messages before it are returned (and recorded), it is reported as a
// *MalformedError and kept, and the messages after it stay queued.
func (s *suite) testFetchBatchMalformed(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	bad := []byte("not json " + name("bad"))
	e.send(q, "g1")
	if err := e.backend.Put(e.ctx, q, 0, bad); err != nil {
		t.Fatal(err)
	}
	e.send(q, "g2")
	ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Max: 10}, nil)
	var mal *transport.MalformedError
	if !errors.As(err, &mal) {
		t.Fatalf("Fetch error = %v, want a *MalformedError", err)
	}
	if len(ds) != 1 || headerID(t, ds[0]) != "g1" {
		t.Fatalf("Fetch returned %d messages before the malformed one, want [g1]", len(ds))
	}
	errs := &errLog{}
	errs.add(err)
	e.kept(errs, bad, q)
	if got := e.drain(q); !slices.Equal(got, []string{"g2"}) {
		t.Errorf("queue after the batch = %v, want [g2]", got)
	}
	if !e.recordLeft(q, tagOf(t, ds[0])) {
		t.Errorf("g1 was not recorded")
	}
}

// testAckMany proves Ack of many tags deletes the records of exactly
// the tags it is given (unknown tags are fine), and FetchRequest.Settle
// does the same within a fetch, also when the fetch waits and finds
// nothing.
func (s *suite) testAckMany(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	e.send(q, "a0", "a1", "a2", "a3")
	var tags []string
	for range 4 {
		d, err := e.get([]string{q}, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, tagOf(t, d))
	}
	if err := e.backend.Ack(e.ctx, tags[0], tags[2], tags[3], name("unknown")); err != nil {
		t.Fatalf("Ack of many: %v", err)
	}
	if err := e.backend.Ack(e.ctx); err != nil {
		t.Fatalf("Ack of none: %v", err)
	}
	for i, want := range []bool{false, true, false, false} {
		if got := e.recordLeft(q, tags[i]); got != want {
			t.Errorf("a%d: record left %v, want %v", i, got, want)
		}
	}

	// Settle: acks riding a fetch, applied before the take and also when
	// nothing is taken.
	e.send(q, "s0", "s1")
	var stags []string
	for range 2 {
		d, err := e.get([]string{q}, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		stags = append(stags, tagOf(t, d))
	}
	e.send(q, "s2")
	ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Max: 5, Settle: stags[:1]}, nil)
	if err != nil || len(ds) != 1 || headerID(t, ds[0]) != "s2" {
		t.Fatalf("Fetch with Settle = %d messages, %v", len(ds), err)
	}
	if _, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Max: 5, Settle: []string{stags[1], tagOf(t, ds[0])}, Wait: s.f.PollingInterval / 2}, nil); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("Fetch on an empty queue = %v, want ErrEmpty", err)
	}
	for i, tag := range append(stags, tagOf(t, ds[0])) {
		if e.recordLeft(q, tag) {
			t.Errorf("s%d: record left after Settle", i)
		}
	}
}

// testBatchedConsume proves a consumer with a large prefetch and many
// handlers (batched fetches, coalesced acks where the backend allows)
// acks every message exactly once, leaves no record, and keeps the
// prefetch limit.
func (s *suite) testBatchedConsume(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	const total = 300
	ids := seq("m", total)
	for _, id := range ids {
		e.publish("", q, id, 0, 1)
	}
	var mu sync.Mutex
	count := map[string]int{}
	var tags []string
	var inFlight, maxInFlight atomic.Int64
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 40, Concurrency: 16, BatchSize: 25},
		func(ctx context.Context, m *entity.Message) {
			n := inFlight.Add(1)
			for {
				old := maxInFlight.Load()
				if n <= old || maxInFlight.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			if err := m.Ack(ctx); err != nil {
				t.Errorf("Ack(%s): %v", idOf(m), err)
				return
			}
			mu.Lock()
			count[idOf(m)]++
			tags = append(tags, m.DeliveryTag)
			mu.Unlock()
		})
	e.waitFor("300 acks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tags) >= total
	})
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("%s acked %d times", id, count[id])
		}
	}
	if m := maxInFlight.Load(); m > 16 {
		t.Errorf("%d handlers ran at once, want at most 16", m)
	}
	for _, tag := range tags[:20] {
		if e.recordLeft(q, tag) {
			t.Errorf("an acked message's record is left (tag %s)", tag)
		}
	}
}

// testDeferredAcks proves DeferredAcks: Ack returns before the ack is sent;
// queued acks are sent before the consumer's next fetch (with a flush
// interval far too long to matter) and when it stops, so nothing acked is
// left unacked or delivered again.
func (s *suite) testDeferredAcks(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	e.send(q, "d1", "d2", "d3")
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 1, DeferredAcks: time.Hour}, nil)
	m1 := c.next()
	e.ack(m1)
	// Prefetch 1: the next fetch comes after the ack, and sends it first.
	m2 := c.next()
	if idOf(m1) != "d1" || idOf(m2) != "d2" {
		t.Fatalf("delivered %s, %s; want d1, d2", idOf(m1), idOf(m2))
	}
	e.waitFor("the first ack to reach the backend", func() bool {
		return !e.recordLeft(q, m1.DeliveryTag)
	})
	e.ack(m2)
	m3 := c.next()
	e.ack(m3)
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	for _, m := range []*entity.Message{m2, m3} {
		if e.recordLeft(q, m.DeliveryTag) {
			t.Errorf("%s: acked, but its record is left after the consumer stopped", idOf(m))
		}
	}
	if got := e.drain(q); len(got) != 0 {
		t.Errorf("queue holds %v after everything was acked", got)
	}
	for _, err := range c.errs.all() {
		t.Errorf("consumer error: %v", err)
	}
}

func headerID(t *testing.T, d transport.Delivery) string {
	t.Helper()
	env, err := envelope.Parse(d.Envelope)
	if err != nil {
		t.Fatalf("ParseEnvelope: %v", err)
	}
	id, _ := env.Headers["id"].(string)
	return id
}

func tagOf(t *testing.T, d transport.Delivery) string {
	t.Helper()
	tag, ok := envelope.ExtractTag(d.Envelope)
	if !ok {
		t.Fatalf("no delivery tag in %q", d.Envelope)
	}
	return tag
}

// rotateOrder moves q to the end of order, as the consumer loop does for
// round robin.
func rotateOrder(order []string, q string) {
	if i := slices.Index(order, q); i >= 0 {
		copy(order[i:], order[i+1:])
		order[len(order)-1] = q
	}
}
