package virtual_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// shortReplicas is a backend whose publishes wait for replicas that fall
// short (redis's publish_wait_replicas with a replica down): every Put and
// PutBatch writes its messages and returns an error matching
// transport.ErrNotReplicated.
type shortReplicas struct{ *memory.Backend }

var errShort = fmt.Errorf("backend: confirmed by 0 of 1 replicas: %w", transport.ErrNotReplicated)

func (b shortReplicas) Put(ctx context.Context, queue string, priority int, envelope []byte) error {
	if err := b.Backend.Put(ctx, queue, priority, envelope); err != nil {
		return err
	}
	return errShort
}

func (b shortReplicas) PutBatch(ctx context.Context, items []transport.PutItem) error {
	if err := b.Backend.PutBatch(ctx, items); err != nil {
		return err
	}
	return errShort
}

// onlyBackend hides every capability beyond transport.Backend (here
// BatchPutter), so the engine puts a routed message one queue at a time.
type onlyBackend struct{ transport.Backend }

// Proves: a publish whose write fell short of the replicas asked for is
// reported as published (the routed count) with an error matching
// ErrNotReplicated, and every queue it routes to gets it: through the
// default exchange (one Put), through an exchange routing to two queues
// with PutBatch, and with one Put per queue, where the second Put is not
// skipped after the first one's error.
func TestPublishNotReplicated(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    func(*memory.Backend) transport.Backend
	}{
		{"PutBatch", func(m *memory.Backend) transport.Backend { return shortReplicas{m} }},
		{"Put each", func(m *memory.Backend) transport.Backend { return onlyBackend{shortReplicas{m}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := memory.New()
			tr, ctx := newTransport(t, tc.b(m), nil)
			env := &envelope.Envelope{Body: []byte(`"x"`), ContentType: "application/json", Headers: map[string]any{"id": "x"}}
			n, err := tr.Publish(ctx, "", "q", env, false)
			if n != 1 || !errors.Is(err, transport.ErrNotReplicated) {
				t.Errorf("default exchange: routed %d, %v; want 1 and ErrNotReplicated", n, err)
			}
			if err := tr.DeclareExchange(ctx, entity.Exchange{Name: "ex"}); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"a", "b"} {
				if err := tr.BindQueue(ctx, q, "ex", "rk"); err != nil {
					t.Fatal(err)
				}
			}
			n, err = tr.Publish(ctx, "ex", "rk", env, false)
			if n != 2 || !errors.Is(err, transport.ErrNotReplicated) {
				t.Errorf("two queues: routed %d, %v; want 2 and ErrNotReplicated", n, err)
			}
			for _, q := range []string{"q", "a", "b"} {
				if got := drain(t, m, q); !slices.Equal(got, []string{"x"}) {
					t.Errorf("queue %s holds %v", q, got)
				}
			}
		})
	}
}

// Proves: a message moved to the dead-letter queue by a write that fell
// short of the replicas is moved all the same: it is in the dead-letter
// queue, its unacked record is acked (not left to be restored and moved
// again), and the message after it is delivered.
func TestDeadLetterNotReplicated(t *testing.T) {
	m := memory.New()
	tr, ctx := newTransport(t, shortReplicas{m}, nil)
	if err := m.Put(ctx, "q", 0, []byte(`{"body": "InRvbyBiaWci", "content-type": "application/json", "properties": {"delivery_tag": "t1", "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "q"}}, "headers": {"id": "big"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "q", 0, []byte(`{"body": "MQ==", "content-type": "application/json", "properties": {"delivery_tag": "t2", "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "q"}}, "headers": {"id": "ok"}}`)); err != nil {
		t.Fatal(err)
	}
	ch, _ := tr.Channel()
	msgs, stop := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"q"}, MaxBodySize: 3, DeadLetterQueue: "dlq"})
	if msg := next(t, msgs); idOf(msg) != "ok" {
		t.Errorf("delivered %s, want ok", idOf(msg))
	} else if err := msg.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
	if n := m.UnackedCount(); n != 0 {
		t.Errorf("%d unacked records left", n)
	}
	if got := drain(t, m, "dlq"); !slices.Equal(got, []string{"big"}) {
		t.Errorf("dead-letter queue holds %v", got)
	}
}
