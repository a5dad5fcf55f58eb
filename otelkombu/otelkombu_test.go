package otelkombu_test

import (
	"context"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/otelkombu"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestPublishConsumeTrace proves: a publish inside a parent span writes a
// W3C traceparent header, and the consumer span continues the same trace
// as a child of the producer span, with the messaging attributes.
func TestPublishConsumeTrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	opts := otelkombu.Options(otelkombu.WithTracerProvider(tp), otelkombu.WithPropagator(prop))
	conn, err := kombu.Dial(ctx, "memory://otel-"+t.Name(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := kombu.Queue{Name: "otel-q"}
	pctx, root := tp.Tracer("test").Start(ctx, "root")
	res, err := conn.Producer(kombu.WithDeclare(q)).Publish(pctx, "x", kombu.WithRoutingKey(q.Name))
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *kombu.Message, 1)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- conn.Consumer([]kombu.Queue{q}).Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
			if !trace.SpanContextFromContext(ctx).IsValid() {
				t.Error("handler context has no span")
			}
			got <- m
			return nil
		})
	}()
	var m *kombu.Message
	select {
	case m = <-got:
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	stop()
	<-done
	if tp, _ := m.Headers["traceparent"].(string); len(tp) != 55 {
		t.Fatalf("traceparent header %q", m.Headers["traceparent"])
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	send, proc, r := byName["send otel-q"], byName["process otel-q"], byName["root"]
	if send.Name == "" || proc.Name == "" || r.Name == "" {
		t.Fatalf("spans: %v", spans)
	}
	if send.Parent.SpanID() != r.SpanContext.SpanID() || proc.Parent.SpanID() != send.SpanContext.SpanID() ||
		proc.SpanContext.TraceID() != r.SpanContext.TraceID() {
		t.Fatal("spans not chained root -> send -> process")
	}
	if send.SpanKind != trace.SpanKindProducer || proc.SpanKind != trace.SpanKindConsumer {
		t.Fatal("wrong span kinds")
	}
	attrs := map[string]string{}
	for _, a := range proc.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["messaging.system"] != "redis" || attrs["messaging.message.id"] != res.DeliveryTag || attrs["messaging.destination.name"] != "otel-q" {
		t.Fatalf("process attributes %v", attrs)
	}
}
