package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
)

// shortReplicas is a backend whose writes wait for replicas that fall
// short (redis's publish_wait_replicas with the replica down): every Put
// writes its message and returns an error matching ErrNotReplicated.
type shortReplicas struct{ *memory.Backend }

func (b shortReplicas) Put(ctx context.Context, queue string, priority int, envelope []byte) error {
	if err := b.Backend.Put(ctx, queue, priority, envelope); err != nil {
		return err
	}
	return fmt.Errorf("backend: confirmed by 0 of 1 replicas: %w", transport.ErrNotReplicated)
}

// Proves: a message whose body cannot be decoded is moved to the
// dead-letter queue and acked even when the move's write fell short of the
// replicas (ErrNotReplicated: written, on the master only). It is not
// requeued as well (which would leave two copies, and bring the bad
// message back to the handler), the publish itself reports ErrNotReplicated,
// and the consumer handles the good message after it.
func TestDeadLetterNotReplicated(t *testing.T) {
	m := memory.New()
	conn, err := kombu.NewConnection(shortReplicas{m})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p := conn.Producer(kombu.WithRoutingKey("q"))
	if _, err := p.Publish(ctx, []byte("{not json"), kombu.WithContentType("application/json", "utf-8")); !errors.Is(err, kombu.ErrNotReplicated) {
		t.Fatalf("publish: %v, want ErrNotReplicated", err)
	}
	if _, err := p.Publish(ctx, []byte(`"ok"`), kombu.WithContentType("application/json", "utf-8")); !errors.Is(err, kombu.ErrNotReplicated) {
		t.Fatalf("publish: %v, want ErrNotReplicated", err)
	}
	var mu sync.Mutex
	var seen []string
	var errs []error
	done := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		res <- conn.Consumer([]kombu.Queue{{Name: "q"}}, kombu.WithDeadLetterQueue("dlq"),
			kombu.WithErrorHandler(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }),
		).Consume(cctx, func(ctx context.Context, msg *kombu.Message) error {
			var v string
			if err := msg.Decode(&v); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, v)
			mu.Unlock()
			close(done)
			return nil
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the good message was not handled")
	}
	stop()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "ok" {
		t.Errorf("handled %v", seen)
	}
	if len(errs) != 1 || !errors.As(errs[0], new(*serialization.DecodeError)) {
		t.Errorf("errors %v, want only the decode error", errs)
	}
	for q, want := range map[string]int64{"q": 0, "dlq": 1} {
		if n, _ := m.Size(ctx, q); n != want {
			t.Errorf("queue %s holds %d, want %d", q, n, want)
		}
	}
	if n := m.UnackedCount(); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
}
