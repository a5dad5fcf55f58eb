package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// pipeHook holds every single command while held is set (so the lone
// sends that take the in-flight slots stay on the wire as long as the test
// wants) and records the size of every pipeline.
type pipeHook struct {
	held    atomic.Bool
	release chan struct{}
	blocked atomic.Int32

	mu        sync.Mutex
	pipelines []int
}

func newPipeHook() *pipeHook { return &pipeHook{release: make(chan struct{})} }

func (h *pipeHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *pipeHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if h.held.Load() {
			h.blocked.Add(1)
			<-h.release
		}
		return next(ctx, cmd)
	}
}

func (h *pipeHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.mu.Lock()
		h.pipelines = append(h.pipelines, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *pipeHook) sizes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.pipelines...)
}

// queued returns how many calls wait in b's auto-pipeline queue.
func queued(b *Backend) int {
	b.pipe.mu.Lock()
	defer b.pipe.mu.Unlock()
	return len(b.pipe.queue)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdSlots starts maxPipeInFlight lone publishes to queue that the hook
// holds on the wire, so that every later call queues; it returns a
// function that lets them through and returns their errors.
func holdSlots(t *testing.T, b *Backend, h *pipeHook, queue string) func() []error {
	t.Helper()
	h.held.Store(true)
	errc := make(chan error, maxPipeInFlight)
	for i := range maxPipeInFlight {
		go func() {
			errc <- b.Put(context.Background(), queue, 0, []byte(testEnvelope(fmt.Sprintf("lone-%d", i), "", queue, 0)))
		}()
	}
	waitFor(t, "the lone sends to reach the hook", func() bool { return h.blocked.Load() == int32(maxPipeInFlight) })
	return func() []error {
		h.held.Store(false)
		close(h.release)
		var errs []error
		for range maxPipeInFlight {
			errs = append(errs, <-errc)
		}
		return errs
	}
}

func autoPipeEnvs(t *testing.T) map[string]func(*testing.T) *env {
	return map[string]func(*testing.T) *env{"miniredis": newMiniEnv, "redis-server": integrationEnv}
}

// TestAutoPipelineOwnErrors proves: calls queued behind the in-flight
// slots go out together in one pipeline, and each caller gets its own
// message's result: a publish to an exchange whose binding key holds the
// wrong type fails alone, with Redis's WRONGTYPE error, while the Put and
// the Publish beside it in the same pipeline succeed and land.
func TestAutoPipelineOwnErrors(t *testing.T) {
	for name, mk := range autoPipeEnvs(t) {
		t.Run(name, func(t *testing.T) {
			e := mk(t)
			h := newPipeHook()
			e.client.AddHook(h)
			b := e.backend()
			ctx := context.Background()
			if err := b.Bind(ctx, "ex", transport.BindingRow{RoutingKey: "rk", Queue: "q"}); err != nil {
				t.Fatal(err)
			}
			if err := e.client.Set(ctx, e.key("_kombu.binding.bad"), "not a set", 0).Err(); err != nil {
				t.Fatal(err)
			}
			release := holdSlots(t, b, h, "q")

			type res struct {
				n   int
				err error
			}
			var good, bad, put res
			var wg sync.WaitGroup
			call := func(r *res, f func() (int, error)) {
				wg.Add(1)
				n0 := queued(b)
				go func() { defer wg.Done(); r.n, r.err = f() }()
				waitFor(t, "the call to queue", func() bool { return queued(b) == n0+1 })
			}
			call(&good, func() (int, error) {
				return b.Publish(ctx, "ex", entity.Direct, "rk", 0, []byte(testEnvelope("good", "ex", "rk", 0)))
			})
			call(&bad, func() (int, error) {
				return b.Publish(ctx, "bad", entity.Direct, "rk", 0, []byte(testEnvelope("bad", "bad", "rk", 0)))
			})
			call(&put, func() (int, error) {
				return 1, b.Put(ctx, "q", 0, []byte(testEnvelope("put", "", "q", 0)))
			})
			for _, err := range release() {
				if err != nil {
					t.Fatalf("held lone put: %v", err)
				}
			}
			wg.Wait()
			if good.err != nil || good.n != 1 {
				t.Errorf("good publish: %d, %v; want 1, nil", good.n, good.err)
			}
			if put.err != nil {
				t.Errorf("put: %v", put.err)
			}
			if bad.err == nil || !strings.Contains(bad.err.Error(), "WRONGTYPE") {
				t.Errorf("bad publish: %d, %v; want a WRONGTYPE error", bad.n, bad.err)
			}
			if sizes := h.sizes(); len(sizes) == 0 || sizes[len(sizes)-1] < 2 {
				t.Errorf("pipelines sent: %v; want the three queued calls in one pipeline", sizes)
			}
			got := e.lrange(e.key("q"))
			if len(got) != maxPipeInFlight+2 {
				t.Errorf("queue q holds %d messages, want %d (the lone puts, good, put)", len(got), maxPipeInFlight+2)
			}
		})
	}
}

// TestAutoPipelineCancelWhileQueued proves: a call whose context ends while
// it waits in the queue returns the context's error and its message is
// never sent; the calls around it are sent.
func TestAutoPipelineCancelWhileQueued(t *testing.T) {
	e := newMiniEnv(t)
	h := newPipeHook()
	e.client.AddHook(h)
	b := e.backend()
	release := holdSlots(t, b, h, "q")

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Put(ctx, "q", 0, []byte(testEnvelope("cancelled", "", "q", 0))) }()
	waitFor(t, "the call to queue", func() bool { return queued(b) == 1 })
	okc := make(chan error, 1)
	go func() { okc <- b.Put(context.Background(), "q", 0, []byte(testEnvelope("kept", "", "q", 0))) }()
	waitFor(t, "the second call to queue", func() bool { return queued(b) == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v, want context.Canceled", err)
	}
	release()
	if err := <-okc; err != nil {
		t.Fatalf("kept put: %v", err)
	}
	got := strings.Join(e.lrange(e.key("q")), "\n")
	if strings.Contains(got, `"cancelled"`) || !strings.Contains(got, `"kept"`) {
		t.Fatalf("queue q: %s\nwant the kept message and not the cancelled one", got)
	}
}

// TestAutoPipelineManyGoroutines proves: 64 goroutines publishing through
// one Backend each get nil for every message, every message is in the
// queue exactly once, and the calls shared round trips (pipelines of more
// than one message were sent).
func TestAutoPipelineManyGoroutines(t *testing.T) {
	for name, mk := range autoPipeEnvs(t) {
		t.Run(name, func(t *testing.T) {
			e := mk(t)
			h := newPipeHook()
			e.client.AddHook(h)
			b := e.backend()
			ctx := context.Background()
			if err := b.Bind(ctx, "ex", transport.BindingRow{RoutingKey: "rk", Queue: "q"}); err != nil {
				t.Fatal(err)
			}
			const workers, each = 64, 50
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						tag := fmt.Sprintf("m-%d-%d", w, i)
						var err error
						if i%2 == 0 {
							var n int
							n, err = b.Publish(ctx, "ex", entity.Direct, "rk", 0, []byte(testEnvelope(tag, "ex", "rk", 0)))
							if err == nil && n != 1 {
								err = fmt.Errorf("routed to %d queues", n)
							}
						} else {
							err = b.Put(ctx, "q", 0, []byte(testEnvelope(tag, "", "q", 0)))
						}
						if err != nil {
							t.Errorf("%s: %v", tag, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			got := e.lrange(e.key("q"))
			seen := map[string]int{}
			for _, raw := range got {
				env, err := envelope.Parse([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				seen[env.DeliveryTag]++
			}
			for w := range workers {
				for i := range each {
					if tag := fmt.Sprintf("m-%d-%d", w, i); seen[tag] != 1 {
						t.Errorf("%s is in the queue %d times", tag, seen[tag])
					}
				}
			}
			if len(got) != workers*each {
				t.Errorf("queue holds %d messages, want %d", len(got), workers*each)
			}
			shared := false
			for _, n := range h.sizes() {
				shared = shared || n > 1
			}
			if !shared {
				t.Errorf("no pipeline of more than one command was sent: %v", h.sizes())
			}
		})
	}
}
