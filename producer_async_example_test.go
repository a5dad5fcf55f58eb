package kombu_test

import (
	"context"
	"fmt"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
)

// Publish many messages from one goroutine without waiting for each, then
// wait for them all with Flush.
func ExampleProducer_PublishAsync() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://example-async")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	q := kombu.Queue{Name: "events"}
	p := conn.Producer(kombu.WithRoutingKey("events"), kombu.WithDeclare(q))
	var futures []*kombu.PublishFuture
	for i := range 100 {
		f, err := p.PublishAsync(ctx, map[string]any{"n": i})
		if err != nil {
			panic(err) // nothing was started for this message
		}
		futures = append(futures, f)
	}
	if err := p.Flush(ctx); err != nil {
		panic(err) // counts the failures; each future holds its own error
	}
	res, err := futures[0].Wait(ctx)
	fmt.Println(err == nil, res.Routed)
	n, _ := conn.Len(ctx, "events")
	fmt.Println(n)
	// Output:
	// true 1
	// 100
}
