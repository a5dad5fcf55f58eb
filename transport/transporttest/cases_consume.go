package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// testNoRoute proves a publish that matches no binding is dropped silently
// (Kombu), reported as a *NoRouteError when mandatory, and sent to the
// transport's dead-letter queue when one is configured, except for topic
// exchanges (Kombu's deadletter_queue rule).
func (s *suite) testNoRoute(t *testing.T) {
	e := s.parallelEnv(t)
	direct, topic := name("ex"), name("ex")
	e.declareExchange(direct, entity.Direct)
	e.declareExchange(topic, entity.Topic)
	q := name("q")
	e.bind(q, direct, "bound")
	e.bind(q, topic, "bound.#")

	for _, ex := range []string{direct, topic, name("undeclared")} {
		e.publish(ex, "nobody", "dropped", 0, 0)
		n, err := e.tr.Publish(e.ctx, ex, "nobody", message("mandatory", 0), true)
		var nr *transport.NoRouteError
		if n != 0 || !errors.As(err, &nr) || !errors.Is(err, transport.ErrNoRoute) || nr.Exchange != ex || nr.RoutingKey != "nobody" {
			t.Errorf("mandatory publish to %s with no route = %d, %v; want a *NoRouteError for it", ex, n, err)
		}
	}
	if n, err := e.tr.Publish(e.ctx, direct, "bound", message("routed", 0), true); n != 1 || err != nil {
		t.Errorf("mandatory publish with a route = %d, %v", n, err)
	}
	if got := e.drain(q); !slices.Equal(got, []string{"routed"}) {
		t.Errorf("bound queue holds %v, want [routed]", got)
	}

	// With a dead-letter queue: direct no-route goes there, topic does not.
	dlq := name("dlq")
	d := s.envOn(t, e.clock, s.newBackend(t, e.clock), func(o *virtual.Options) { o.DeadLetterQueue = dlq })
	d.declareExchange(direct, entity.Direct)
	d.declareExchange(topic, entity.Topic)
	d.bind(q, direct, "bound")
	d.publish(direct, "nobody", "to-dlq", 0, 1)
	d.publish(topic, "nobody", "dropped", 0, 0)
	d.publish(direct, "bound", "routed", 0, 1)
	if got := d.drain(dlq); !slices.Equal(got, []string{"to-dlq"}) {
		t.Errorf("dead-letter queue holds %v, want [to-dlq]", got)
	}
	if got := d.drain(q); !slices.Equal(got, []string{"routed"}) {
		t.Errorf("bound queue holds %v, want [routed]", got)
	}
}

// testPrefetch proves the prefetch limit: with Prefetch N and a handler
// that settles nothing, exactly N messages are delivered; each settlement
// lets exactly one more through; nothing is lost or duplicated.
func (s *suite) testPrefetch(t *testing.T) {
	for _, conc := range []int{1, 3} {
		t.Run(fmt.Sprintf("Concurrency%d", conc), func(t *testing.T) {
			t.Parallel()
			e := s.parallelEnv(t)
			q := name("q")
			all := seq("m", 10)
			e.send(q, all...)
			const n = 3
			c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: n, Concurrency: conc}, nil)
			delivered := map[string]int{}
			recv := func() *entity.Message {
				m := c.next()
				delivered[idOf(m)]++
				return m
			}
			var held []*entity.Message
			for range n {
				held = append(held, recv())
			}
			c.quiet("prefetch 3 with 3 unsettled")
			e.ack(held[0])
			held = append(held[1:], recv())
			c.quiet("prefetch 3 after one ack")
			if err := held[0].Reject(e.ctx); err != nil {
				t.Fatal(err)
			}
			held = append(held[1:], recv())
			c.quiet("prefetch 3 after one reject")
			for _, m := range held {
				e.ack(m)
			}
			for len(delivered) < len(all) {
				e.ack(recv())
			}
			c.quiet("everything delivered")
			if err := c.stop(); err != nil {
				t.Errorf("Consume returned %v after cancel", err)
			}
			for id, k := range delivered {
				if k != 1 {
					t.Errorf("%s delivered %d times", id, k)
				}
			}
			if n := e.size(q); n != 0 {
				t.Errorf("queue holds %d messages after everything was settled", n)
			}
		})
	}
}

// testRequeue proves Reject with requeue puts the message at the BACK of
// its queue (Kombu's LPUSH), in its own priority list, with the redelivered
// flags set and every other byte kept.
func (s *suite) testRequeue(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	e.publish("", q, "a", 0, 1)
	e.publish("", q, "b", 0, 1)
	e.publish("", q, "c", 1, 1)
	e.publish("", q, "x", 4, 1)
	e.publish("", q, "y", 4, 1)
	ch := e.channel()
	a, err := ch.Get(e.ctx, q, false, nil)
	if err != nil || idOf(a) != "a" {
		t.Fatalf("Get = %v, %v; want a", a, err)
	}
	want, err := envelope.MarkRedelivered(a.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Requeue(e.ctx); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	if a.State() != entity.Requeued {
		t.Errorf("state after Requeue = %v", a.State())
	}
	if err := a.Ack(e.ctx); !errors.Is(err, entity.ErrAlreadyAcknowledged) {
		t.Errorf("Ack after Requeue = %v, want ErrAlreadyAcknowledged", err)
	}
	// x, a priority-4 message, goes to the back of the step-3 list.
	for range 4 {
		m, err := ch.Get(e.ctx, q, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch idOf(m) {
		case "a":
			if string(m.Raw) != string(want) || !m.Redelivered || m.Headers["redelivered"] != true {
				t.Errorf("requeued message: redelivered %v, raw\n%s\nwant\n%s", m.Redelivered, m.Raw, want)
			}
			e.ack(m)
		case "x":
			if err := m.Requeue(e.ctx); err != nil {
				t.Fatal(err)
			}
		default:
			e.ack(m)
		}
	}
	if got := e.drain(q); !slices.Equal(got, []string{"y", "x*"}) {
		t.Errorf("after requeues the queue holds %v, want [y x*]", got)
	}
	if ch.Unacked() != 0 {
		t.Errorf("channel still tracks %d messages", ch.Unacked())
	}

	// The same through a consumer: m1 requeued once comes after m2 and m3.
	e.send(q, "m1", "m2", "m3")
	var got []string
	var mu sync.Mutex
	var once sync.Once
	done := make(chan struct{})
	e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 1}, func(ctx context.Context, m *entity.Message) {
		mu.Lock()
		got = append(got, ids([]*entity.Message{m})[0])
		n := len(got)
		mu.Unlock()
		if idOf(m) == "m1" && !m.Redelivered {
			if err := m.Requeue(ctx); err != nil {
				t.Errorf("Requeue: %v", err)
			}
			return
		}
		if err := m.Ack(ctx); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if n == 4 {
			once.Do(func() { close(done) })
		}
	})
	select {
	case <-done:
	case <-time.After(s.f.Timeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("consumer saw only %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"m1", "m2", "m3", "m1*"}; !slices.Equal(got, want) {
		t.Errorf("consumer order with a requeue = %v, want %v", got, want)
	}
}

// restoreScenario publishes ten messages to each of two queues, consumes
// with prefetch 4 and a handler that settles nothing, waits for 4
// deliveries, stops the consumer with stop, and checks that every message
// is back: the delivered ones at the FRONT of their queues in their
// original order, redelivered, followed by the rest, none lost or
// duplicated.
func (s *suite) restoreScenario(t *testing.T, stop func(e *env, ch *virtual.Channel, c *consumer) error, wantErr error) {
	e := s.parallelEnv(t)
	q1, q2 := name("q1"), name("q2")
	e.send(q1, seq("a", 10)...)
	e.send(q2, seq("b", 10)...)
	ch := e.channel()
	c := e.consume(ch, virtual.ConsumeOptions{Queues: []string{q1, q2}, Prefetch: 4, Concurrency: 2}, nil)
	held := c.nextN(4)
	c.quiet("prefetch 4")
	if got := ch.Unacked(); got != 4 {
		t.Errorf("Unacked = %d, want 4", got)
	}
	start := time.Now()
	if err := stop(e, ch, c); !errors.Is(err, wantErr) {
		t.Errorf("Consume returned %v, want %v", err, wantErr)
	}
	if d := time.Since(start); d > 2*s.f.PollingInterval+3*time.Second { // generous: a loaded CI machine once took 1.3 s
		t.Errorf("Consume took %v to return", d)
	}
	if got := ch.Unacked(); got != 0 {
		t.Errorf("Unacked after stop = %d", got)
	}
	// Held messages can no longer be settled: they are back in the queue.
	if err := held[0].Ack(e.ctx); err == nil {
		t.Errorf("Ack of a message restored at shutdown succeeded")
	}
	var fromQ1, fromQ2 []string
	for _, m := range held {
		if strings.HasPrefix(idOf(m), "a") {
			fromQ1 = append(fromQ1, idOf(m))
		} else {
			fromQ2 = append(fromQ2, idOf(m))
		}
	}
	byNumber := func(a, b string) int {
		var x, y int
		fmt.Sscanf(a[strings.LastIndexByte(a, '-')+1:], "%d", &x)
		fmt.Sscanf(b[strings.LastIndexByte(b, '-')+1:], "%d", &y)
		return x - y
	}
	// Restored in delivery order, which within a queue is FIFO order.
	slices.SortFunc(fromQ1, byNumber)
	slices.SortFunc(fromQ2, byNumber)
	check := func(q, prefix string, delivered []string) {
		t.Helper()
		want := star(delivered)
		for _, id := range seq(prefix, 10) {
			if !slices.Contains(delivered, id) {
				want = append(want, id)
			}
		}
		if got := e.drain(q); !slices.Equal(got, want) {
			t.Errorf("queue %s after restore = %v, want %v", prefix, got, want)
		}
	}
	check(q1, "a", fromQ1)
	check(q2, "b", fromQ2)
}

// testCloseRestores proves Channel.Close stops a running consumer and
// restores every unsettled message to the front of its queue in the
// original order (Kombu's restore_at_shutdown, without its reversal).
func (s *suite) testCloseRestores(t *testing.T) {
	s.restoreScenario(t, func(e *env, ch *virtual.Channel, c *consumer) error {
		if err := ch.Close(e.ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		return c.wait()
	}, transport.ErrClosed)
}

// testCancelRestores proves cancelling a consumer's context does the same
// as Channel.Close and makes Consume return nil.
func (s *suite) testCancelRestores(t *testing.T) {
	s.restoreScenario(t, func(e *env, ch *virtual.Channel, c *consumer) error {
		return c.stop()
	}, nil)
}

// testConcurrentConsumers proves four consumers on four channels,
// consuming 500 messages published concurrently, see every acked message
// exactly once.
func (s *suite) testConcurrentConsumers(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	const total = 500
	var pubs sync.WaitGroup
	for p := range 4 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range total / 4 {
				id := fmt.Sprintf("m-%d-%d", p, i)
				if _, err := e.tr.Publish(e.ctx, "", q, message(id, i%10), false); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	count := map[string]int{}
	var acked atomic.Int64
	var cons []*consumer
	for range 4 {
		cons = append(cons, e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 8, Concurrency: 2},
			func(ctx context.Context, m *entity.Message) {
				if err := m.Ack(ctx); err != nil {
					t.Errorf("Ack(%s): %v", idOf(m), err)
					return
				}
				mu.Lock()
				count[idOf(m)]++
				mu.Unlock()
				acked.Add(1)
			}))
	}
	pubs.Wait()
	e.waitFor("500 acks", func() bool { return acked.Load() >= total })
	for _, c := range cons {
		if err := c.stop(); err != nil {
			t.Errorf("Consume: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(count) != total || acked.Load() != total {
		t.Errorf("%d distinct messages acked in %d acks, want %d", len(count), acked.Load(), total)
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s acked %d times", id, n)
		}
	}
	if n := e.size(q); n != 0 {
		t.Errorf("queue holds %d messages", n)
	}
}

// testConcurrentClose proves Channel.Close racing with itself, with the
// consumer's cancellation and with acks of delivered messages is safe:
// each message ends up either acked (its Ack returned nil) or back in the
// queue, never both and never neither; and Transport.Close racing with
// itself is safe.
func (s *suite) testConcurrentClose(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	all := seq("m", 20)
	e.send(q, all...)
	ch := e.channel()
	c := e.consume(ch, virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 10, Concurrency: 4}, nil)
	held := c.nextN(10)

	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	start := make(chan struct{})
	for _, m := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if m.Ack(e.ctx) == nil {
				mu.Lock()
				acked[idOf(m)] = true
				mu.Unlock()
			}
		}()
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := ch.Close(e.ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		c.cancel()
	}()
	close(start)
	wg.Wait()
	if err := c.wait(); err != nil && !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Consume returned %v", err)
	}
	back := map[string]int{}
	for _, id := range e.drain(q) {
		back[strings.TrimSuffix(id, "*")]++
	}
	for _, id := range all {
		switch {
		case acked[id] && back[id] > 0:
			t.Errorf("%s was acked and is also back in the queue", id)
		case !acked[id] && back[id] != 1:
			t.Errorf("%s was not acked and is in the queue %d times", id, back[id])
		}
	}

	// Transport.Close racing with itself and with channel opens.
	e2 := s.parallelEnv(t)
	for range 3 {
		e2.channel()
	}
	var wg2 sync.WaitGroup
	for range 8 {
		wg2.Add(2)
		go func() { defer wg2.Done(); _ = e2.tr.Close(e2.ctx) }()
		go func() {
			defer wg2.Done()
			if ch, err := e2.tr.Channel(); err == nil {
				_ = ch.Close(e2.ctx)
			} else if !errors.Is(err, transport.ErrClosed) {
				t.Errorf("Channel on a closing transport: %v", err)
			}
		}()
	}
	wg2.Wait()
	if _, err := e2.tr.Channel(); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Channel after Close = %v, want ErrClosed", err)
	}
}

// testCancelIsPrompt proves a consumer waiting on an empty queue returns
// within two polling intervals (plus slack) of its context being
// cancelled.
func (s *suite) testCancelIsPrompt(t *testing.T) {
	e := s.parallelEnv(t)
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{name("q"), name("q")}}, nil)
	time.Sleep(s.f.PollingInterval / 2) // let it block; correctness does not depend on it
	start := time.Now()
	if err := c.stop(); err != nil {
		t.Errorf("Consume returned %v after cancel, want nil", err)
	}
	if d, limit := time.Since(start), 2*s.f.PollingInterval+500*time.Millisecond; d > limit {
		t.Errorf("Consume took %v to return after cancel, want < %v", d, limit)
	}
}

// testHandlerPanic proves a panicking handler does not kill the consumer:
// the panic is reported to OnError and the message is requeued, then
// redelivered.
func (s *suite) testHandlerPanic(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	e.send(q, "boom", "after")
	var got []string
	var mu sync.Mutex
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 1}, func(ctx context.Context, m *entity.Message) {
		mu.Lock()
		got = append(got, ids([]*entity.Message{m})[0])
		mu.Unlock()
		if idOf(m) == "boom" && !m.Redelivered {
			panic("handler exploded")
		}
		if err := m.Ack(ctx); err != nil {
			t.Errorf("Ack: %v", err)
		}
	})
	e.waitFor("three deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if want := []string{"boom", "after", "boom*"}; !slices.Equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
	}
	if !c.errs.any(func(err error) bool { return strings.Contains(err.Error(), "handler exploded") }) {
		t.Errorf("OnError did not receive the panic: %v", c.errs.all())
	}
	if n := e.size(q); n != 0 {
		t.Errorf("queue holds %d messages", n)
	}
}

// testGetEmpty proves a get on an empty queue is transport.ErrEmpty, not a
// failure, for the backend, Channel.Get and Channel.GetWait.
func (s *suite) testGetEmpty(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	for _, ack := range []bool{false, true} {
		if ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q, name("q")}, Ack: ack, Max: 3}, nil); !errors.Is(err, transport.ErrEmpty) || len(ds) != 0 {
			t.Errorf("backend Fetch(ack=%v) on empty queues = %d messages, %v; want ErrEmpty", ack, len(ds), err)
		}
	}
	ch := e.channel()
	if _, err := ch.Get(e.ctx, q, false, nil); !errors.Is(err, transport.ErrEmpty) {
		t.Errorf("Channel.Get on an empty queue = %v, want ErrEmpty", err)
	}
	if _, err := ch.GetWait(e.ctx, q, false, nil, s.f.PollingInterval); !errors.Is(err, transport.ErrEmpty) {
		t.Errorf("Channel.GetWait on an empty queue = %v, want ErrEmpty", err)
	}
	if ch.Unacked() != 0 {
		t.Errorf("empty gets left %d tracked messages", ch.Unacked())
	}
	e.send(q, "m")
	if m, err := ch.GetWait(e.ctx, q, false, nil, s.f.Timeout); err != nil || idOf(m) != "m" {
		t.Fatalf("GetWait = %v, %v", m, err)
	} else {
		e.ack(m)
	}
	if err := ch.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Get(e.ctx, q, false, nil); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Get on a closed channel = %v, want ErrClosed", err)
	}
}

// testSizePurgeDelete proves Size, Purge, QueueExists and DeleteQueue cover
// every priority list of a queue, that unacked messages are not counted,
// and that Transport.DeleteQueue removes the queue's bindings.
func (s *suite) testSizePurgeDelete(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	exists := func() bool {
		t.Helper()
		ok, err := e.backend.QueueExists(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if exists() || e.size(q) != 0 {
		t.Fatalf("fresh queue exists or has messages")
	}
	if _, err := e.tr.DeclareQueuePassive(e.ctx, q); !errors.Is(err, transport.ErrNotFound) {
		t.Errorf("passive declare of an empty queue = %v, want ErrNotFound", err)
	}
	for i, p := range []int{0, 3, 6, 9, 2, 5, 8, 12} {
		e.publish("", q, fmt.Sprint(i), p, 1)
	}
	if n := e.size(q); n != 8 {
		t.Errorf("Size = %d, want 8", n)
	}
	if n, err := e.tr.PurgeQueue(e.ctx, q); err != nil || n != 8 {
		t.Errorf("Purge = %d, %v; want 8", n, err)
	}
	if exists() || e.size(q) != 0 {
		t.Errorf("queue not empty after Purge")
	}
	if n, err := e.tr.PurgeQueue(e.ctx, q); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0", n, err)
	}

	// One message in the last step is enough to exist.
	e.publish("", q, "p9", 9, 1)
	if !exists() || e.size(q) != 1 {
		t.Errorf("queue with one priority-9 message: exists %v, size %d", exists(), e.size(q))
	}
	if info, err := e.tr.DeclareQueuePassive(e.ctx, q); err != nil || info.MessageCount != 1 {
		t.Errorf("passive declare = %+v, %v", info, err)
	}

	// Unacked messages are not counted, and purge leaves them alone.
	e.publish("", q, "p3", 3, 1)
	ch := e.channel()
	m, err := ch.Get(e.ctx, q, false, nil)
	if err != nil || idOf(m) != "p3" {
		t.Fatalf("Get = %v, %v", m, err)
	}
	if n := e.size(q); n != 1 {
		t.Errorf("Size with one unacked = %d, want 1", n)
	}
	if n, err := e.tr.PurgeQueue(e.ctx, q); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
	e.ack(m)

	// DeleteQueue removes every list and the bindings this process made.
	ex := name("ex")
	e.declareExchange(ex, entity.Direct)
	if _, err := e.tr.DeclareQueue(e.ctx, entity.Queue{Name: q, Exchange: entity.Exchange{Name: ex}, RoutingKey: "k"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{0, 3, 6, 9} {
		e.publish(ex, "k", fmt.Sprint(p), p, 1)
	}
	if err := e.tr.DeleteQueue(e.ctx, q, true); err != nil {
		t.Fatal(err)
	}
	if n := e.size(q); n != 4 {
		t.Errorf("DeleteQueue(ifEmpty) of a non-empty queue removed messages: size %d", n)
	}
	if err := e.tr.DeleteQueue(e.ctx, q, false); err != nil {
		t.Fatal(err)
	}
	if exists() || e.size(q) != 0 {
		t.Errorf("queue still has messages after DeleteQueue")
	}
	if rows, err := e.backend.Bindings(e.ctx, ex); err != nil || len(rows) != 0 {
		t.Errorf("bindings after DeleteQueue = %+v, %v", rows, err)
	}
	e.publish(ex, "k", "none", 0, 0)
}

// testFetchWait proves Fetch's wait: with FetchRequest.Wait it waits
// for a message and returns as soon as one arrives (taking up to Max of
// what then waits), returns ErrEmpty when the wait runs out, and returns
// promptly when its context is cancelled, without losing anything.
func (s *suite) testFetchWait(t *testing.T) {
	e := s.parallelEnv(t)
	q := name("q")
	start := time.Now()
	if _, err := e.get([]string{q}, true, s.f.PollingInterval); !errors.Is(err, transport.ErrEmpty) {
		t.Errorf("waiting Fetch on an empty queue = %v, want ErrEmpty", err)
	}
	if d := time.Since(start); d < s.f.PollingInterval*9/10 || d > s.f.PollingInterval+time.Second {
		t.Errorf("Fetch with Wait %v took %v", s.f.PollingInterval, d)
	}

	// A message put while waiting ends the wait.
	go func() {
		time.Sleep(s.f.PollingInterval)
		if err := e.backend.Put(context.WithoutCancel(e.ctx), q, 0, []byte(`{"body": "", "headers": {"id": "late"}, "properties": {"delivery_tag": "`+name("tag")+`"}}`)); err != nil {
			t.Errorf("Put: %v", err)
		}
	}()
	start = time.Now()
	d, err := e.get([]string{name("q"), q}, false, s.f.Timeout)
	if err != nil || d.Queue != q {
		t.Fatalf("waiting Fetch = %+v, %v", d, err)
	}
	if el := time.Since(start); el > s.f.Timeout/2 {
		t.Errorf("waiting Fetch returned %v after the message was put", el)
	}

	// A batch put while waiting: the wait ends with up to Max of it.
	q2 := name("q")
	putDone := make(chan struct{})
	go func() {
		defer close(putDone)
		time.Sleep(s.f.PollingInterval / 2)
		for i := range 3 {
			if err := e.backend.Put(context.WithoutCancel(e.ctx), q2, 0, []byte(fmt.Sprintf(`{"body": "", "headers": {"id": "b%d"}, "properties": {"delivery_tag": "%s"}}`, i, name("tag")))); err != nil {
				t.Errorf("Put: %v", err)
			}
		}
	}()
	ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: []string{q2}, Max: 2, Wait: s.f.Timeout}, nil)
	if err != nil || len(ds) < 1 || len(ds) > 2 || headerID(t, ds[0]) != "b0" {
		t.Fatalf("waiting Fetch of up to 2 = %d messages, %v", len(ds), err)
	}
	<-putDone
	for range 3 - len(ds) {
		if e.take(q2) == nil {
			t.Fatalf("a message of the batch is missing")
		}
	}

	// Cancellation ends the wait promptly, and the message put afterwards
	// is still there.
	ctx, cancel := context.WithCancel(e.ctx)
	go func() { time.Sleep(s.f.PollingInterval / 2); cancel() }()
	start = time.Now()
	if ds, err := e.backend.Fetch(ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Wait: s.f.Timeout}, nil); err == nil {
		t.Errorf("waiting Fetch after cancel returned messages: %+v", ds)
	}
	if el := time.Since(start); el > s.f.PollingInterval+time.Second {
		t.Errorf("waiting Fetch took %v to notice its context was cancelled", el)
	}
	e.send(q, "kept")
	if ds, err := e.backend.Fetch(ctx, transport.FetchRequest{Queues: []string{q}, Ack: true, Max: 5}, nil); !errors.Is(err, context.Canceled) || len(ds) != 0 {
		t.Errorf("Fetch with a done context = %d messages, %v; want none and context.Canceled", len(ds), err)
	}
	if got := e.drain(q); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("queue holds %v after a cancelled wait, want [kept]", got)
	}
}

// testInspector proves the optional Inspector capability reports what is
// there without changing it: list lengths per step, envelopes in delivery
// order, exchanges with bindings, unacked records with their time.
func (s *suite) testInspector(t *testing.T) {
	e := s.parallelEnv(t)
	in, ok := e.backend.(transport.Inspector)
	if !ok {
		t.Skip("backend does not implement transport.Inspector")
	}
	q, ex := name("q"), name("ex")
	e.declareExchange(ex, entity.Direct)
	e.bind(q, ex, "k")
	for _, p := range []struct {
		id  string
		pri int
	}{{"a", 0}, {"b", 3}, {"c", 9}, {"d", 1}} {
		e.publish(ex, "k", p.id, p.pri, 1)
	}
	lengths, err := in.QueueLengths(e.ctx, q)
	want := []transport.StepLength{{Step: 0, Length: 2}, {Step: 3, Length: 1}, {Step: 6, Length: 0}, {Step: 9, Length: 1}}
	if err != nil || !slices.Equal(lengths, want) {
		t.Errorf("QueueLengths = %v, %v; want %v", lengths, err, want)
	}
	for n, want := range map[int][]string{10: {"a", "d", "b", "c"}, 2: {"a", "d"}} {
		ds, err := in.Peek(e.ctx, q, n)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			env, err := envelope.Parse(d.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, env.Headers["id"].(string))
		}
		if !slices.Equal(got, want) {
			t.Errorf("Peek(%d) = %v, want %v", n, got, want)
		}
	}
	if n := e.size(q); n != 4 {
		t.Errorf("Peek removed messages: size %d", n)
	}
	if exs, err := in.Exchanges(e.ctx); err != nil || !slices.Contains(exs, ex) {
		t.Errorf("Exchanges = %v, %v; want it to list %s", exs, err, ex)
	}
	m, err := e.channel().Get(e.ctx, q, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := e.clock.Now()
	if n, oldest, err := in.Unacked(e.ctx); err != nil || n < 1 || oldest.IsZero() || oldest.After(at) {
		t.Errorf("Unacked = %d, %v, %v", n, oldest, err)
	}
	entries, err := in.UnackedEntries(e.ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range entries {
		if u.Tag != m.DeliveryTag {
			continue
		}
		found = true
		if u.Exchange != ex || u.RoutingKey != "k" || !bytes.Equal(u.Envelope, m.Raw) || u.Since.Sub(at).Abs() > time.Millisecond {
			t.Errorf("unacked entry = %+v, want exchange %s, key k, time %v and the envelope", u, ex, at)
		}
	}
	if !found {
		t.Errorf("UnackedEntries does not list %s", m.DeliveryTag)
	}
	e.ack(m)
}
