package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport"
)

func dial(t *testing.T) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(context.Background(), "memory://"+uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func publishN(t *testing.T, conn *kombu.Connection, queue string, n int) {
	t.Helper()
	p := conn.Producer(kombu.WithRoutingKey(queue))
	for i := 0; i < n; i++ {
		if _, err := p.Publish(context.Background(), map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAutoSettle proves the Handler contract: nil acks, an error requeues
// (the message comes back redelivered and reaches the error handler), an
// error wrapping ErrReject drops it.
func TestAutoSettle(t *testing.T) {
	ctx := context.Background()
	conn := dial(t)
	q := kombu.Queue{Name: "settle"}
	publishN(t, conn, q.Name, 3)
	var errs []error
	var mu sync.Mutex
	seen := map[int]int{}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := conn.Consumer([]kombu.Queue{q}, kombu.WithErrorHandler(func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	})).Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
		var v struct{ I int }
		if err := m.Decode(&v); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		seen[v.I]++
		switch {
		case v.I == 1 && seen[1] == 1:
			return errors.New("try again")
		case v.I == 2:
			return fmt.Errorf("bad message: %w", kombu.ErrReject)
		}
		if seen[0] == 1 && seen[1] == 2 {
			cancel()
		}
		if v.I == 1 && !m.Redelivered {
			t.Error("requeued message is not marked redelivered")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen[0] != 1 || seen[1] != 2 || seen[2] != 1 {
		t.Errorf("deliveries per message: %v, want 0:1 1:2 2:1", seen)
	}
	if len(errs) != 1 || errs[0].Error() != "try again" {
		t.Errorf("error handler got %v, want just the handler error", errs)
	}
	if n, _ := conn.Len(ctx, q.Name); n != 0 {
		t.Errorf("%d messages left; acked and rejected messages must be gone", n)
	}
}

// TestCancelRestoresUnacked proves that cancelling a consumer with manual
// acks restores the messages it took and did not settle, in order, and that
// Stopping fires before the handler's own ctx is cancelled.
func TestCancelRestoresUnacked(t *testing.T) {
	ctx := context.Background()
	conn := dial(t)
	q := kombu.Queue{Name: "restore"}
	publishN(t, conn, q.Name, 5)
	cctx, cancel := context.WithCancel(ctx)
	var got atomic.Int32
	stoppedFirst := make(chan bool, 1)
	err := conn.Consumer([]kombu.Queue{q}, kombu.WithManualAck(), kombu.WithPrefetch(3), kombu.WithShutdownTimeout(2*time.Second)).
		Consume(cctx, func(hctx context.Context, m *kombu.Message) error {
			if got.Add(1) == 3 {
				cancel()
				select {
				case <-kombu.Stopping(hctx):
					stoppedFirst <- hctx.Err() == nil
				case <-time.After(time.Second):
					stoppedFirst <- false
				}
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if !<-stoppedFirst {
		t.Error("Stopping did not fire while the handler's ctx was still live")
	}
	if n, _ := conn.Len(ctx, q.Name); n != 5 {
		t.Fatalf("%d messages in the queue after cancel, want all 5 back", n)
	}
	for i := 0; i < 5; i++ {
		m, err := conn.Get(ctx, q.Name)
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ I int }
		_ = m.Decode(&v)
		if v.I != i {
			t.Errorf("message %d came back as %d: order not kept", i, v.I)
		}
		_ = m.Ack(ctx)
	}
}

// TestGetBlockAndWait proves pull consumption: Get returns ErrEmpty at
// once on an empty queue, GetWait gives up after its wait, GetBlock waits
// until a message arrives or ctx ends.
func TestGetBlockAndWait(t *testing.T) {
	ctx := context.Background()
	conn := dial(t)
	if _, err := conn.Get(ctx, "nothing"); !errors.Is(err, kombu.ErrEmpty) {
		t.Fatalf("Get on empty queue: %v, want ErrEmpty", err)
	}
	start := time.Now()
	if _, err := conn.Get(ctx, "nothing", kombu.GetWait(100*time.Millisecond)); !errors.Is(err, kombu.ErrEmpty) {
		t.Fatalf("GetWait on empty queue: %v, want ErrEmpty", err)
	}
	if time.Since(start) < 90*time.Millisecond {
		t.Error("GetWait returned before its wait")
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		publishN(t, conn, "later", 1)
	}()
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := conn.Get(bctx, "later", kombu.GetBlock())
	if err != nil {
		t.Fatalf("GetBlock: %v", err)
	}
	_ = m.Ack(ctx)
	cctx, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if _, err := conn.Get(cctx, "nothing", kombu.GetBlock()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetBlock after ctx ends: %v, want DeadlineExceeded", err)
	}
}

// TestAutoDeleteFanoutQueue proves that an auto-delete queue bound to a
// fanout exchange loses its binding when its consumer stops, as in Kombu,
// while a plain queue keeps its binding.
func TestAutoDeleteFanoutQueue(t *testing.T) {
	ctx := context.Background()
	backend := memory.New()
	conn, err := kombu.NewConnection(backend)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ex := kombu.Exchange{Name: "fan", Type: kombu.Fanout}
	tmp := kombu.Queue{Name: "tmp", Exchange: ex, AutoDelete: true}
	keep := kombu.Queue{Name: "keep", Exchange: ex}
	for _, q := range []kombu.Queue{tmp, keep} {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := conn.Consumer([]kombu.Queue{q}).Consume(cctx, func(context.Context, *kombu.Message) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	rows, _ := backend.Bindings(ctx, "fan")
	if len(rows) != 1 || rows[0].Queue != "keep" {
		t.Errorf("bindings after consumers stopped: %+v, want only keep's", rows)
	}
}

// TestPublishRetry proves the retry policy: a publish failing on a
// connection-like error is retried and succeeds, and one failing every time
// gives up with an error that says so and wraps the cause.
func TestPublishRetry(t *testing.T) {
	ctx := context.Background()
	fb := &failingBackend{Backend: memory.New(), fails: 2}
	conn, err := kombu.NewConnection(fb)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := conn.Producer(kombu.WithRoutingKey("q"), kombu.WithRetry(kombu.RetryPolicy{MaxRetries: 3, IntervalStep: time.Millisecond}))
	if _, err := p.Publish(ctx, "x"); err != nil {
		t.Fatalf("publish with 2 failures and 3 retries: %v", err)
	}
	fb.fails = 100
	_, err = p.Publish(ctx, "x")
	if !errors.Is(err, errDown) {
		t.Fatalf("publish that always fails: %v, want it to wrap the cause", err)
	}
	if fb.calls.Load() != 3+4 {
		t.Errorf("%d put attempts, want 3 then 4", fb.calls.Load())
	}
}

var errDown = errors.New("connection refused")

type failingBackend struct {
	*memory.Backend
	fails int
	calls atomic.Int32
}

func (f *failingBackend) Put(ctx context.Context, q string, p int, env []byte) error {
	f.calls.Add(1)
	if f.fails > 0 {
		f.fails--
		return errDown
	}
	return f.Backend.Put(ctx, q, p, env)
}

var _ transport.Backend = (*failingBackend)(nil)

// TestDialErrors proves that a URL with an unregistered scheme or an
// unknown option fails with errors callers can test.
func TestDialErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := kombu.Dial(ctx, "amqp://localhost"); !errors.Is(err, kombu.ErrUnknownScheme) {
		t.Errorf("amqp://: %v, want ErrUnknownScheme", err)
	}
	if _, err := kombu.Dial(ctx, "memory://?bogus=1"); !errors.Is(err, transport.ErrBadURL) {
		t.Errorf("unknown option: %v, want ErrBadURL", err)
	}
	if _, err := kombu.Dial(ctx, "memory://?visibility_timeout=abc"); !errors.Is(err, transport.ErrBadURL) {
		t.Errorf("bad duration: %v, want ErrBadURL", err)
	}
}

// TestReadyBeforeFanout proves WithReady: a fanout message published right
// after the ready callback reaches the consumer (no probing needed).
func TestReadyBeforeFanout(t *testing.T) {
	ctx := context.Background()
	conn := dial(t)
	ex := kombu.Exchange{Name: "news", Type: kombu.Fanout}
	q := kombu.Queue{Name: "reader", Exchange: ex, AutoDelete: true}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	err := conn.Consumer([]kombu.Queue{q}, kombu.WithNoAck(), kombu.WithReady(func() {
		if _, err := conn.Producer(kombu.WithExchange(ex)).Publish(ctx, "extra!"); err != nil {
			t.Error(err)
		}
	})).Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
		got <- string(m.Body)
		cancel()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "extra!" {
			t.Errorf("got %q", b)
		}
	default:
		t.Fatal("fanout message published at ready was not received")
	}
}

// TestNoAckCancelLosesNothingUntaken proves that a no-ack consumer stopped
// after its first message leaves every other message in the queue: the
// consumer takes a message from the broker only for a ready worker, and
// puts back one taken during shutdown.
func TestNoAckCancelLosesNothingUntaken(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		conn := dial(t)
		q := kombu.Queue{Name: "noack"}
		publishN(t, conn, q.Name, 5)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var count atomic.Int32
		err := conn.Consumer([]kombu.Queue{q}, kombu.WithNoAck(), kombu.WithPrefetch(3), kombu.WithConcurrency(2)).
			Consume(cctx, func(context.Context, *kombu.Message) error {
				count.Add(1)
				cancel()
				return nil
			})
		handled := int(count.Load())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := conn.Len(ctx, q.Name)
		if int(n)+handled != 5 {
			t.Fatalf("round %d: %d handled + %d left = %d, want 5: a no-ack message was lost", round, handled, n, int(n)+handled)
		}
	}
}
