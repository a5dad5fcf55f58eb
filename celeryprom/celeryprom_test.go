package celeryprom

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape fetches url and parses the text exposition.
func Scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

// Value returns the value of the series of family name whose labels
// include want (the sample count for a histogram), and whether it exists.
func Value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func ev(typ, host, id string, fields map[string]any) celery.Event {
	f := map[string]any{"type": typ, "hostname": host, "uuid": id}
	for k, v := range fields {
		f[k] = v
	}
	return celery.Event{Type: typ, Hostname: host, UUID: id, Timestamp: time.Now(), Fields: f}
}

// TestExporterMetrics proves, on events fed by hand and a scrape over
// HTTP: celery-exporter's names, types and labels (hostname the node's
// host part, queue_name from task-sent, "celery" without it, exception the
// class of the repr), the zero series of the other counters, runtime
// observed in celery-exporter's buckets, worker_up and tasks_active from
// heartbeats, worker-offline setting them to 0, the worker timeout and
// purge at scrape time, and queue_length of a known queue.
func TestExporterMetrics(t *testing.T) {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://"+uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	now := time.Now()
	clock := func() time.Time { return now }
	e := NewExporter(conn, WithQueues("idle"), WithInspectTimeout(50*time.Millisecond), WithStaticLabels(map[string]string{"env": "test"}))
	e.cfg.now = clock
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	e.Handle(ev("task-sent", "gen12@web-1", "a", map[string]any{"name": "tasks.add", "queue": "q1"}))
	e.Handle(ev("task-received", "celery@go-1", "a", map[string]any{"name": "tasks.add"}))
	e.Handle(ev("task-started", "celery@go-1", "a", nil))
	e.Handle(ev("task-succeeded", "celery@go-1", "a", map[string]any{"runtime": 0.3, "result": "3"}))
	e.Handle(ev("task-received", "celery@go-1", "b", map[string]any{"name": "tasks.fail"}))
	e.Handle(ev("task-failed", "celery@go-1", "b", map[string]any{"exception": "ValueError('boom')"}))
	e.Handle(ev("task-failed", "celery@go-1", "c", map[string]any{"exception": "weird"}))
	e.Handle(ev("worker-heartbeat", "celery@go-1", "", map[string]any{"freq": 2.0, "active": 2.0}))
	e.Handle(ev("worker-online", "py@py-1", "", nil))
	e.Handle(ev("worker-offline", "py@py-1", "", nil))
	e.Handle(ev("task-bogus", "celery@go-1", "d", nil))
	for i := 0; i < 3; i++ {
		if _, err := conn.Producer(kombu.WithDeclare(kombu.Queue{Name: "idle"})).Publish(ctx, "x", kombu.WithRoutingKey("idle")); err != nil {
			t.Fatal(err)
		}
	}

	mfs := Scrape(t, srv.URL)
	add := map[string]string{"name": "tasks.add", "hostname": "go-1", "queue_name": "q1", "env": "test"}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"celery_task_sent_total", map[string]string{"name": "tasks.add", "hostname": "web-1", "queue_name": "q1"}, 1},
		{"celery_task_received_total", add, 1},
		{"celery_task_started_total", add, 1},
		{"celery_task_succeeded_total", add, 1},
		{"celery_task_retried_total", add, 0},
		{"celery_task_failed_total", map[string]string{"name": "tasks.add", "exception": ""}, 0},
		{"celery_task_failed_total", map[string]string{"name": "tasks.fail", "hostname": "go-1", "exception": "ValueError", "queue_name": "celery"}, 1},
		{"celery_task_failed_total", map[string]string{"name": "None", "exception": "UnknownException"}, 1},
		{"celery_task_runtime", add, 1},
		{"celery_worker_up", map[string]string{"hostname": "go-1"}, 1},
		{"celery_worker_tasks_active", map[string]string{"hostname": "go-1"}, 2},
		{"celery_worker_up", map[string]string{"hostname": "py-1"}, 0},
		{"celery_worker_tasks_active", map[string]string{"hostname": "py-1"}, 0},
		{"celery_queue_length", map[string]string{"queue_name": "idle"}, 3},
		{"celery_active_worker_count", map[string]string{"queue_name": "idle"}, 0},
	}
	for _, c := range checks {
		if v, ok := Value(mfs, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := Value(mfs, "celery_task_received_total", map[string]string{"hostname": "web-1"}); ok {
		t.Error("task-sent made the other counters of the sender's labels visible")
	}
	h := mfs["celery_task_runtime"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if len(bounds) != len(DefaultBuckets)+1 || bounds[4] != .075 || bounds[13] != 10 || h.GetSampleSum() != 0.3 {
		t.Errorf("runtime buckets %v sum %v", bounds, h.GetSampleSum())
	}
	for _, name := range []string{"celery_task_sent_total", "celery_task_runtime", "celery_worker_up"} {
		if typ := mfs[name].GetType(); typ != map[string]dto.MetricType{"celery_task_sent_total": dto.MetricType_COUNTER,
			"celery_task_runtime": dto.MetricType_HISTOGRAM, "celery_worker_up": dto.MetricType_GAUGE}[name] {
			t.Errorf("%s has type %v", name, typ)
		}
	}

	// Six minutes of silence: go-1 is down; eleven: its series are gone.
	now = now.Add(6 * time.Minute)
	mfs = Scrape(t, srv.URL)
	if v, _ := Value(mfs, "celery_worker_up", map[string]string{"hostname": "go-1"}); v != 0 {
		t.Errorf("worker_up after the timeout: %v", v)
	}
	now = now.Add(5 * time.Minute)
	mfs = Scrape(t, srv.URL)
	var left []string
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "hostname" && lp.GetValue() == "go-1" {
					left = append(left, name)
				}
			}
		}
	}
	sort.Strings(left)
	if len(left) != 0 {
		t.Errorf("series of the purged worker left: %s", strings.Join(left, " "))
	}
}
