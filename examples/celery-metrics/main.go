// Command celery-metrics serves Prometheus metrics of a Celery estate on
// /metrics, with celery-exporter's names and labels (see package
// celeryprom), so a Grafana dashboard built for celery-exporter shows Go
// and Python workers alike. It listens to the workers' events: start Go
// workers with celery.WithEvents and Python ones with -E (and clients with
// task_send_sent_event / celery.WithSentEvents for task-sent).
//
//	go run ./examples/celery-metrics --url redis://localhost:6379/0 --listen :9808 --queues celery,reports
//	curl -s localhost:9808/metrics | grep celery_task_succeeded_total
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celeryprom"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// config is the command line.
type config struct {
	url, listen   string
	queues        []string
	workerTimeout time.Duration
}

func main() {
	var cfg config
	var queues string
	flag.StringVar(&cfg.url, "url", cmp.Or(os.Getenv("KOMBU_URL"), "redis://localhost:6379/0"), "broker URL (Celery's broker_url); $KOMBU_URL sets the default")
	flag.StringVar(&cfg.listen, "listen", ":9808", "address to serve /metrics on (celery-exporter's port)")
	flag.StringVar(&queues, "queues", "", "comma-separated queues whose length is exported even with no worker on them")
	flag.DurationVar(&cfg.workerTimeout, "worker-timeout", 5*time.Minute, "report a worker down after this long without a heartbeat")
	flag.Parse()
	if queues != "" {
		cfg.queues = strings.Split(queues, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "celery-metrics:", err)
		os.Exit(1)
	}
}

// run serves /metrics until ctx ends; ready, if set, gets the address
// once the exporter listens to events and the server accepts scrapes.
func run(ctx context.Context, cfg config, out io.Writer, ready func(addr string)) error {
	conn, err := kombu.Dial(ctx, cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	exp := celeryprom.NewExporter(conn, celeryprom.WithQueues(cfg.queues...), celeryprom.WithWorkerTimeout(cfg.workerTimeout))
	reg := prometheus.NewRegistry()
	if err := reg.Register(exp); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	listening := make(chan struct{})
	events := make(chan error, 1)
	go func() { events <- exp.Run(ctx, func() { close(listening) }) }()
	select {
	case <-listening:
	case err := <-events:
		_ = srv.Close()
		return fmt.Errorf("event receiver: %w", err)
	}
	fmt.Fprintf(out, "serving http://%s/metrics\n", ln.Addr())
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err = <-events:
	case err = <-served:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
