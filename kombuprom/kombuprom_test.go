package kombuprom_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/kombuprom"
	_ "github.com/kombu-go/kombu/memory"
)

// scrape serves the registry over HTTP, as a Prometheus server reads it,
// and parses the text exposition.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the family's series with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Errorf("no %s in the scrape", name)
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for _, lp := range m.Label {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Errorf("%s: no series %v", name, labels)
	return -1
}

// Proves the metrics of a connection's message flow on the memory backend,
// scraped over HTTP and parsed as Prometheus parses them: publishes (and
// their round trips), deliveries, each outcome (acked, requeued, rejected,
// dead_lettered for an envelope that does not parse, which the backend
// keeps aside), in-flight back to zero once all
// are settled, fetches, and queue length per priority and unacked records
// read at scrape.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	m := kombuprom.New(kombuprom.Options{})
	conn, err := kombu.Dial(ctx, "memory://"+uuid.NewString(), kombu.WithObserver(m))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	q := kombu.Queue{Name: "work", Exchange: kombu.Exchange{Name: "jobs", Type: kombu.Direct}, RoutingKey: "work"}
	if _, err := conn.DeclareQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	m.WatchQueues(conn, "work")
	p := conn.Producer(kombu.WithExchange(q.Exchange), kombu.WithRoutingKey("work"))
	for _, body := range []string{"ack", "requeue", "reject"} {
		if _, err := p.Publish(ctx, body); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, reg)
	if v := value(t, fams, "kombu_published_total", map[string]string{"exchange": "jobs"}); v != 3 {
		t.Errorf("published %v, want 3", v)
	}
	if v := value(t, fams, "kombu_queue_length", map[string]string{"queue": "work", "priority": "0"}); v != 3 {
		t.Errorf("queue length %v, want 3", v)
	}
	if _, err := conn.PublishRaw(ctx, "", "work", 0, []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := 0
	done := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = conn.Consumer([]kombu.Queue{q}, kombu.WithErrorHandler(func(error) {}), kombu.WithDeadLetterQueue("work.bad")).Consume(cctx, func(_ context.Context, msg *kombu.Message) error {
			var s string
			_ = msg.Decode(&s)
			mu.Lock()
			seen++
			if seen == 4 {
				close(done)
			}
			mu.Unlock()
			switch {
			case s == "requeue" && !msg.Redelivered:
				return errors.New("try again")
			case s == "reject":
				return kombu.ErrReject
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the messages were not all handled")
	}
	time.Sleep(200 * time.Millisecond) // the last settlement
	fams = scrape(t, reg)
	for outcome, want := range map[string]float64{"acked": 2, "requeued": 1, "rejected": 1, "dead_lettered": 1} {
		if v := value(t, fams, "kombu_settled_total", map[string]string{"queue": "work", "outcome": outcome}); v != want {
			t.Errorf("settled %s: %v, want %v", outcome, v, want)
		}
	}
	if v := value(t, fams, "kombu_delivered_total", map[string]string{"queue": "work"}); v != 4 {
		t.Errorf("delivered %v, want 4 (three messages, one twice)", v)
	}
	if v := value(t, fams, "kombu_in_flight", map[string]string{"queue": "work"}); v != 0 {
		t.Errorf("in flight %v, want 0", v)
	}
	if v := value(t, fams, "kombu_fetched_total", nil); v < 4 {
		t.Errorf("fetched %v, want >= 4", v)
	}
	if v := value(t, fams, "kombu_publish_duration_seconds", map[string]string{"exchange": "jobs"}); v != 3 {
		t.Errorf("publish durations observed %v, want 3", v)
	}
	if v := value(t, fams, "kombu_unacked", nil); v != 0 {
		t.Errorf("unacked %v, want 0", v)
	}
	if v := value(t, fams, "kombu_queue_length", map[string]string{"queue": "work", "priority": "0"}); v != 0 {
		t.Errorf("queue length after %v, want 0", v)
	}
}
