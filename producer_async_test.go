package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// TestPublishAsync proves: messages published with PublishAsync from one
// goroutine (more than the window, so PublishAsync blocks and resumes) all
// arrive once, with the delivery tags their futures report; the body is
// serialized before PublishAsync returns (changing it afterwards changes
// nothing); Flush returns nil when every publish succeeded; and a mandatory
// publish that matches no queue fails in its own future and in Flush (with
// the count and the first error, errors.Is ErrNoRoute), while Flush after
// that reports nothing new.
func TestPublishAsync(t *testing.T) {
	for name, conn := range batchConns(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			ex := kombu.Exchange{Name: "ax-" + uuid.NewString(), Type: kombu.Direct}
			q := "aq-" + uuid.NewString()
			if err := conn.Bind(ctx, q, ex, "k"); err != nil {
				t.Fatal(err)
			}
			p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("k"))
			n := kombu.AsyncWindow + 500
			futures := make([]*kombu.PublishFuture, n)
			body := map[string]string{}
			for i := range n {
				body["ID"] = fmt.Sprint(i)
				f, err := p.PublishAsync(ctx, body)
				if err != nil {
					t.Fatal(err)
				}
				futures[i] = f
			}
			body["ID"] = "changed"
			if err := p.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			for i, f := range futures {
				select {
				case <-f.Done():
				default:
					t.Fatalf("future %d is not done after Flush", i)
				}
				res, err := f.Wait(ctx)
				if err != nil || res.Routed != 1 || res.DeliveryTag == "" {
					t.Fatalf("future %d: %+v, %v", i, res, err)
				}
			}
			ids := drainIDs(t, conn, q)
			if len(ids) != n {
				t.Fatalf("queue holds %d messages, want %d", len(ids), n)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if id == "changed" || seen[id] {
					t.Fatalf("unexpected or repeated body %q", id)
				}
				seen[id] = true
			}

			f, err := p.PublishAsync(ctx, map[string]string{"ID": "lost"}, kombu.WithRoutingKey("nowhere"), kombu.WithMandatory())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Wait(ctx); !errors.Is(err, kombu.ErrNoRoute) {
				t.Fatalf("unroutable future: %v, want ErrNoRoute", err)
			}
			err = p.Flush(ctx)
			if !errors.Is(err, kombu.ErrNoRoute) || !strings.Contains(err.Error(), "1 asynchronous publishes failed") {
				t.Fatalf("Flush after an unroutable publish: %v", err)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatalf("second Flush: %v (the failure was already reported)", err)
			}
		})
	}
}

// TestPublishAsyncCancelled proves: PublishAsync with an ended context
// starts nothing and says so.
func TestPublishAsyncCancelled(t *testing.T) {
	conn := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := "aq-" + uuid.NewString()
	f, err := conn.Producer(kombu.WithRoutingKey(q), kombu.WithDeclare(kombu.Queue{Name: q})).PublishAsync(ctx, "x")
	if f != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("PublishAsync with a cancelled context: %v, %v; want nil, context.Canceled", f, err)
	}
	if n, _ := conn.Len(context.Background(), q); n != 0 {
		t.Fatalf("queue holds %d messages", n)
	}
}
