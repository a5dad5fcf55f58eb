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

// Proves: with task events on and acks_late, tasks whose stores are
// batched (held in one round trip while later tasks run) still send
// task-succeeded only after their own result is in the backend: every
// task-succeeded event received finds its task's SUCCESS stored.
func TestWorkerBatchedStoreBeforeSucceededEvent(t *testing.T) {
	e := newTestEnv(t)
	hook := newPipeHook()
	e.backend.Client().(*redis.Client).AddHook(hook)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		id     string
		status State
	}
	events := make(chan seen, 16)
	ready := make(chan struct{})
	go func() {
		_ = NewEventReceiver(e.conn).Run(ctx, func(ev Event) {
			if ev.Type == "task-succeeded" {
				m, _ := e.backend.Get(context.Background(), ev.UUID)
				events <- seen{ev.UUID, m.Status}
			}
		}, func() { close(ready) }, nil)
	}()
	<-ready
	e.worker(t, func(w *Worker) {
		w.Register("tasks.noop", func(context.Context, *Task) (any, error) { return "ok", nil })
	}, WithConcurrency(1), WithAcksLate(true), WithEvents(), WithoutHeartbeat())
	first := e.send(t, "tasks.noop", nil, nil).ID
	waitFor(t, func() bool { return len(hook.sent()) > 0 }) // its store is held
	ids := map[string]bool{first: true}
	for range 3 {
		ids[e.send(t, "tasks.noop", nil, nil).ID] = true
	}
	queued(t, e.backend, 3) // the next three ran and wait in one batch
	select {
	case ev := <-events:
		t.Fatalf("task-succeeded for %s sent while its store was held", ev.id)
	case <-time.After(100 * time.Millisecond):
	}
	close(hook.release)
	for range ids {
		select {
		case ev := <-events:
			if !ids[ev.id] || ev.status != StateSuccess {
				t.Fatalf("task-succeeded for %s found its result %s", ev.id, ev.status)
			}
			delete(ids, ev.id)
		case <-time.After(5 * time.Second):
			t.Fatalf("no task-succeeded for %v", ids)
		}
	}
}
