package celery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Proves: once a handler returns, its pool slot takes the next task while
// the first task's result is still being stored (the store is held in
// Redis's round trip), never running more handlers at once than the
// concurrency; the held task finishes afterwards and every task's result
// is stored (acks_late on, so the held task keeps its message meanwhile).
func TestWorkerHandsOffSlotWhileStoring(t *testing.T) {
	e := newTestEnv(t)
	hook := newPipeHook()
	e.backend.Client().(*redis.Client).AddHook(hook)
	var running, most, ran atomic.Int32
	secondRan := make(chan struct{})
	e.worker(t, func(w *Worker) {
		w.Register("tasks.noop", func(context.Context, *Task) (any, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if ran.Add(1) == 2 {
				close(secondRan)
			}
			time.Sleep(time.Millisecond)
			return "ok", nil
		})
	}, WithConcurrency(1), WithAcksLate(true))
	first := e.send(t, "tasks.noop", nil, nil)
	waitFor(t, func() bool { return len(hook.sent()) > 0 }) // its store is held
	var rest []*AsyncResult
	for range 10 {
		rest = append(rest, e.send(t, "tasks.noop", nil, nil))
	}
	select {
	case <-secondRan:
	case <-time.After(5 * time.Second):
		t.Fatal("the next task did not start while the first one's result was being stored")
	}
	if m, _ := e.backend.Get(context.Background(), first.ID); m.Status != StatePending {
		t.Fatalf("first task's result stored while held: %s", m.Status)
	}
	close(hook.release)
	for _, r := range append(rest, first) {
		if v, err := get(t, r); err != nil || v != "ok" {
			t.Fatalf("%s: %v %v", r.ID, v, err)
		}
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d handlers ran at once with concurrency 1", m)
	}
}
