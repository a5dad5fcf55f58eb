package main

import (
	"context"
	"fmt"
	"log"
	"runtime"
	"strconv"
	"time"

	"github.com/kombu-go/kombu/celery"
)

// chordRows measures a chord of n header tasks (bench.part, returning 1)
// with a body (bench.sum), sent by the Go client, run by the Go worker and
// by a Python Celery worker (solo pool): header tasks a second until the
// body's result is stored, and Redis's work per header task (main-thread
// CPU µs and commands processed, INFO cpu and stats), which is where
// on_chord_part_return's cost shows.
func (r *runner) chordRows(broker, backendURL string) {
	n := 1000
	if *flagQuick {
		n = 200
	}
	goRate, goCPU, goCalls := r.chordRun(backendURL, n, r.chordGoWorker(backendURL))
	pyRate, pyCPU, pyCalls := r.chordRun(backendURL, n, r.pyWorker(broker, backendURL, "solo", 1))
	r.add(row{group: "celery", name: fmt.Sprintf(
		"chord of %d header tasks + body, worker concurrency %d (Python: Celery solo); Redis per header task: Go %.1f us / %.1f commands, Python %.1f us / %.1f commands",
		n, runtime.NumCPU(), goCPU, goCalls, pyCPU, pyCalls),
		goRate: goRate, server: goCPU, pyRate: pyRate, external: true})
}

func (r *runner) chordGoWorker(backendURL string) startWorker {
	return func(queue string) func() {
		conn := r.dial("")
		backend, err := celery.OpenBackend(backendURL)
		if err != nil {
			log.Fatal(err)
		}
		w := celery.NewWorker(conn, backend, celery.WithQueues(queue), celery.WithConcurrency(runtime.NumCPU()))
		w.Register("bench.part", func(context.Context, *celery.Task) (any, error) { return 1, nil })
		w.Register("bench.sleep", func(ctx context.Context, t *celery.Task) (any, error) {
			var s float64
			if err := t.Arg(0, &s); err != nil {
				return nil, err
			}
			select {
			case <-time.After(time.Duration(s * float64(time.Second))):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return nil, nil
		})
		w.Register("bench.sum", func(_ context.Context, t *celery.Task) (any, error) {
			var parts []int
			if err := t.Arg(0, &parts); err != nil {
				return nil, err
			}
			s := 0
			for _, p := range parts {
				s += p
			}
			return s, nil
		})
		if err := w.Start(r.ctx); err != nil {
			log.Fatal(err)
		}
		return func() {
			_ = w.Shutdown()
			backend.Close()
			conn.Close()
		}
	}
}

// chordRun starts a worker, sends the chord and waits for its body.
func (r *runner) chordRun(backendURL string, n int, start startWorker) (rate, cpuPerTask, callsPerTask float64) {
	run := r.startRun(backendURL, start)
	if run == nil {
		return 0, 0, 0
	}
	defer run.stop()
	q, conn, backend := run.queue, run.conn, run.backend
	var err error
	client := celery.NewClient(conn, backend, celery.WithDefaultQueue(q))
	header := make([]celery.Signature, n)
	for i := range header {
		header[i] = celery.NewSignature("bench.part", nil, nil)
	}
	time.Sleep(time.Second) // let a Python worker finish starting
	calls0 := r.commandsProcessed()
	r.serverStart()
	t0 := time.Now()
	res, err := client.Apply(r.ctx, celery.Chord(celery.Group(header...), celery.NewSignature("bench.sum", nil, nil).Set("queue", q)))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Minute)
	defer cancel()
	v, err := res.Get(ctx)
	if err != nil || fmt.Sprint(v) != strconv.Itoa(n) {
		log.Printf("chord: body returned %v %v, want %d", v, err, n)
		return 0, 0, 0
	}
	d := time.Since(t0)
	r.serverStop(n)
	return float64(n) / d.Seconds(), lastServer, float64(r.commandsProcessed()-calls0) / float64(n)
}

// commandsProcessed is INFO stats' total_commands_processed.
func (r *runner) commandsProcessed() int64 {
	info, err := r.admin.Info(r.ctx, "stats").Result()
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(infoField(info, "total_commands_processed"), 10, 64)
	return n
}
