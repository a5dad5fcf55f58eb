package virtual_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Consumer behaviour on the memory backend that the conformance suite does
// not cover: fanout mapping, queue order strategies, and races between
// settlement, restore and close.

const wait = 10 * time.Second

func newTransport(t *testing.T, b transport.Backend, mod func(*virtual.Options)) (*virtual.Transport, context.Context) {
	t.Helper()
	o := virtual.Options{PollingInterval: 20 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	tr := virtual.New(b, o)
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return tr, t.Context()
}

func send(t *testing.T, tr *virtual.Transport, exchange, rk string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		env := &envelope.Envelope{Body: []byte(`"` + id + `"`), ContentType: "application/json", ContentEncoding: "utf-8", Headers: map[string]any{"id": id}}
		if _, err := tr.Publish(t.Context(), exchange, rk, env, false); err != nil {
			t.Fatal(err)
		}
	}
}

func idOf(m *entity.Message) string {
	id, _ := m.Headers["id"].(string)
	if m.Redelivered {
		id += "*"
	}
	return id
}

// drain returns the ids waiting in queue, taking them.
func drain(t *testing.T, b transport.Backend, queue string) []string {
	t.Helper()
	var out []string
	for {
		d, err := transporttest.FetchOne(t.Context(), b, []string{queue}, false, 0)
		if errors.Is(err, transport.ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := envelope.Parse(d.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := e.Headers["id"].(string)
		if e.Redelivered {
			id += "*"
		}
		out = append(out, id)
	}
}

// consume runs Consume in the background, handing messages to the returned
// channel unsettled; the returned function cancels it and returns its result.
func consume(t *testing.T, ch *virtual.Channel, opts virtual.ConsumeOptions) (<-chan *entity.Message, func() error) {
	t.Helper()
	msgs := make(chan *entity.Message, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	if opts.OnError == nil {
		opts.OnError = func(err error) { t.Logf("consumer error: %v", err) }
	}
	go func() {
		done <- ch.Consume(ctx, opts, func(_ context.Context, m *entity.Message) { msgs <- m })
	}()
	var once sync.Once
	var res error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(wait):
				res = errors.New("Consume did not return")
			}
		})
		return res
	}
	t.Cleanup(func() { _ = stop() })
	return msgs, stop
}

func next(t *testing.T, msgs <-chan *entity.Message) *entity.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no message delivered")
		return nil
	}
}

// TestFanoutMapsToQueue checks fanout deliveries land on the queue the
// consumer bound, that a channel consuming two queues bound to one fanout
// exchange delivers everything to the last one registered (Kombu's
// _fanout_to_queue), and that fanout and list queues mix in one Consume.
func TestFanoutMapsToQueue(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "fx", Type: entity.Fanout}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"f1", "f2"} {
		if err := tr.BindQueue(ctx, q, "fx", ""); err != nil {
			t.Fatal(err)
		}
	}
	if !tr.IsFanoutQueue("f1") || tr.IsFanoutQueue("list") {
		t.Fatalf("IsFanoutQueue wrong")
	}
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	msgs, stop := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"f1", "list", "f2"}, NoAck: true})
	// Subscribing is synchronous on memory, but Consume runs in the
	// background: publish until the subscription hears.
	deadline := time.Now().Add(wait)
	var first *entity.Message
	for first == nil {
		send(t, tr, "fx", "", "probe")
		select {
		case first = <-msgs:
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("fanout subscription never heard")
			}
		}
	}
	send(t, tr, "fx", "", "fan")
	send(t, tr, "", "list", "direct")
	got := map[string]string{}
	for len(got) < 2 {
		m := next(t, msgs)
		if idOf(m) == "probe" {
			continue
		}
		got[idOf(m)] = m.DeliveryInfo.Queue
		if idOf(m) == "fan" && (m.DeliveryInfo.Exchange != "fx" || m.DeliveryInfo.RoutingKey != "") {
			t.Errorf("fanout delivery info %+v", m.DeliveryInfo)
		}
	}
	if want := map[string]string{"fan": "f2", "direct": "list"}; !reflect_equal(got, want) {
		t.Errorf("deliveries went to %v, want %v", got, want)
	}
	if err := stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if n, _ := b.Size(ctx, "f1"); n != 0 {
		t.Errorf("fanout wrote %d messages into a list", n)
	}
}

func reflect_equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestQueueOrderStrategies checks Kombu's queue_order_strategy within one
// priority step: round_robin moves the queue a message came from to the
// end, priority keeps the given order (the first queue starves the rest),
// sorted orders the queues by name.
func TestQueueOrderStrategies(t *testing.T) {
	cases := []struct {
		order virtual.QueueOrder
		want  []string
	}{
		{virtual.RoundRobin, []string{"b1", "a1", "c1", "b2", "a2", "c2", "b3", "a3", "c3"}},
		{virtual.PriorityOrder, []string{"b1", "b2", "b3", "a1", "a2", "a3", "c1", "c2", "c3"}},
		{virtual.SortedOrder, []string{"a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "c3"}},
		{"", []string{"b1", "a1", "c1", "b2", "a2", "c2", "b3", "a3", "c3"}}, // round_robin is the default
	}
	for _, c := range cases {
		t.Run(string(c.order), func(t *testing.T) {
			t.Parallel()
			b := memory.New()
			tr, _ := newTransport(t, b, func(o *virtual.Options) { o.QueueOrder = c.order })
			for _, q := range []string{"a", "b", "c"} {
				send(t, tr, "", q, q+"1", q+"2", q+"3")
			}
			ch, err := tr.Channel()
			if err != nil {
				t.Fatal(err)
			}
			msgs, stop := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"b", "a", "c"}, Prefetch: 1})
			var got []string
			for range c.want {
				m := next(t, msgs)
				got = append(got, idOf(m))
				if err := m.Ack(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stop(); err != nil {
				t.Errorf("Consume: %v", err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("order = %v, want %v", got, c.want)
			}
		})
	}
	// Priority steps still come first, whatever the strategy.
	b := memory.New()
	tr, _ := newTransport(t, b, func(o *virtual.Options) { o.QueueOrder = virtual.PriorityOrder })
	if _, err := tr.Publish(t.Context(), "", "a", &envelope.Envelope{Headers: map[string]any{"id": "a9"}, Properties: entity.Properties{Priority: 9}}, false); err != nil {
		t.Fatal(err)
	}
	send(t, tr, "", "b", "b0")
	ch, _ := tr.Channel()
	msgs, _ := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"a", "b"}, Prefetch: 1})
	if m := next(t, msgs); idOf(m) != "b0" {
		t.Errorf("first = %s, want b0 (step 0 of the second queue before step 9 of the first)", idOf(m))
	}
}

// gate is a backend whose Ack, or whose Get once it took a message, stops
// until the test lets it go on.
type gate struct {
	transport.Backend
	mu        sync.Mutex
	holdAck   bool
	holdGet   bool
	entered   chan string
	proceed   chan struct{}
	afterTake bool
}

func newGate(b transport.Backend) *gate {
	return &gate{Backend: b, entered: make(chan string, 100), proceed: make(chan struct{})}
}

func (g *gate) hold(what string) bool {
	g.mu.Lock()
	h := (what == "ack" && g.holdAck) || (what == "get" && g.holdGet)
	g.mu.Unlock()
	if h {
		g.entered <- what
		<-g.proceed
	}
	return h
}

func (g *gate) Ack(ctx context.Context, tags ...string) error {
	g.hold("ack")
	return g.Backend.Ack(ctx, tags...)
}

func (g *gate) Fetch(ctx context.Context, req transport.FetchRequest, dst []transport.Delivery) ([]transport.Delivery, error) {
	ds, err := g.Backend.Fetch(ctx, req, dst)
	if err == nil {
		g.hold("get")
	}
	return ds, err
}

// TestAckRacingClose checks an Ack in flight while the channel closes:
// Close waits for it rather than restoring the message under it (which
// could restore a message the ack then deletes, or let another consumer
// take it and have its fresh unacked record deleted by the late ack). So
// Close returns only after the ack, the message is acked once, nothing is
// redelivered and no record is left; a Close whose context ends first
// returns, leaving the message to the ack.
func TestAckRacingClose(t *testing.T) {
	b := memory.New()
	g := newGate(b)
	tr, ctx := newTransport(t, g, nil)
	send(t, tr, "", "q", "a")
	ch1, _ := tr.Channel()
	m, err := ch1.Get(ctx, "q", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.holdAck = true
	g.mu.Unlock()
	ackErr := make(chan error, 1)
	go func() { ackErr <- m.Ack(ctx) }()
	<-g.entered // the ack is on its way to the broker

	// A Close with a short deadline gives up waiting and returns.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- ch1.Close(short) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close with a 100 ms context did not return while an ack was held")
	}
	// Nothing was restored under the ack.
	ch2, _ := tr.Channel()
	if m2, err := ch2.Get(ctx, "q", false, nil); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a second consumer got %v, %v while the first one's ack was in flight; want ErrEmpty", m2, err)
	}
	g.mu.Lock()
	g.holdAck = false
	g.mu.Unlock()
	close(g.proceed)
	if err := <-ackErr; err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := ch2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := drain(t, b, "q"); len(left) != 0 {
		t.Errorf("acked message is back: %v", left)
	}
	if n := b.UnackedCount(); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
}

// Proves: Close waits for a settlement in flight: it returns only after a
// held Ack completed, and the message is then acked, not restored.
func TestCloseWaitsForAck(t *testing.T) {
	b := memory.New()
	g := newGate(b)
	tr, ctx := newTransport(t, g, nil)
	send(t, tr, "", "q", "a")
	ch, _ := tr.Channel()
	m, err := ch.Get(ctx, "q", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.holdAck = true
	g.mu.Unlock()
	ackErr := make(chan error, 1)
	go func() { ackErr <- m.Ack(ctx) }()
	<-g.entered
	closed := make(chan error, 1)
	go func() { closed <- ch.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an ack was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.mu.Lock()
	g.holdAck = false
	g.mu.Unlock()
	close(g.proceed)
	if err := <-ackErr; err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := drain(t, b, "q"); len(left) != 0 {
		t.Errorf("acked message is back: %v", left)
	}
	if n := b.UnackedCount(); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
}

// TestCloseWhileGetInFlight checks a message the consumer loop took from
// the backend just as its channel closed is put back at the front, not left
// unacked until the visibility timeout.
func TestCloseWhileGetInFlight(t *testing.T) {
	b := memory.New()
	g := newGate(b)
	tr, ctx := newTransport(t, g, nil)
	send(t, tr, "", "q", "a", "b")
	ch, _ := tr.Channel()
	g.mu.Lock()
	g.holdGet = true
	g.mu.Unlock()
	delivered := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- ch.Consume(ctx, virtual.ConsumeOptions{Queues: []string{"q"}}, func(_ context.Context, m *entity.Message) { delivered <- idOf(m) })
	}()
	<-g.entered // "a" is taken and recorded, not yet tracked
	if err := ch.Close(ctx); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.holdGet = false
	g.mu.Unlock()
	close(g.proceed)
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Consume after Close = %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Consume did not return after Close")
	}
	select {
	case id := <-delivered:
		t.Errorf("a closed channel delivered %s", id)
	default:
	}
	if got := drain(t, b, "q"); !slices.Equal(got, []string{"a*", "b"}) {
		t.Errorf("queue holds %v, want [a* b]", got)
	}
	if n := b.UnackedCount(); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
}

// TestRecover checks Channel.Recover (Kombu's basic_recover) puts every
// unsettled message back at the front in order and leaves the channel
// usable.
func TestRecover(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	send(t, tr, "", "q", "a", "b", "c")
	ch, _ := tr.Channel()
	var held []*entity.Message
	for range 2 {
		m, err := ch.Get(ctx, "q", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, m)
	}
	if err := ch.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := held[0].Ack(ctx); err == nil {
		t.Errorf("Ack after Recover succeeded")
	}
	m, err := ch.Get(ctx, "q", false, nil)
	if err != nil || idOf(m) != "a*" {
		t.Fatalf("Get after Recover = %v, %v", m, err)
	}
	if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b, "q"); !slices.Equal(got, []string{"b*", "c"}) {
		t.Errorf("queue holds %v", got)
	}
}

// TestShutdownTimeout checks a handler that outlives ShutdownTimeout does
// not hold Consume: its message is restored and its late Ack fails.
func TestShutdownTimeout(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	send(t, tr, "", "q", "slow")
	ch, _ := tr.Channel()
	started, release := make(chan *entity.Message), make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ch.Consume(cctx, virtual.ConsumeOptions{Queues: []string{"q"}, ShutdownTimeout: 50 * time.Millisecond},
			func(hctx context.Context, m *entity.Message) {
				started <- m
				select {
				case <-release:
				case <-hctx.Done(): // cancelled after the shutdown timeout
				}
			})
	}()
	m := <-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Consume waited for the handler beyond ShutdownTimeout")
	}
	close(release)
	if err := m.Ack(ctx); err == nil {
		t.Errorf("late Ack of a restored message succeeded")
	}
	if got := drain(t, b, "q"); !slices.Equal(got, []string{"slow*"}) {
		t.Errorf("queue holds %v", got)
	}
}

// TestMaxBodySize checks an oversized body is refused with ErrTooLarge
// and kept in the dead-letter queue.
func TestMaxBodySize(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	if _, err := tr.Publish(ctx, "", "q", &envelope.Envelope{Body: make([]byte, 100), ContentType: "application/data", Headers: map[string]any{"id": "big"}}, false); err != nil {
		t.Fatal(err)
	}
	send(t, tr, "", "q", "small")
	ch, _ := tr.Channel()
	var mu sync.Mutex
	var errs []error
	msgs, stop := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"q"}, MaxBodySize: 50, DeadLetterQueue: "dlq",
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	if m := next(t, msgs); idOf(m) != "small" {
		t.Errorf("delivered %s", idOf(m))
	} else if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], serialization.ErrTooLarge) {
		t.Errorf("errors = %v, want one ErrTooLarge", errs)
	}
	if got := drain(t, b, "dlq"); !slices.Equal(got, []string{"big"}) {
		t.Errorf("dead-letter queue holds %v", got)
	}
}

// TestDeclarations checks the declaration errors of the core: a fanout
// exchange on a backend without Fanout, a redeclaration with another type,
// an unknown type, Consume without queues, binding to the default exchange.
func TestDeclarations(t *testing.T) {
	tr, ctx := newTransport(t, &transporttest.Faulty{Backend: memory.New()}, nil)
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "fx", Type: entity.Fanout}); !errors.Is(err, transport.ErrUnsupported) {
		t.Errorf("fanout without the capability: %v", err)
	}
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "ex", Type: entity.Topic}); err != nil {
		t.Fatal(err)
	}
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "ex"}); !errors.Is(err, transport.ErrExchangeType) {
		t.Errorf("redeclare topic as direct: %v", err)
	}
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "hx", Type: "headers"}); !errors.Is(err, entity.ErrInvalid) {
		t.Errorf("headers exchange: %v", err)
	}
	if tr.ExchangeType("ex") != entity.Topic || tr.ExchangeType("never") != entity.Direct {
		t.Errorf("ExchangeType wrong")
	}
	if err := tr.BindQueue(ctx, "q", "", "q"); !errors.Is(err, entity.ErrInvalid) {
		t.Errorf("bind to the default exchange: %v", err)
	}
	ch, _ := tr.Channel()
	if err := ch.Consume(ctx, virtual.ConsumeOptions{}, func(context.Context, *entity.Message) {}); !errors.Is(err, entity.ErrInvalid) {
		t.Errorf("Consume without queues: %v", err)
	}
	_ = ch.Close(ctx)
	if err := ch.Consume(ctx, virtual.ConsumeOptions{Queues: []string{"q"}}, func(context.Context, *entity.Message) {}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Consume on a closed channel: %v", err)
	}
	_ = tr.Close(ctx)
	if _, err := tr.PublishRaw(ctx, "", "q", 0, []byte("{}"), false); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("publish on a closed transport: %v", err)
	}
}

// TestPausedQueues proves ConsumeOptions.Paused (Celery's cancel_consumer
// of a queue a running consumer was started with): a paused queue's
// messages stay in the queue while the others are delivered, with the acks
// that fetch the next messages too; with every queue paused nothing is
// taken; resuming a queue delivers what waited there.
func TestPausedQueues(t *testing.T) {
	b := memory.New()
	tr, _ := newTransport(t, b, nil)
	var mu sync.Mutex
	paused := map[string]bool{"a": true}
	setPaused := func(q string, p bool) { mu.Lock(); paused[q] = p; mu.Unlock() }
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	msgs, stop := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"a", "b"}, Prefetch: 4,
		Paused: func(q string) bool { mu.Lock(); defer mu.Unlock(); return paused[q] }})
	send(t, tr, "", "a", "a1", "a2")
	send(t, tr, "", "b", "b1", "b2")
	for _, want := range []string{"b1", "b2"} {
		m := next(t, msgs)
		if idOf(m) != want {
			t.Fatalf("got %s, want %s (queue a is paused)", idOf(m), want)
		}
		if err := m.Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	setPaused("b", true)
	time.Sleep(100 * time.Millisecond) // a wait in progress ends within the polling interval
	send(t, tr, "", "b", "b3")
	select {
	case m := <-msgs:
		t.Fatalf("%s delivered while every queue is paused", idOf(m))
	case <-time.After(300 * time.Millisecond):
	}
	setPaused("a", false)
	got := map[string]bool{}
	for range 2 {
		m := next(t, msgs)
		got[idOf(m)] = true
		if err := m.Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if !got["a1"] || !got["a2"] {
		t.Errorf("after resuming a: %v, want a1 and a2", got)
	}
	setPaused("b", false)
	if m := next(t, msgs); idOf(m) != "b3" {
		t.Errorf("after resuming b: %s, want b3", idOf(m))
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

// slowRestore delays every Restore, widening the window in which two
// restorers of one channel overlap.
type slowRestore struct{ *memory.Backend }

func (b slowRestore) Restore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) error {
	time.Sleep(20 * time.Millisecond)
	return b.Backend.Restore(ctx, tag, leftmost, route)
}

// Proves: Close returns only once every unsettled message is back in its
// queue, also when the consumer, stopping, took the messages to restore
// first: a caller that reads the queue right after Close finds them all.
// The consumer's context is cancelled first, so that its own restore (each
// Restore slowed to 20 ms) is under way when Close is called; before the
// fix, Close then found nothing left to restore and returned at once.
func TestCloseWaitsForConsumerRestore(t *testing.T) {
	b := slowRestore{memory.New()}
	tr, ctx := newTransport(t, b, nil)
	send(t, tr, "", "q", "m1", "m2", "m3")
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *entity.Message, 3)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ch.Consume(cctx, virtual.ConsumeOptions{Queues: []string{"q"}, Prefetch: 3, Concurrency: 3},
			func(_ context.Context, m *entity.Message) { msgs <- m })
	}()
	for range 3 {
		next(t, msgs)
	}
	cancel()
	time.Sleep(10 * time.Millisecond) // the consumer is restoring now
	if err := ch.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b, "q"); !slices.Equal(got, []string{"m1*", "m2*", "m3*"}) {
		t.Fatalf("right after Close the queue holds %v, want [m1* m2* m3*]", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
}
