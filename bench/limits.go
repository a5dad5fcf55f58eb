package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"runtime"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
)

// limits (the group of that name) measures the worker's rate and time limits against a Python
// Celery worker's, as figures (the tests only check them with generous
// bounds):
//   - a rate limit of 20/s set at run time by the rate_limit command on
//     bench.part, 60 tasks queued at once: the tasks/s achieved (Celery's
//     token bucket lets the first through at once, so a little above 20);
//   - a hard time limit of 0.5 s on a task sleeping 5 s: how long after it
//     was sent TimeLimitExceeded is stored (Python: a prefork pool, the
//     only one that enforces time limits).
func (r *runner) limits() {
	broker, backendURL, _, _ := r.celeryURLs()
	n := 60
	goRate := r.rateLimitRun(backendURL, n, r.chordGoWorker(backendURL))
	pyRate := r.rateLimitRun(backendURL, n, r.pyWorker(broker, backendURL, "prefork", 1))
	r.add(row{group: "limits", name: fmt.Sprintf("rate limit 20/s set by `control rate_limit`, %d tasks queued: tasks/s achieved (want ≈ 20; worker concurrency %d, Python: prefork -c 1)", n, runtime.NumCPU()),
		goRate: goRate, pyRate: pyRate, external: true})
	goMS := r.hardLimitRun(backendURL, r.chordGoWorker(backendURL))
	pyMS := r.hardLimitRun(backendURL, r.pyWorker(broker, backendURL, "prefork", 1))
	r.add(row{group: "limits", name: fmt.Sprintf("hard time limit 0.5 s on a task sleeping 5 s: TimeLimitExceeded stored after Go %.0f ms, Python (prefork) %.0f ms", goMS, pyMS), external: true})
}

// controlReady waits until a worker answers ping and returns its node.
func (r *runner) controlReady(ctl *celery.Control) string {
	for i := 0; i < 60; i++ {
		rs, err := ctl.Ping(r.ctx, celery.WithReplyTimeout(500*time.Millisecond), celery.WithLimit(1))
		if err == nil && len(rs) > 0 {
			return rs[0].Hostname
		}
	}
	log.Print("limits: no worker answered ping")
	return ""
}

func (r *runner) rateLimitRun(backendURL string, n int, start startWorker) float64 {
	run := r.startRun(backendURL, start)
	if run == nil {
		return 0
	}
	defer run.stop()
	q, conn, backend := run.queue, run.conn, run.backend
	var err error
	ctl := celery.NewControl(conn)
	node := r.controlReady(ctl)
	if node == "" {
		return 0
	}
	if rs, err := ctl.RateLimit(r.ctx, "bench.part", "20/s", celery.WithDestination(node)); err != nil || len(rs) != 1 || rs[0].Err() != nil {
		log.Printf("limits: rate_limit on %s: %+v %v", node, rs, err)
		return 0
	}
	client := celery.NewClient(conn, backend, celery.WithDefaultQueue(q))
	results := make([]*celery.AsyncResult, n)
	t0 := time.Now()
	for i := range results {
		if results[i], err = client.SendTask(r.ctx, "bench.part", nil, nil); err != nil {
			log.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			log.Printf("limits: rate-limited task: %v", err)
			return 0
		}
	}
	return float64(n) / time.Since(t0).Seconds()
}

func (r *runner) hardLimitRun(backendURL string, start startWorker) float64 {
	run := r.startRun(backendURL, start)
	if run == nil {
		return 0
	}
	defer run.stop()
	q, conn, backend := run.queue, run.conn, run.backend
	var err error
	if r.controlReady(celery.NewControl(conn)) == "" {
		return 0
	}
	client := celery.NewClient(conn, backend, celery.WithDefaultQueue(q))
	t0 := time.Now()
	res, err := client.SendTask(r.ctx, "bench.sleep", []any{5}, nil, celery.WithTimeLimit(500*time.Millisecond, 0))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	_, err = res.Get(ctx)
	var te *celery.TaskError
	if !errors.As(err, &te) || te.Type != "TimeLimitExceeded" {
		log.Printf("limits: hard time limit: %v, want TimeLimitExceeded", err)
		return 0
	}
	return float64(time.Since(t0).Milliseconds())
}

// celeryRun is a worker started on a fresh queue with a connection and a
// result backend to drive it.
type celeryRun struct {
	queue   string
	conn    *kombu.Connection
	backend *celery.Backend
	stop    func()
}

// startRun starts a worker on a fresh queue (nil if it could not start,
// its figure then left out); stop stops the worker, deletes the queue and
// closes the connection and backend.
func (r *runner) startRun(backendURL string, start startWorker) *celeryRun {
	q := names(1)[0]
	stopWorker := start(q)
	if stopWorker == nil {
		return nil
	}
	backend, err := celery.OpenBackend(backendURL)
	if err != nil {
		log.Fatal(err)
	}
	conn := r.dial("")
	return &celeryRun{queue: q, conn: conn, backend: backend, stop: func() {
		stopWorker()
		r.deleteQueue(q)
		conn.Close()
		backend.Close()
	}}
}
