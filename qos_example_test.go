package kombu_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
)

// Two consumers share one prefetch limit of 2, as the consumers of one
// Kombu channel share its QoS: between them at most two messages are
// delivered and not settled. Raising the limit (QoS.Increment) lets a
// third through while those two are still held.
func ExampleWithQoS() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://qos-example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	queues := []kombu.Queue{{Name: "images"}, {Name: "videos"}}
	for _, q := range queues {
		p := conn.Producer(kombu.WithRoutingKey(q.Name), kombu.WithDeclare(q))
		for i := range 3 {
			if _, err := p.Publish(ctx, fmt.Sprint(q.Name, i)); err != nil {
				panic(err)
			}
		}
	}

	qos := kombu.NewQoS(2)
	var held atomic.Int32
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, q := range queues {
		c := conn.Consumer([]kombu.Queue{q}, kombu.WithQoS(qos), kombu.WithManualAck(), kombu.WithConcurrency(3))
		go c.Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
			held.Add(1) // never settled: each keeps its slot
			return nil
		})
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Println("held:", held.Load(), "unsettled:", qos.Unsettled())
	qos.Increment(1)
	time.Sleep(200 * time.Millisecond)
	fmt.Println("held:", held.Load(), "prefetch:", qos.Prefetch())
	// Output:
	// held: 2 unsettled: 2
	// held: 3 prefetch: 3
}
