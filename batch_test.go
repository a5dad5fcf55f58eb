package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/redis"
	"github.com/kombu-go/kombu/transport"
)

// batchConns are the connections the batch tests run on: memory (the
// core's fallback: one binding read per exchange, one PutBatch) and redis
// on miniredis (the backend's BatchPublisher: one pipeline).
func batchConns(t *testing.T) map[string]*kombu.Connection {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	b, err := redis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := kombu.NewConnection(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return map[string]*kombu.Connection{"memory": dial(t), "redis": rc}
}

// drainIDs gets every waiting message of queue and returns their "id"
// bodies, in consumption order.
func drainIDs(t *testing.T, conn *kombu.Connection, queue string) []string {
	t.Helper()
	var out []string
	for {
		m, err := conn.Get(context.Background(), queue, kombu.GetNoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ ID string }
		if err := m.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v.ID)
	}
}

// TestPublishBatch proves PublishBatch publishes each message as Publish
// would (exchange types, per-message options over batch options over the
// producer's defaults, priorities), keeps the order within each queue,
// reports per message (routed counts, tags, a *BatchError naming only
// the unroutable mandatory message), and sends nothing when a body cannot
// be serialized.
func TestPublishBatch(t *testing.T) {
	for name, conn := range batchConns(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			ex := kombu.Exchange{Name: "bx-" + uuid.NewString(), Type: kombu.Direct}
			tx := kombu.Exchange{Name: "tx-" + uuid.NewString(), Type: kombu.Topic}
			qa, qb, qt := "qa-"+uuid.NewString(), "qb-"+uuid.NewString(), "qt-"+uuid.NewString()
			for _, b := range []struct {
				q  string
				ex kombu.Exchange
				rk string
			}{{qa, ex, "a"}, {qb, ex, "b"}, {qt, tx, "t.#"}} {
				if err := conn.Bind(ctx, b.q, b.ex, b.rk); err != nil {
					t.Fatal(err)
				}
			}
			p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("a"))
			body := func(id string) map[string]any { return map[string]any{"id": id} }
			msgs := []kombu.Outgoing{
				{Body: body("1")},
				{Body: body("2"), Options: []kombu.PublishOption{kombu.WithRoutingKey("b")}},
				{Body: body("3"), Options: []kombu.PublishOption{kombu.WithExchange(kombu.Exchange{}), kombu.WithRoutingKey(qa)}},
				{Body: body("4"), Options: []kombu.PublishOption{kombu.WithExchange(tx), kombu.WithRoutingKey("t.x.y")}},
				{Body: body("5")},
				{Body: body("6"), Options: []kombu.PublishOption{kombu.WithRoutingKey("nobody"), kombu.WithMandatory()}},
				{Body: body("7"), Options: []kombu.PublishOption{kombu.WithPriority(9)}},
				{Body: body("8"), Options: []kombu.PublishOption{kombu.WithDeliveryTag("tag-8")}},
			}
			res, err := p.PublishBatch(ctx, msgs, kombu.WithHeader("batch", true))
			var be *kombu.BatchError
			if !errors.As(err, &be) || !errors.Is(err, kombu.ErrNoRoute) {
				t.Fatalf("err = %v, want a *BatchError with ErrNoRoute", err)
			}
			for i := range msgs {
				if be.Failed(i) != (i == 5) {
					t.Errorf("message %d failed: %v", i, be.Errs[i])
				}
			}
			if len(res) != len(msgs) {
				t.Fatalf("%d results", len(res))
			}
			wantRouted := []int{1, 1, 1, 1, 1, 0, 1, 1}
			for i, r := range res {
				if r.Routed != wantRouted[i] || r.DeliveryTag == "" {
					t.Errorf("result %d: %+v", i, r)
				}
			}
			if res[7].DeliveryTag != "tag-8" {
				t.Errorf("tag %q", res[7].DeliveryTag)
			}
			// Priority 0 before 9 on Redis's step-major order; otherwise FIFO.
			if got := drainIDs(t, conn, qa); !slices.Equal(got, []string{"1", "3", "5", "8", "7"}) {
				t.Errorf("%s = %v", qa, got)
			}
			if got := drainIDs(t, conn, qb); !slices.Equal(got, []string{"2"}) {
				t.Errorf("%s = %v", qb, got)
			}
			if got := drainIDs(t, conn, qt); !slices.Equal(got, []string{"4"}) {
				t.Errorf("%s = %v", qt, got)
			}

			// A message that cannot be serialized: nothing is sent.
			_, err = p.PublishBatch(ctx, []kombu.Outgoing{{Body: body("x")}, {Body: make(chan int)}})
			if !errors.As(err, &be) || be.Failed(0) || !be.Failed(1) {
				t.Fatalf("unserializable: %v", err)
			}
			if n, _ := conn.Len(ctx, qa); n != 0 {
				t.Errorf("a failed batch sent %d messages", n)
			}
			if res, err := p.PublishBatch(ctx, nil); err != nil || len(res) != 0 {
				t.Errorf("empty batch: %v %v", res, err)
			}
		})
	}
}

// TestPublishBatchSameBytes proves a batch writes the same envelope bytes
// as Publish for the same message (same delivery tag).
func TestPublishBatchSameBytes(t *testing.T) {
	for name, conn := range batchConns(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := "q-" + uuid.NewString()
			p := conn.Producer(kombu.WithRoutingKey(q), kombu.WithHeader("h", 1), kombu.WithCorrelationID("c"))
			if _, err := p.Publish(ctx, "text", kombu.WithDeliveryTag("t1"), kombu.WithPriority(3), kombu.WithExpiration(time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := p.PublishBatch(ctx, []kombu.Outgoing{{Body: "text", Options: []kombu.PublishOption{
				kombu.WithDeliveryTag("t1"), kombu.WithPriority(3), kombu.WithExpiration(time.Second)}}}); err != nil {
				t.Fatal(err)
			}
			m1, err1 := conn.Get(ctx, q, kombu.GetNoAck())
			m2, err2 := conn.Get(ctx, q, kombu.GetNoAck())
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if string(m1.Raw) != string(m2.Raw) {
				t.Errorf("Publish wrote\n%s\nPublishBatch wrote\n%s", m1.Raw, m2.Raw)
			}
		})
	}
}

// TestDeferredAcksConsumer proves WithDeferredAcks: every message handled
// and acked, none left unacked once the consumer stopped, none
// redelivered when the connection closes.
func TestDeferredAcksConsumer(t *testing.T) {
	for name, conn := range batchConns(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := kombu.Queue{Name: "dq-" + uuid.NewString()}
			var msgs []kombu.Outgoing
			for i := range 200 {
				msgs = append(msgs, kombu.Outgoing{Body: map[string]any{"id": fmt.Sprint(i)}})
			}
			if _, err := conn.Producer(kombu.WithRoutingKey(q.Name)).PublishBatch(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[string]int{}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := conn.Consumer([]kombu.Queue{q}, kombu.WithPrefetch(50), kombu.WithConcurrency(4),
				kombu.WithBatchSize(16), kombu.WithDeferredAcks(time.Hour)).Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
				var v struct{ ID string }
				if err := m.Decode(&v); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				seen[v.ID]++
				if len(seen) == 200 {
					cancel()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != 200 {
				t.Fatalf("handled %d messages", len(seen))
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s handled %d times", id, n)
				}
			}
			if n, _ := conn.Len(ctx, q.Name); n != 0 {
				t.Errorf("%d messages back in the queue", n)
			}
			in, ok := conn.Transport().Backend().(transport.Inspector)
			if !ok {
				t.Fatal("backend is not an Inspector")
			}
			if n, _, err := in.Unacked(ctx); err != nil || n != 0 {
				t.Errorf("%d unacked records left (%v)", n, err)
			}
		})
	}
}
