package otelcelery_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/otelcelery"
	_ "github.com/kombu-go/kombu/redis"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceCrossesPythonInterop proves, against a real Celery worker: a
// trace started in Go reaches a Python task (it finds traceparent, and the
// tracestate and baggage, on its request, where Celery puts protocol 2
// message headers and the Python instrumentation's getter reads them),
// which sends the next task to the Go worker with the context passed on in
// the message headers, as the instrumentation injects it; the Go worker's
// run span continues the original trace, parented under the span the
// Python side named, and the handler sees the tracestate and baggage.
func TestTraceCrossesPythonInterop(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	testenv.RequirePython(t, "celery", "kombu", "redis")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefix := testenv.Prefix()
	pyQueue, goQueue := "py-"+uuid.NewString()[:8], "go-"+uuid.NewString()[:8]
	conn, err := kombu.Dial(ctx, redisURL+"?global_keyprefix="+prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	backend := celery.NewBackend(rc)

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	oopts := []otelcelery.Option{otelcelery.WithTracerProvider(tp), otelcelery.WithPropagator(prop)}

	type seen struct {
		span  trace.SpanContext
		bag   string
		state string
		n     any
	}
	got := make(chan seen, 1)
	w := celery.NewWorker(conn, backend, append([]celery.WorkerOption{celery.WithQueues(goQueue), celery.WithConcurrency(1),
		celery.WithShutdownTimeout(5 * time.Second)}, otelcelery.WorkerOptions(oopts...)...)...)
	w.Register("otel.finish", func(ctx context.Context, t *celery.Task) (any, error) {
		sc := trace.SpanContextFromContext(ctx)
		got <- seen{sc, baggage.FromContext(ctx).Member("user").Value(), sc.TraceState().String(), t.Args[0]}
		return "done", nil
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Dir: dir, Queue: pyQueue, Node: "otel", Env: []string{
		"KOMBU_TEST_BROKER=" + redisURL, "KOMBU_TEST_BACKEND=" + redisURL, "KOMBU_TEST_PREFIX=" + prefix,
		"KOMBU_TEST_QUEUE=" + pyQueue, "KOMBU_TEST_GO_QUEUE=" + goQueue, "PYTHONDONTWRITEBYTECODE=1",
	}})
	client := celery.NewClient(conn, backend, append([]celery.ClientOption{celery.WithDefaultQueue(pyQueue)}, otelcelery.ClientOptions(oopts...)...)...)

	// The trace comes from upstream with a tracestate, and carries baggage.
	upstream := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled, Remote: true})
	ts, err := trace.ParseTraceState("kombu=go")
	if err != nil {
		t.Fatal(err)
	}
	upstream = upstream.WithTraceState(ts)
	m, _ := baggage.NewMember("user", "alice")
	bag, _ := baggage.New(m)
	rctx := baggage.ContextWithBaggage(trace.ContextWithRemoteSpanContext(ctx, upstream), bag)
	rctx, root := tp.Tracer("test").Start(rctx, "request")
	r, err := client.SendTask(rctx, "otel.relay", []any{1}, nil)
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Get(ctx)
	if err != nil {
		t.Fatalf("otel.relay: %v", err)
	}
	relay, _ := v.(map[string]any)
	sent, _ := relay["sent"].(map[string]any)
	var s seen
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatalf("the Go worker never ran otel.finish (relay returned %v)", v)
	}

	pub := byName(exp.GetSpans(), "apply_async/otel.relay")
	if len(pub) != 1 {
		t.Fatalf("apply_async spans: %v", names(exp.GetSpans()))
	}
	tid := upstream.TraceID()
	if want := fmt.Sprintf("00-%s-%s-01", tid, pub[0].SpanContext.SpanID()); relay["received"] != want {
		t.Errorf("the Python task read traceparent %v from its request, want %s", relay["received"], want)
	}
	if sent["tracestate"] != "kombu=go" || sent["baggage"] != "user=alice" {
		t.Errorf("the Python task passed on %v", sent)
	}
	var pySpan string
	if tp, _ := sent["traceparent"].(string); len(tp) == 55 {
		pySpan = tp[36:52]
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(byName(exp.GetSpans(), "run/otel.finish")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runs := byName(exp.GetSpans(), "run/otel.finish")
	if len(runs) != 1 {
		t.Fatalf("run spans: %v", names(exp.GetSpans()))
	}
	run := runs[0]
	if run.SpanContext.TraceID() != tid || !run.Parent.IsRemote() || run.Parent.SpanID().String() != pySpan {
		t.Errorf("Go run span: trace %v (want %v), parent %v remote %v (want the Python span %s)",
			run.SpanContext.TraceID(), tid, run.Parent.SpanID(), run.Parent.IsRemote(), pySpan)
	}
	if s.span.SpanID() != run.SpanContext.SpanID() || s.bag != "alice" || s.state != "kombu=go" || fmt.Sprint(s.n) != "2" {
		t.Errorf("Go handler saw span %v (run %v), baggage %q, tracestate %q, arg %v", s.span.SpanID(), run.SpanContext.SpanID(), s.bag, s.state, s.n)
	}
	checkAttrs(t, run, map[string]string{"celery.action": "run", "celery.task_name": "otel.finish",
		"messaging.message.id": fmt.Sprint(relay["next"]), "messaging.destination": goQueue, "celery.state": "SUCCESS"})
}
