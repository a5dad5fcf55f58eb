package main

// The pipeline group: many goroutines publishing through one Connection
// (auto-pipelined, and with auto_pipeline=false for comparison), against
// redis-benchmark's one client pipelining 64 commands.

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

func (r *runner) pipeline() {
	d := r.benchtime()
	es := envSize(100)
	reps := max(1, *flagReps)
	if *flagQuick {
		reps = 1
	}
	var auto, plain, async, stdin pair
	bin, cleanup := buildKombu()
	defer cleanup()
	for range reps {
		push, _ := r.raw(es, 1, 64, 200000)
		auto.addRaw(push)
		plain.addRaw(push)
		async.addRaw(push)
		async.addGo(measure(d, 0, r.asyncPublishBench()))
		pushC1, _ := r.raw(es, 1, 1, 10000)
		stdin.addRaw(pushC1)
		r.serverStart()
		stdin.goRates = append(stdin.goRates, r.stdinPublish(bin, 10000))
		r.serverStop(10000)
		stdin.last = result{server: lastServer}
		auto.addGo(measure(d, 0, r.sharedPublishBench("", 64)))
		plain.addGo(measure(d, 0, r.sharedPublishBench("auto_pipeline=false", 64)))
	}
	r.add(auto.row(row{group: "pipeline", name: "publish, direct exchange, 64 goroutines, 1 Connection (auto-pipelined)", rawName: "LPUSH -c 1 -P 64", rawTarget: 0.4}))
	r.add(async.row(row{group: "pipeline", name: "PublishAsync, direct exchange, 1 goroutine, 1 Connection, one Flush at the end", rawName: "LPUSH -c 1 -P 64"}))
	r.add(stdin.row(row{group: "pipeline", name: "`kombu publish -`, 10,000 lines on stdin, default exchange (the process's start included)", rawName: "LPUSH -c 1", rawTarget: 3, external: true}))
	r.add(plain.row(row{group: "pipeline", name: "publish, direct exchange, 64 goroutines, 1 Connection, auto_pipeline=false (10 pooled connections)", rawName: "LPUSH -c 1 -P 64"}))
}

// sharedPublishBench publishes b.N messages of body(100) from producers
// goroutines through one Producer of one Connection (default pool, URL
// options opts), through a direct exchange bound to one queue.
func (r *runner) sharedPublishBench(opts string, producers int) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial(opts)
		defer conn.Close()
		q := names(1)[0]
		ex := kombu.Exchange{Name: q + "-ex", Type: kombu.Direct}
		if err := conn.Bind(r.ctx, q, ex, "bench"); err != nil {
			b.Fatal(err)
		}
		p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("bench"))
		bd := body(100)
		var next atomic.Int64
		var wg sync.WaitGroup
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if _, err := p.Publish(r.ctx, bd); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		r.serverStop(b.N)
		if n, err := conn.Len(r.ctx, q); err != nil || n != int64(b.N) {
			b.Errorf("queue holds %d messages after %d publishes (%v)", n, b.N, err)
		}
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// asyncPublishBench publishes b.N messages of body(100) with PublishAsync
// from one goroutine through a direct exchange bound to one queue, and
// Flushes once at the end (inside the timing).
func (r *runner) asyncPublishBench() func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial("")
		defer conn.Close()
		q := names(1)[0]
		ex := kombu.Exchange{Name: q + "-ex", Type: kombu.Direct}
		if err := conn.Bind(r.ctx, q, ex, "bench"); err != nil {
			b.Fatal(err)
		}
		p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("bench"))
		bd := body(100)
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for range b.N {
			if _, err := p.PublishAsync(r.ctx, bd); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Flush(r.ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.serverStop(b.N)
		if n, err := conn.Len(r.ctx, q); err != nil || n != int64(b.N) {
			b.Errorf("queue holds %d messages after %d publishes (%v)", n, b.N, err)
		}
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// stdinPublish runs `kombu publish -` (built once into a temporary
// directory) with n lines on stdin, publishing to a fresh queue through the
// default exchange, and returns lines per second from start to exit, the
// process's start included. Every line must come back as a printed
// delivery tag and be in the queue.
func (r *runner) stdinPublish(bin string, n int) float64 {
	q := names(1)[0]
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	cmd := exec.Command(bin, "publish", "--url", r.url, "--exchange", "", "--routing-key", q, "-")
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		log.Fatalf("kombu publish -: %v", err)
	}
	if tags := strings.Count(string(out), "\n"); tags != n {
		log.Fatalf("kombu publish -: %d delivery tags printed for %d lines", tags, n)
	}
	if got := r.admin.LLen(r.ctx, q).Val(); got != int64(n) {
		log.Fatalf("kombu publish -: the queue holds %d messages for %d lines", got, n)
	}
	r.deleteQueue(q)
	return float64(n) / took.Seconds()
}

// buildKombu builds cmd/kombu into a temporary directory.
func buildKombu() (bin string, cleanup func()) {
	dir, err := os.MkdirTemp("", "kombu-bench-")
	if err != nil {
		log.Fatal(err)
	}
	bin = filepath.Join(dir, "kombu")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kombu")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("go build ./cmd/kombu: %v", err)
	}
	return bin, func() { os.RemoveAll(dir) }
}
