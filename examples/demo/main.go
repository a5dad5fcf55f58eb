// Command demo is `make demo`: a real producer and consumer over kombu-go's
// Redis transport, on an embedded miniredis (no setup). It declares a topic
// exchange and two queues, publishes messages with priorities, consumes
// them with acks, and prints what flowed and the Redis keys Kombu would see.
//
// With --url (or KOMBU_URL) it runs against a real Redis instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/redis"
)

func main() {
	url := flag.String("url", os.Getenv("KOMBU_URL"), "broker URL (default: an embedded miniredis)")
	flag.Parse()
	if err := run(*url); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type order struct {
	ID    int    `json:"id"`
	Item  string `json:"item"`
	Rush  bool   `json:"rush"`
	Total string `json:"total"`
}

func run(url string) error {
	var mr *miniredis.Miniredis
	if url == "" {
		var err error
		if mr, err = miniredis.Run(); err != nil {
			return err
		}
		defer mr.Close()
		url = "redis://" + mr.Addr() + "/0"
		fmt.Println("embedded miniredis at", mr.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()

	// A topic exchange and two queues, as a Kombu program would declare them.
	shop := kombu.Exchange{Name: "shop", Type: kombu.Topic}
	orders := kombu.Queue{Name: "orders", Exchange: shop, RoutingKey: "order.*"}
	audit := kombu.Queue{Name: "audit", Exchange: shop, RoutingKey: "#"}
	for _, q := range []kombu.Queue{orders, audit} {
		if _, err := conn.DeclareQueue(ctx, q); err != nil {
			return err
		}
	}

	// Publish: JSON bodies, a priority for rush orders (on Redis, 0 is
	// consumed first), and one message only the audit queue hears.
	p := conn.Producer(kombu.WithExchange(shop))
	items := []string{"tea", "coffee", "cake", "scone", "jam"}
	for i, item := range items {
		o := order{ID: i + 1, Item: item, Rush: i == 3, Total: fmt.Sprintf("%d.50", 3+i)}
		pri := 5
		if o.Rush {
			pri = 0
		}
		res, err := p.Publish(ctx, o, kombu.WithRoutingKey("order.created"), kombu.WithPriority(pri),
			kombu.WithHeader("source", "demo"))
		if err != nil {
			return err
		}
		fmt.Printf("published order %d (%s, priority %d) to %d queues, tag %s\n", o.ID, item, pri, res.Routed, res.DeliveryTag)
	}
	if _, err := p.Publish(ctx, map[string]any{"event": "shop.opened"}, kombu.WithRoutingKey("shop.opened")); err != nil {
		return err
	}
	fmt.Println("published shop.opened (audit only)")

	if mr != nil {
		keys := mr.Keys()
		sort.Strings(keys)
		fmt.Println("redis keys:", strings.ReplaceAll(strings.Join(keys, ", "), "\x06\x16", `\x06\x16`))
	}

	// Consume both queues with acks until every message arrived.
	want := len(items)*2 + 1
	var mu sync.Mutex
	got := 0
	cctx, stop := context.WithCancel(ctx)
	c := conn.Consumer([]kombu.Queue{orders, audit}, kombu.WithPrefetch(4), kombu.WithAccept("json"))
	err = c.Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
		var body map[string]any
		if err := m.Decode(&body); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		got++
		fmt.Printf("consumed from %-6s rk=%-13s priority=%d body=%v\n", m.DeliveryInfo.Queue, m.DeliveryInfo.RoutingKey, m.Properties.Priority, body)
		if got == want {
			stop()
		}
		return nil // ack
	})
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("consumed %d messages, want %d", got, want)
	}
	for _, q := range []string{"orders", "audit"} {
		n, err := conn.Len(ctx, q)
		if err != nil {
			return err
		}
		fmt.Printf("queue %s: %d left\n", q, n)
	}
	fmt.Printf("done: %d messages published and consumed with acks\n", want)
	return nil
}
