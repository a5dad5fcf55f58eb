package otelcelery_test

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/otelcelery"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A client and a worker traced as Python's Celery instrumentation traces
// them: the worker's run span continues the client's trace.
func Example() {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	opts := []otelcelery.Option{otelcelery.WithTracerProvider(tp), otelcelery.WithPropagator(propagation.TraceContext{})}

	conn, err := kombu.Dial(ctx, "memory://otelcelery-example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	done := make(chan struct{})
	w := celery.NewWorker(conn, nil, otelcelery.WorkerOptions(opts...)...)
	w.Register("hello", func(ctx context.Context, t *celery.Task) (any, error) { close(done); return "hi", nil })
	if err := w.Start(ctx); err != nil {
		panic(err)
	}
	defer w.Shutdown()
	client := celery.NewClient(conn, nil, otelcelery.ClientOptions(opts...)...)

	ctx, span := tp.Tracer("example").Start(ctx, "request")
	if _, err := client.SendTask(ctx, "hello", nil, nil); err != nil {
		panic(err)
	}
	span.End()
	<-done
	for deadline := time.Now().Add(5 * time.Second); len(exp.GetSpans()) < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	// The spans end on different goroutines (the worker may finish the task
	// before SendTask returns), so print them in a fixed order.
	spans := exp.GetSpans()
	sort.Slice(spans, func(i, j int) bool { return spans[i].Name < spans[j].Name })
	for _, s := range spans {
		fmt.Println(s.Name, s.SpanKind, s.SpanContext.TraceID() == span.SpanContext().TraceID())
	}
	// Output:
	// apply_async/hello producer true
	// request internal true
	// run/hello consumer true
}
