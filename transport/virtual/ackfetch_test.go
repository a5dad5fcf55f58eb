package virtual_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// countingBackend counts the calls that reach the backend.
type countingBackend struct {
	*memory.Backend
	gets, settled, acks atomic.Int64
}

func (b *countingBackend) Fetch(ctx context.Context, req transport.FetchRequest, dst []transport.Delivery) ([]transport.Delivery, error) {
	b.gets.Add(1)
	b.settled.Add(int64(len(req.Settle)))
	return b.Backend.Fetch(ctx, req, dst)
}

func (b *countingBackend) Ack(ctx context.Context, tags ...string) error {
	b.acks.Add(1)
	return b.Backend.Ack(ctx, tags...)
}

// Proves: with the default consumer settings (prefetch 4, acks awaited, one
// handler), an ack does not cost a round trip of its own: it rides the
// fetch of the next message, which the acking handler makes itself. 200
// messages take at most 250 backend calls in all (without the riding,
// 300: an ack each plus a fetch per two; the margin is for the loop's own
// fetches when the scheduler runs it while a handler acks, which heavy
// load makes more frequent), every ack is sent, in delivery order, and
// nothing is left unacked.
func TestAckRidesFetch(t *testing.T) {
	b := &countingBackend{Backend: memory.New()}
	tr, ctx := newTransport(t, b, nil)
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	send(t, tr, "", "q", ids...)
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	done := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		res <- ch.Consume(cctx, virtual.ConsumeOptions{Queues: []string{"q"}, Prefetch: 4, Concurrency: 1,
			OnError: func(err error) { t.Errorf("consumer error: %v", err) }},
			func(ctx context.Context, m *entity.Message) {
				got = append(got, idOf(m))
				if err := m.Ack(ctx); err != nil {
					t.Errorf("ack %s: %v", idOf(m), err)
				}
				if len(got) == n {
					close(done)
				}
			})
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("handled %d of %d", len(got), n)
	}
	cancel()
	if err := <-res; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	for i, id := range got {
		if id != ids[i] {
			t.Fatalf("delivery %d is %s, want %s (order)", i, id, ids[i])
		}
	}
	calls := b.gets.Load() + b.acks.Load()
	t.Logf("%d messages: %d Fetch calls carrying %d acks, %d ack calls of their own", n, b.gets.Load(), b.settled.Load(), b.acks.Load())
	if calls > n+n/4 {
		t.Errorf("%d backend calls for %d messages, want about one each", calls, n)
	}
	if b.settled.Load() < n*7/10 {
		t.Errorf("only %d of %d acks rode a fetch", b.settled.Load(), n)
	}
	if left, err := b.Size(ctx, "q"); err != nil || left != 0 {
		t.Errorf("queue left %d (%v)", left, err)
	}
	if u := ch.Unacked(); u != 0 {
		t.Errorf("%d unacked on the channel", u)
	}
	if left := b.UnackedCount(); left != 0 {
		t.Errorf("backend still holds %d unacked records", left)
	}
}

// Proves: fanout messages, which take no prefetch slot, cannot fill the
// buffer a handler delivers into when its ack fetches: one handler with
// prefetch 2, consuming a fanout queue and a list queue that both get 100
// messages, handles all 200 (a shared buffer deadlocked the handler on its
// own delivery).
func TestAckFetchWithFanout(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "fx", Type: entity.Fanout}); err != nil {
		t.Fatal(err)
	}
	if err := tr.BindQueue(ctx, "fq", "fx", ""); err != nil {
		t.Fatal(err)
	}
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	counts := make(chan string, 1000)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		res <- ch.Consume(cctx, virtual.ConsumeOptions{Queues: []string{"fq", "lq"}, Prefetch: 2, Concurrency: 1,
			OnError: func(err error) { t.Errorf("consumer error: %v", err) }},
			func(ctx context.Context, m *entity.Message) {
				if err := m.Ack(ctx); err != nil {
					t.Errorf("ack: %v", err)
				}
				counts <- m.DeliveryInfo.Queue + "/" + idOf(m)
			})
	}()
	deadline := time.Now().Add(wait)
	for subscribed := false; !subscribed; {
		send(t, tr, "fx", "", "probe")
		select {
		case <-counts:
			subscribed = true
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("fanout subscription never heard")
			}
		}
	}
	for i := range 100 {
		send(t, tr, "fx", "", fmt.Sprint("f", i))
		send(t, tr, "", "lq", fmt.Sprint("l", i))
	}
	seen := map[string]bool{}
	for len(seen) < 200 {
		select {
		case k := <-counts:
			if k != "fq/probe" {
				seen[k] = true
			}
		case <-time.After(wait):
			t.Fatalf("handled %d of 200 messages, then nothing", len(seen))
		}
	}
	cancel()
	if err := <-res; err != nil {
		t.Fatalf("Consume: %v", err)
	}
}
