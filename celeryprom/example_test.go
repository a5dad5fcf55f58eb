package celeryprom_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/celeryprom"
	_ "github.com/kombu-go/kombu/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// An exporter registered with a Prometheus registry, fed the events of a
// Go worker, serving /metrics.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory://celeryprom-example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	exp := celeryprom.NewExporter(conn, celeryprom.WithInspectTimeout(100*time.Millisecond))
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp)
	listening := make(chan struct{})
	go exp.Run(ctx, func() { close(listening) })
	<-listening

	w := celery.NewWorker(conn, nil, celery.WithEvents(), celery.WithHostname("celery@worker-1"))
	w.Register("tasks.add", func(ctx context.Context, t *celery.Task) (any, error) { return 3, nil })
	if err := w.Start(ctx); err != nil {
		panic(err)
	}
	defer w.Shutdown()
	if _, err := celery.NewClient(conn, nil).SendTask(ctx, "tasks.add", []any{1, 2}, nil); err != nil {
		panic(err)
	}

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	const want = `celery_task_succeeded_total{hostname="worker-1",name="tasks.add",queue_name="celery"} 1`
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(page), want) {
			fmt.Println(want)
			break
		}
	}
	// Output:
	// celery_task_succeeded_total{hostname="worker-1",name="tasks.add",queue_name="celery"} 1
}
