package main

import (
	"context"
	"fmt"
	"log"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/celeryprom"
	"github.com/kombu-go/kombu/kombuprom"
	"github.com/kombu-go/kombu/otelcelery"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// obsMode is what a row of the obs group turns on.
type obsMode struct {
	label   string
	tracing bool // otelcelery, every span sampled, a batch processor to a no-op exporter
	metrics bool // task events on, a celeryprom exporter consuming them
}

var obsModes = []obsMode{
	{label: "off"},
	{label: "tracing on (otelcelery, all sampled, batched to a no-op exporter)", tracing: true},
	{label: "metrics on (task events, celeryprom consuming them)", metrics: true},
	{label: "tracing and metrics on", tracing: true, metrics: true},
}

// tracerProvider is an SDK provider that samples everything and drops the
// spans in a no-op exporter behind the batch processor a service would use.
func tracerProvider() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
}

func otelOpts(tp *sdktrace.TracerProvider) []otelcelery.Option {
	return []otelcelery.Option{otelcelery.WithTracerProvider(tp),
		otelcelery.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))}
}

// obs measures what tracing (otelcelery) and metrics (task events feeding
// celeryprom) cost per task: SendTask from one goroutine, and a Go worker
// draining no-op tasks with results stored, each off and on; the notes
// give the time per message on over off.
func (r *runner) obs() {
	_, backendURL, brokerDB, backendDB := r.celeryURLs()
	bc := goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, DB: brokerDB, Protocol: 2})
	defer bc.Close()
	rc := goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, DB: backendDB, Protocol: 2})
	defer rc.Close()
	d := r.benchtime()
	n := 20000
	if *flagQuick {
		n = 3000
	}
	var sendOff, drainOff float64
	var ratios []string
	for _, m := range obsModes {
		if m.metrics {
			continue // a client sends no events without WithSentEvents; metrics cost nothing here
		}
		res := measure(d, 0, r.obsSendBench(backendURL, m))
		r.add(row{group: "obs", name: "SendTask of a no-op task, 1 goroutine, " + m.label,
			goRate: res.rate, allocs: res.allocs, bytes: res.bytes, server: res.server})
		if !m.tracing {
			sendOff = res.rate
		} else {
			ratios = append(ratios, fmt.Sprintf("SendTask with %s %.2f×", m.label, sendOff/res.rate))
		}
	}
	cores := runtime.NumCPU()
	for _, m := range obsModes {
		var rates []float64
		var res result
		for range max(1, *flagReps) {
			res = r.drain(bc, rc, r.url, backendURL, "bench.noop", n, true, r.obsWorker(backendURL, cores, m))
			rates = append(rates, res.rate)
		}
		res.rate = median(rates)
		r.add(row{group: "obs", name: fmt.Sprintf("worker, no-op task, results stored, concurrency %d, %s", cores, m.label),
			goRate: res.rate, allocs: res.allocs, bytes: res.bytes, server: res.server})
		if m == obsModes[0] {
			drainOff = res.rate
		} else {
			ratios = append(ratios, fmt.Sprintf("worker with %s %.2f×", m.label, drainOff/res.rate))
		}
	}
	// The transport's own metrics (kombuprom, a kombu.Observer): publish
	// and consume + ack, off and on.
	for _, w := range []struct {
		label string
		f     func() func(b *testing.B)
	}{
		{"publish, direct exchange, 1 goroutine, 1 connection", func() func(b *testing.B) { return r.publishBench(100, 1, 1, kombu.Direct) }},
		{"consume + ack, 1 consumer, defaults (prefetch 4)", func() func(b *testing.B) {
			return r.consumeBench(consumeCfg{size: 100, queues: 1, concurrency: 1, conns: 1}, nil)
		}},
	} {
		off := measure(d, 0, w.f())
		r.observer = kombuprom.New(kombuprom.Options{})
		on := measure(d, 0, w.f())
		r.observer = nil
		r.add(row{group: "obs", name: w.label + ", metrics off", goRate: off.rate, allocs: off.allocs, bytes: off.bytes, server: off.server})
		r.add(row{group: "obs", name: w.label + ", metrics on (kombuprom)", goRate: on.rate, allocs: on.allocs, bytes: on.bytes, server: on.server})
		ratios = append(ratios, fmt.Sprintf("%s with kombuprom %.2f×", w.label, off.rate/on.rate))
	}
	r.notes = append(r.notes, "Observability cost, time per task on over off (1.00× is free): "+strings.Join(ratios, "; ")+".")
}

// obsSendBench is sendTaskBench's one-goroutine case with m's
// instrumentation on the client.
func (r *runner) obsSendBench(backendURL string, m obsMode) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial("max_connections=1")
		defer conn.Close()
		backend, err := celery.OpenBackend(backendURL)
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		q := names(1)[0]
		opts := []celery.ClientOption{celery.WithDefaultQueue(q)}
		if m.tracing {
			tp := tracerProvider()
			defer tp.Shutdown(context.Background())
			opts = append(opts, otelcelery.ClientOptions(otelOpts(tp)...)...)
		}
		client := celery.NewClient(conn, backend, opts...)
		if _, err := client.SendTask(r.ctx, "bench.noop", nil, nil); err != nil { // declares the queue
			b.Fatal(err)
		}
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for range b.N {
			if _, err := client.SendTask(r.ctx, "bench.noop", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		r.serverStop(b.N)
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// obsWorker is goWorker with m's instrumentation.
func (r *runner) obsWorker(backendURL string, concurrency int, m obsMode) startWorker {
	return func(queue string) func() {
		conn := r.dial("")
		backend, err := celery.OpenBackend(backendURL)
		if err != nil {
			log.Fatal(err)
		}
		opts := []celery.WorkerOption{celery.WithQueues(queue), celery.WithConcurrency(concurrency)}
		var tp *sdktrace.TracerProvider
		if m.tracing {
			tp = tracerProvider()
			opts = append(opts, otelcelery.WorkerOptions(otelOpts(tp)...)...)
		}
		ctx, cancel := context.WithCancel(r.ctx)
		var wg sync.WaitGroup
		if m.metrics {
			opts = append(opts, celery.WithEvents())
			exp := celeryprom.NewExporter(conn)
			ready := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := exp.Run(ctx, func() { close(ready) }); err != nil {
					log.Printf("celeryprom: %v", err)
				}
			}()
			<-ready
		}
		w := celery.NewWorker(conn, backend, opts...)
		w.Register("bench.noop", func(context.Context, *celery.Task) (any, error) { return nil, nil })
		if err := w.Start(r.ctx); err != nil {
			log.Fatal(err)
		}
		return func() {
			if err := w.Shutdown(); err != nil {
				log.Printf("Go worker: %v", err)
			}
			cancel()
			wg.Wait()
			if tp != nil {
				_ = tp.Shutdown(context.Background())
			}
			backend.Close()
			conn.Close()
		}
	}
}
