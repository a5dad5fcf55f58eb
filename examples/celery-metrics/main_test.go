package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
)

// scrape fetches the metrics page and returns each series as
// `name{labels}` (labels sorted, as the text format writes them) to its
// value (a histogram's sample count under name_count).
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}

// TestMetricsGoAndPythonWorkersInterop proves the example end to end on a
// real broker: it serves /metrics over HTTP for a Go worker and a real
// Celery worker (-E) side by side, and the page, parsed with expfmt,
// counts each one's tasks under celery-exporter's names and labels: sent
// (from a Go client's task-sent events), received, started, succeeded,
// failed (with the exception class), the runtime histogram, worker_up
// for both hosts, the length of a queue no one consumes, and the workers
// and processes on each consumed queue.
func TestMetricsGoAndPythonWorkersInterop(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	testenv.RequirePython(t, "celery", "kombu", "redis")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prefix := testenv.Prefix()
	id := uuid.NewString()[:8]
	goQ, pyQ, idleQ := "go-"+id, "py-"+id, "idle-"+id
	url := redisURL + "?global_keyprefix=" + prefix

	addr := make(chan string, 1)
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() {
		done <- run(rctx, config{url: url, listen: "127.0.0.1:0", queues: []string{idleQ}, workerTimeout: time.Minute},
			io.Discard, func(a string) { addr <- a })
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var metricsURL string
	select {
	case a := <-addr:
		metricsURL = "http://" + a + "/metrics"
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	conn, err := kombu.Dial(ctx, url)
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
	client := celery.NewClient(conn, backend, celery.WithSentEvents())
	var results []*celery.AsyncResult
	send := func(q, name string, n int, args ...any) {
		for range n {
			r, err := client.SendTask(ctx, name, args, nil, celery.WithQueue(q))
			if err != nil {
				t.Fatal(err)
			}
			if q != idleQ {
				results = append(results, r)
			}
		}
	}
	send(goQ, "tasks.add", 3, 1, 2)
	send(goQ, "tasks.fail", 1, "boom")
	send(pyQ, "tasks.add", 2, 1, 2)
	send(pyQ, "tasks.fail", 1, "boom")
	send(idleQ, "tasks.add", 2, 1, 2)
	// Task-sent and task-received come from different connections, so a
	// worker already running could report a task before its task-sent
	// event arrives, and the exporter would count it under the queue
	// "celery" (as celery-exporter would). The workers start once the
	// exporter has seen every task-sent event.
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		got, err := scrape(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, q := range []string{goQ, pyQ, idleQ} {
			for _, name := range []string{"tasks.add", "tasks.fail"} {
				seen += int(got[fmt.Sprintf("celery_task_sent_total{hostname=%q,name=%q,queue_name=%q}", hostname, name, q)])
			}
		}
		if seen == 3+1+2+1+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter saw %d of 9 task-sent events", seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w := celery.NewWorker(conn, backend, celery.WithQueues(goQ), celery.WithHostname("gow@go-host"), celery.WithEvents(),
		celery.WithConcurrency(2), celery.WithShutdownTimeout(5*time.Second))
	w.Register("tasks.add", func(_ context.Context, t *celery.Task) (any, error) {
		var x, y int
		return x + y, t.Bind(&x, &y)
	})
	w.Register("tasks.fail", func(_ context.Context, t *celery.Task) (any, error) {
		var m string
		_ = t.Bind(&m)
		return nil, celery.NewError("ValueError", m)
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	dir, err := filepath.Abs(filepath.Join("..", "..", "celery", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Dir: dir, Queue: pyQ, Node: "py", Events: true, Env: []string{
		"KOMBU_TEST_BROKER=" + redisURL, "KOMBU_TEST_BACKEND=" + redisURL, "KOMBU_TEST_PREFIX=" + prefix,
		"KOMBU_TEST_QUEUE=" + pyQ, "KOMBU_TEST_GO_QUEUE=" + goQ, "PYTHONDONTWRITEBYTECODE=1",
	}})

	for _, r := range results {
		if _, err := r.Wait(ctx); err != nil {
			t.Fatalf("task %s: %v", r.ID, err)
		}
	}

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// Celery 5.2's task-failed event names the exception
	// ExceptionWithTraceback() (its billiard wrapper), and celery-exporter
	// then counts that class, as this exporter does.
	pyExc := "ValueError"
	if !testenv.PythonVersionAtLeast(t, "celery", "5.3") {
		pyExc = "ExceptionWithTraceback"
	}
	series := func(name, host, q string) string {
		return fmt.Sprintf("hostname=%q,name=%q,queue_name=%q", host, name, q)
	}
	want := map[string]float64{
		"celery_task_sent_total{" + series("tasks.add", host, goQ) + "}":                                                              3,
		"celery_task_sent_total{" + series("tasks.add", host, pyQ) + "}":                                                              2,
		"celery_task_sent_total{" + series("tasks.add", host, idleQ) + "}":                                                            2,
		"celery_task_received_total{" + series("tasks.add", "go-host", goQ) + "}":                                                     3,
		"celery_task_started_total{" + series("tasks.add", "go-host", goQ) + "}":                                                      3,
		"celery_task_succeeded_total{" + series("tasks.add", "go-host", goQ) + "}":                                                    3,
		"celery_task_runtime_count{" + series("tasks.add", "go-host", goQ) + "}":                                                      3,
		"celery_task_received_total{" + series("tasks.add", host, pyQ) + "}":                                                          2,
		"celery_task_started_total{" + series("tasks.add", host, pyQ) + "}":                                                           2,
		"celery_task_succeeded_total{" + series("tasks.add", host, pyQ) + "}":                                                         2,
		"celery_task_runtime_count{" + series("tasks.add", host, pyQ) + "}":                                                           2,
		"celery_task_retried_total{" + series("tasks.add", host, pyQ) + "}":                                                           0,
		fmt.Sprintf("celery_task_failed_total{exception=\"ValueError\",hostname=\"go-host\",name=\"tasks.fail\",queue_name=%q}", goQ): 1,
		fmt.Sprintf("celery_task_failed_total{exception=%q,hostname=%q,name=\"tasks.fail\",queue_name=%q}", pyExc, host, pyQ):         1,
		"celery_worker_up{hostname=\"go-host\"}":                                                                                      1,
		fmt.Sprintf("celery_worker_up{hostname=%q}", host):                                                                            1,
		fmt.Sprintf("celery_queue_length{queue_name=%q}", idleQ):                                                                      2,
		fmt.Sprintf("celery_queue_length{queue_name=%q}", goQ):                                                                        0,
		fmt.Sprintf("celery_active_worker_count{queue_name=%q}", goQ):                                                                 1,
		fmt.Sprintf("celery_active_worker_count{queue_name=%q}", pyQ):                                                                 1,
		fmt.Sprintf("celery_active_process_count{queue_name=%q}", goQ):                                                                1,
		fmt.Sprintf("celery_active_process_count{queue_name=%q}", pyQ):                                                                1,
	}
	// Events arrive after the results are stored: scrape until they are in.
	var got map[string]float64
	var bad []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		got, err = scrape(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		bad = bad[:0]
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				bad = append(bad, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(bad) > 0 {
		var have []string
		for k, v := range got {
			if strings.HasPrefix(k, "celery_") {
				have = append(have, fmt.Sprintf("%s %v", k, v))
			}
		}
		t.Fatalf("metrics:\n%s\nscraped:\n%s", strings.Join(bad, "\n"), strings.Join(have, "\n"))
	}
}

// TestBadURL proves a broker URL nobody serves fails run with an error
// instead of serving an empty page.
func TestBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, config{url: "nowhere://", listen: "127.0.0.1:0"}, io.Discard, nil); err == nil {
		t.Fatal("run with a bad URL returned nil")
	}
}
