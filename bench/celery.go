package main

// The celery group: the Go celery package against Python Celery 5 on the
// same broker, same task, same run.
//
//   - Sending: Client.SendTask of a no-op task (testing.B, one goroutine,
//     one connection) against Python's apply_async in a loop
//     (bench/celery_bench.py send).
//   - Running: tasks/s of a worker draining a queue filled beforehand with
//     no-op tasks, results stored (bench.noop) or ignored
//     (bench.noop_ignored, ignore_result=True on both sides): the Go
//     celery.Worker (concurrency = cores, Celery's default prefetch
//     multiplier 4) against a Python Celery worker with the prefork pool
//     (-c cores) and with the solo pool (bench/celery_bench.py worker).
//
// A worker's time runs from the first message it takes (the queue's length
// drops below what was filled; start-up is not counted) until the queue and
// the unacked hash are empty and, with results stored, every result is in
// the backend (the backend's database grew by one key per task). Both
// sides acknowledge before running a task (Celery's default, acks_late
// off), so an empty unacked hash means every task has started; a no-op
// ends right after.

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/celery"
)

// celeryURLs returns the broker URL (-url) and a result backend URL on
// the same server in the next database, so that counting the backend's
// keys counts results only.
func (r *runner) celeryURLs() (broker, backend string, brokerDB, backendDB int) {
	u, err := url.Parse(r.url)
	if err != nil {
		log.Fatal(err)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if brokerDB, err = strconv.Atoi(p); err != nil {
			log.Fatalf("-url: database %q: %v", p, err)
		}
	}
	backendDB = (brokerDB + 1) % 16
	b := *u
	b.Path, b.RawQuery = "/"+strconv.Itoa(backendDB), ""
	return r.url, b.String(), brokerDB, backendDB
}

func (r *runner) celery() {
	broker, backendURL, brokerDB, backendDB := r.celeryURLs()
	bc := goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, DB: brokerDB, Protocol: 2})
	defer bc.Close()
	rc := goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, DB: backendDB, Protocol: 2})
	defer rc.Close()
	d := r.benchtime()
	cores := runtime.NumCPU()
	pyN, goN := 3000, 30000
	if *flagQuick {
		pyN, goN = 500, 5000
	}

	// Sending.
	send := measure(d, 0, r.sendTaskBench(backendURL, 1))
	pySend := r.pythonCelerySend(broker, backendURL, pyN)
	r.add(row{group: "celery", name: "SendTask of a no-op task, 1 goroutine, 1 connection (Python: apply_async)",
		goRate: send.rate, allocs: send.allocs, bytes: send.bytes, server: send.server, pyRate: pySend, pyTarget: 10})

	// Many goroutines sending through one connection share round trips
	// (auto-pipelining); Python's figure is still its one loop.
	send64 := measure(d, 0, r.sendTaskBench(backendURL, 64))
	r.add(row{group: "celery", name: "SendTask of a no-op task, 64 goroutines, 1 Connection, auto-pipelined (Python: one apply_async loop)",
		goRate: send64.rate, allocs: send64.allocs, bytes: send64.bytes, server: send64.server, pyRate: pySend})

	// Running.
	for _, stored := range []bool{true, false} {
		task, label := "bench.noop", "results stored"
		if !stored {
			task, label = "bench.noop_ignored", "results ignored"
		}
		var goRes result
		var goRates []float64
		for range max(1, *flagReps) {
			goRes = r.drain(bc, rc, broker, backendURL, task, goN, stored, r.goWorker(backendURL, cores))
			goRates = append(goRates, goRes.rate)
		}
		goRes.rate = median(goRates)
		for _, pool := range []string{"prefork", "solo"} {
			c := cores
			if pool == "solo" {
				c = 1
			}
			py := r.drain(bc, rc, broker, backendURL, task, pyN, stored, r.pyWorker(broker, backendURL, pool, c))
			r.add(row{group: "celery", name: fmt.Sprintf("worker, no-op task, %s, concurrency %d (Python: Celery %s pool, -c %d)", label, cores, pool, c),
				goRate: goRes.rate, allocs: goRes.allocs, bytes: goRes.bytes, server: goRes.server, pyRate: py.rate, pyTarget: 10})
		}
	}

	// A chord: what on_chord_part_return costs on each side.
	r.chordRows(broker, backendURL)
}

// sendTaskBench sends b.N no-op tasks with Client.SendTask from senders
// goroutines through one Connection (one pooled connection when senders
// is 1, the default pool otherwise).
func (r *runner) sendTaskBench(backendURL string, senders int) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		opts := ""
		if senders == 1 {
			opts = "max_connections=1"
		}
		conn := r.dial(opts)
		defer conn.Close()
		backend, err := celery.OpenBackend(backendURL)
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		q := names(1)[0]
		client := celery.NewClient(conn, backend, celery.WithDefaultQueue(q))
		if _, err := client.SendTask(r.ctx, "bench.noop", nil, nil); err != nil { // declares the queue
			b.Fatal(err)
		}
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if _, err := client.SendTask(r.ctx, "bench.noop", nil, nil); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		r.serverStop(b.N)
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// pythonCelerySend runs celery_bench.py send: n apply_async calls.
func (r *runner) pythonCelerySend(broker, backend string, n int) float64 {
	if *flagPython == "" {
		return 0
	}
	q := names(1)[0]
	defer r.deleteQueue(q)
	cmd := exec.Command(*flagPython, "-I", "bench/celery_bench.py", "send", broker, backend, q, strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Printf("Python Celery send: %v (its figure is left out)", err)
		return 0
	}
	var res struct {
		Send float64 `json:"send"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		log.Printf("Python Celery send: output %q: %v", out, err)
	}
	return res.Send
}

// startWorker starts a worker consuming queue and returns a function that
// stops it.
type startWorker func(queue string) (stop func())

// goWorker runs the celery package's Worker in this process, with the two
// no-op tasks registered as the Python app registers them.
func (r *runner) goWorker(backendURL string, concurrency int) startWorker {
	return func(queue string) func() {
		conn := r.dial("")
		backend, err := celery.OpenBackend(backendURL)
		if err != nil {
			log.Fatal(err)
		}
		w := celery.NewWorker(conn, backend, celery.WithQueues(queue), celery.WithConcurrency(concurrency))
		noop := func(context.Context, *celery.Task) (any, error) { return nil, nil }
		w.Register("bench.noop", noop)
		w.Register("bench.noop_ignored", noop, celery.TaskIgnoreResult())
		if err := w.Start(r.ctx); err != nil {
			log.Fatal(err)
		}
		return func() {
			if err := w.Shutdown(); err != nil {
				log.Printf("Go worker: %v", err)
			}
			backend.Close()
			conn.Close()
		}
	}
}

// pyWorker runs a Python Celery worker (celery_bench.py worker).
func (r *runner) pyWorker(broker, backend, pool string, concurrency int) startWorker {
	return func(queue string) func() {
		if *flagPython == "" {
			return nil
		}
		cmd := exec.Command(*flagPython, "-I", "bench/celery_bench.py", "worker", broker, backend, queue, pool, strconv.Itoa(concurrency))
		cmd.Stderr = os.Stderr // its banner (stdout) is left out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			log.Printf("Python Celery worker: %v (its figure is left out)", err)
			return nil
		}
		return func() {
			// SIGTERM is Celery's warm shutdown; the pool's children go
			// with their parent.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
	}
}

// drain fills a fresh queue with n tasks, starts a worker on it and
// measures its tasks/s (see the file comment for what is timed).
func (r *runner) drain(bc, rc *goredis.Client, broker, backendURL, task string, n int, stored bool, start startWorker) result {
	q := names(1)[0]
	r.fillTasks(backendURL, q, task, n)
	keys0, err := rc.DBSize(r.ctx).Result()
	if err != nil {
		log.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	r.serverStart()
	stop := start(q)
	if stop == nil {
		return result{}
	}
	defer func() {
		stop()
		r.deleteQueue(q)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	// The start is polled every millisecond, the end every 5 ms (the
	// polls cost Redis a round trip each, counted in its CPU figure).
	poll := func(what string, every time.Duration, done func() bool) time.Time {
		for !done() {
			if time.Now().After(deadline) {
				log.Fatalf("celery %s: the worker did not %s in time (%d in the queue, %d unacked)", task, what,
					bc.LLen(r.ctx, q).Val(), bc.HLen(r.ctx, "unacked").Val())
			}
			time.Sleep(every)
		}
		return time.Now()
	}
	t0 := poll("start", time.Millisecond, func() bool { return bc.LLen(r.ctx, q).Val() < int64(n) })
	t1 := poll("finish", 5*time.Millisecond, func() bool {
		if bc.LLen(r.ctx, q).Val() != 0 || bc.HLen(r.ctx, "unacked").Val() != 0 {
			return false
		}
		return !stored || rc.DBSize(r.ctx).Val()-keys0 >= int64(n)
	})
	r.serverStop(n)
	runtime.ReadMemStats(&m1)
	return result{rate: float64(n) / t1.Sub(t0).Seconds(), server: lastServer,
		allocs: int64(m1.Mallocs-m0.Mallocs) / int64(n), bytes: int64(m1.TotalAlloc-m0.TotalAlloc) / int64(n)}
}

// fillTasks sends n tasks to queue q with the Go client from a few
// goroutines (not measured).
func (r *runner) fillTasks(backendURL, q, task string, n int) {
	const senders = 8
	conn := r.dial(fmt.Sprintf("max_connections=%d", senders))
	defer conn.Close()
	client := celery.NewClient(conn, nil, celery.WithDefaultQueue(q))
	var wg sync.WaitGroup
	per := (n + senders - 1) / senders
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i * per; j < min(n, (i+1)*per); j++ {
				if _, err := client.SendTask(r.ctx, task, nil, nil); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
}

// deleteQueue deletes a queue and its bindings.
func (r *runner) deleteQueue(q string) {
	conn := r.dial("")
	defer conn.Close()
	_ = conn.DeleteQueue(r.ctx, q)
}
