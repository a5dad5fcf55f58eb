package otelcelery_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/otelcelery"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkSendTask measures SendTask on the memory transport with
// tracing off and on (every span sampled, batched to a no-op exporter):
// the cost of the producer span and the injection alone.
func BenchmarkSendTask(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "tracing"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			conn, err := kombu.Dial(ctx, "memory://"+uuid.NewString())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			var opts []celery.ClientOption
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				defer tp.Shutdown(ctx)
				opts = otelcelery.ClientOptions(otelcelery.WithTracerProvider(tp), otelcelery.WithPropagator(propagation.TraceContext{}))
			}
			client := celery.NewClient(conn, nil, opts...)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.SendTask(ctx, "tasks.add", []any{1, 2}, nil); err != nil {
					b.Fatal(err)
				}
			}
			_, _ = conn.Purge(ctx, celery.DefaultQueue)
		})
	}
}
