package kombuprom_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/kombuprom"
)

// A connection whose publishes, deliveries and settlements are counted,
// with the queue's length read at each scrape. A service serves the
// registry with promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) on
// /metrics.
func Example() {
	ctx := context.Background()
	metrics := kombuprom.New(kombuprom.Options{})
	conn, err := kombu.Dial(ctx, "memory://kombuprom-example", kombu.WithObserver(metrics))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	if _, err := conn.DeclareQueue(ctx, kombu.Queue{Name: "jobs"}); err != nil {
		panic(err)
	}
	metrics.WatchQueues(conn, "jobs")

	if _, err := conn.Producer(kombu.WithRoutingKey("jobs")).Publish(ctx, "hello"); err != nil {
		panic(err)
	}
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kombu_queue_length Messages waiting in a queue's priority list (read from the broker at scrape).
# TYPE kombu_queue_length gauge
kombu_queue_length{priority="0",queue="jobs"} 1
kombu_queue_length{priority="3",queue="jobs"} 0
kombu_queue_length{priority="6",queue="jobs"} 0
kombu_queue_length{priority="9",queue="jobs"} 0
`), "kombu_queue_length")
	fmt.Println("queue length metric as expected:", err == nil)
	// Output: queue length metric as expected: true
}
