package otelcelery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/otelcelery"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type env struct {
	exp    *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	client *celery.Client
	queue  string
}

// setup returns a client and a started worker on the memory transport,
// both traced into an in-memory exporter; register adds the handlers.
func setup(t *testing.T, register func(w *celery.Worker)) *env {
	t.Helper()
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	conn, err := kombu.Dial(ctx, "memory://otelcelery-"+uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	q := "q-" + uuid.NewString()[:8]
	opts := []otelcelery.Option{otelcelery.WithTracerProvider(tp), otelcelery.WithPropagator(prop)}
	client := celery.NewClient(conn, nil, append([]celery.ClientOption{celery.WithDefaultQueue(q)}, otelcelery.ClientOptions(opts...)...)...)
	w := celery.NewWorker(conn, nil, append([]celery.WorkerOption{celery.WithQueues(q), celery.WithConcurrency(2),
		celery.WithShutdownTimeout(2 * time.Second)}, otelcelery.WorkerOptions(opts...)...)...)
	register(w)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown() })
	return &env{exp: exp, tp: tp, client: client, queue: q}
}

// wait returns the ended spans once n spans named name have ended.
func (e *env) wait(t *testing.T, name string, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := e.exp.GetSpans()
		if len(byName(spans, name)) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %q spans ended, want %d; have %v", len(byName(spans, name)), name, n, names(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func byName(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func checkAttrs(t *testing.T, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: attribute %s = %q, want %q (all: %v)", s.Name, k, got[k], v, got)
		}
	}
}

// TestTraceSendAndRun proves: a task sent inside a span gets a producer
// span apply_async/<task> (child of it) with Python's attributes, the
// traceparent and baggage headers in its message; the worker's consumer
// span run/<task> is a child of the producer span in the same trace, the
// handler's context carries it and the baggage; a failed task's run span
// has status Error and an exception event.
func TestTraceSendAndRun(t *testing.T) {
	type seen struct {
		header string
		span   trace.SpanContext
		bag    string
	}
	got := make(chan seen, 1)
	e := setup(t, func(w *celery.Worker) {
		w.Register("add", func(ctx context.Context, t *celery.Task) (any, error) {
			h, _ := t.Headers["traceparent"].(string)
			got <- seen{h, trace.SpanContextFromContext(ctx), baggage.FromContext(ctx).Member("user").Value()}
			return 3, nil
		})
		w.Register("boom", func(ctx context.Context, t *celery.Task) (any, error) {
			return nil, celery.NewError("ValueError", "bad input")
		})
	})
	m, _ := baggage.NewMember("user", "alice")
	bag, _ := baggage.New(m)
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	ctx, root := e.tp.Tracer("test").Start(ctx, "request")
	r, err := e.client.SendTask(ctx, "add", []any{1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := e.client.SendTask(ctx, "boom", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	root.End()
	s := <-got
	spans := e.wait(t, "run/boom", 1)
	spans = e.wait(t, "run/add", 1)
	rootSC := root.SpanContext()
	pub := byName(spans, "apply_async/add")
	if len(pub) != 1 {
		t.Fatalf("apply_async/add spans: %v", names(spans))
	}
	p := pub[0]
	if p.SpanKind != trace.SpanKindProducer || p.Parent.SpanID() != rootSC.SpanID() || p.SpanContext.TraceID() != rootSC.TraceID() {
		t.Errorf("producer span: kind %v parent %v trace %v", p.SpanKind, p.Parent.SpanID(), p.SpanContext.TraceID())
	}
	checkAttrs(t, p, map[string]string{"celery.action": "apply_async", "celery.task_name": "add",
		"messaging.message.id": r.ID, "messaging.destination": e.queue, "messaging.system": "redis"})
	want := fmt.Sprintf("00-%s-%s-01", rootSC.TraceID(), p.SpanContext.SpanID())
	if s.header != want {
		t.Errorf("traceparent header %q, want %q", s.header, want)
	}
	if s.bag != "alice" {
		t.Errorf("baggage in the handler: %q", s.bag)
	}
	run := byName(spans, "run/add")[0]
	if run.SpanKind != trace.SpanKindConsumer || run.Parent.SpanID() != p.SpanContext.SpanID() || run.SpanContext.TraceID() != rootSC.TraceID() {
		t.Errorf("consumer span: kind %v parent %v (want %v) trace %v", run.SpanKind, run.Parent.SpanID(), p.SpanContext.SpanID(), run.SpanContext.TraceID())
	}
	if s.span.SpanID() != run.SpanContext.SpanID() {
		t.Errorf("handler context span %v, want the run span %v", s.span.SpanID(), run.SpanContext.SpanID())
	}
	checkAttrs(t, run, map[string]string{"celery.action": "run", "celery.task_name": "add", "messaging.message.id": r.ID,
		"messaging.destination": e.queue, "celery.state": "SUCCESS", "messaging.conversation_id": r.ID})
	if run.Status.Code != codes.Unset {
		t.Errorf("successful run status %v", run.Status)
	}
	fail := byName(spans, "run/boom")[0]
	checkAttrs(t, fail, map[string]string{"celery.state": "FAILURE", "messaging.message.id": fr.ID})
	if fail.Status.Code != codes.Error || !strings.Contains(fail.Status.Description, "bad input") {
		t.Errorf("failed run status %v", fail.Status)
	}
	if len(fail.Events) != 1 || fail.Events[0].Name != "exception" {
		t.Errorf("failed run events %v", fail.Events)
	}
}

// TestRetryAndChainParenting proves: a retry is sent within the run span
// (its apply_async span a child of the run, with celery.retry.reason on the
// run and no error status), and the retried run continues the trace under
// it with celery.retries 1; a chain's next step is sent within the first
// step's run span, so the whole workflow is one trace.
func TestRetryAndChainParenting(t *testing.T) {
	var mu sync.Mutex
	tries := 0
	e := setup(t, func(w *celery.Worker) {
		w.Register("flaky", func(ctx context.Context, t *celery.Task) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			tries++
			if tries == 1 {
				return nil, t.Retry(errors.New("busy"), 0)
			}
			return "ok", nil
		})
		w.Register("add", func(ctx context.Context, t *celery.Task) (any, error) {
			var x, y int
			if err := t.Arg(0, &x); err != nil {
				return nil, err
			}
			if err := t.Arg(1, &y); err != nil {
				return nil, err
			}
			return x + y, nil
		})
	})
	ctx, root := e.tp.Tracer("test").Start(context.Background(), "request")
	if _, err := e.client.SendTask(ctx, "flaky", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Apply(ctx, celery.Chain(celery.NewSignature("add", []any{1, 2}, nil), celery.NewSignature("add", []any{3}, nil))); err != nil {
		t.Fatal(err)
	}
	root.End()
	e.wait(t, "run/flaky", 2)
	spans := e.wait(t, "run/add", 2)
	tid := root.SpanContext().TraceID()
	for _, s := range spans {
		if s.SpanContext.TraceID() != tid {
			t.Errorf("span %s in trace %v, want %v", s.Name, s.SpanContext.TraceID(), tid)
		}
	}
	// Python orders nothing; find each span by its parent.
	child := func(parent trace.SpanID, name string) tracetest.SpanStub {
		t.Helper()
		for _, s := range spans {
			if s.Name == name && s.Parent.SpanID() == parent {
				return s
			}
		}
		t.Fatalf("no %s span under %v in %v", name, parent, names(spans))
		return tracetest.SpanStub{}
	}
	pub := child(root.SpanContext().SpanID(), "apply_async/flaky")
	run1 := child(pub.SpanContext.SpanID(), "run/flaky")
	checkAttrs(t, run1, map[string]string{"celery.state": "RETRY", "celery.retry.reason": "busy"})
	if run1.Status.Code != codes.Unset {
		t.Errorf("retried run status %v", run1.Status)
	}
	pub2 := child(run1.SpanContext.SpanID(), "apply_async/flaky")
	run2 := child(pub2.SpanContext.SpanID(), "run/flaky")
	checkAttrs(t, run2, map[string]string{"celery.state": "SUCCESS", "celery.retries": "1"})
	step1 := child(child(root.SpanContext().SpanID(), "apply_async/add").SpanContext.SpanID(), "run/add")
	step2 := child(child(step1.SpanContext.SpanID(), "apply_async/add").SpanContext.SpanID(), "run/add")
	if a := attrs(step2); a["messaging.message.id"] == attrs(step1)["messaging.message.id"] {
		t.Errorf("chain steps share an id: %v", a)
	}
}
