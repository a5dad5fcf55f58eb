package kombu_test

import (
	"context"
	"fmt"
	"time"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
)

// Publish a JSON message to a direct exchange and consume it with a handler
// that acks by returning nil.
func Example() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	ex := kombu.Exchange{Name: "orders", Type: kombu.Direct}
	q := kombu.Queue{Name: "orders.created", Exchange: ex, RoutingKey: "created"}
	p := conn.Producer(kombu.WithExchange(ex), kombu.WithDeclare(q))
	if _, err := p.Publish(ctx, map[string]any{"id": 42}, kombu.WithRoutingKey("created")); err != nil {
		panic(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := conn.Consumer([]kombu.Queue{q})
	_ = c.Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
		var order struct{ ID int }
		if err := m.Decode(&order); err != nil {
			return err // requeued
		}
		fmt.Println("order", order.ID, "via", m.DeliveryInfo.RoutingKey, m.ContentType)
		cancel()
		return nil // acked
	})
	// Output: order 42 via created application/json
}

// A SimpleQueue is used like a channel, and is interoperable with Python's
// kombu.simple.SimpleQueue of the same name.
func ExampleSimpleQueue() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://simple-example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	q, err := conn.SimpleQueue(ctx, "greetings")
	if err != nil {
		panic(err)
	}
	defer q.Close()
	_ = q.Put(ctx, "hello")
	m, err := q.Get(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(m.Body), m.ContentType)
	_ = m.Ack(ctx)
	// Output: hello text/plain
}
