package kombu_test

import (
	"context"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
)

// TestPublishAndHandlerMiddleware proves: a publish middleware's header
// reaches the consumer, it sees the delivery tag the transport generated,
// and a handler middleware sees the message and the handler's error.
func TestPublishAndHandlerMiddleware(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pubTag string
	var order []string
	pmw := func(next kombu.PublishFunc) kombu.PublishFunc {
		return func(ctx context.Context, m *kombu.OutgoingMessage) (kombu.PublishResult, error) {
			m.Headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			order = append(order, "outer")
			r, err := next(ctx, m)
			pubTag = r.DeliveryTag
			return r, err
		}
	}
	inner := func(next kombu.PublishFunc) kombu.PublishFunc {
		return func(ctx context.Context, m *kombu.OutgoingMessage) (kombu.PublishResult, error) {
			order = append(order, "inner")
			return next(ctx, m)
		}
	}
	seen := make(chan string, 1)
	hmw := func(next kombu.Handler) kombu.Handler {
		return func(ctx context.Context, m *kombu.Message) error {
			err := next(ctx, m)
			seen <- m.Headers["traceparent"].(string) + "|" + m.DeliveryTag
			return err
		}
	}
	conn, err := kombu.Dial(ctx, "memory://hooks-"+t.Name(), kombu.WithPublishMiddleware(pmw, inner), kombu.WithHandlerMiddleware(hmw))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := kombu.Queue{Name: "hooks-test"}
	if _, err := conn.Producer(kombu.WithDeclare(q)).Publish(ctx, "x", kombu.WithRoutingKey(q.Name)); err != nil {
		t.Fatal(err)
	}
	if pubTag == "" || len(order) != 2 || order[0] != "outer" || order[1] != "inner" {
		t.Fatalf("tag %q order %v", pubTag, order)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- conn.Consumer([]kombu.Queue{q}).Consume(cctx, func(context.Context, *kombu.Message) error { return nil })
	}()
	select {
	case got := <-seen:
		want := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01|" + pubTag
		if got != want {
			t.Fatalf("handler middleware saw %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := kombu.Dial(ctx, "memory://", kombu.WithPublishMiddleware(nil)); err == nil {
		t.Fatal("nil middleware accepted")
	}
}
