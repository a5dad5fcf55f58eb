package celery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Proves revoke_by_stamped_headers (Celery 5.3+): a task whose stamps
// match a revoked stamp is stored REVOKED and never runs, one with another
// stamp runs; with terminate a running task with a matching stamp has its
// context cancelled with ErrTerminated; replies are Celery's texts; and
// headers that are neither a dict nor a list get an error reply.
func TestRevokeByStampedHeaders(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	started := make(chan string, 1)
	causes := make(chan error, 1)
	w := e.worker(t, func(w *Worker) {
		registerBasics(w)
		w.Register("tasks.block", func(ctx context.Context, t *Task) (any, error) {
			started <- t.ID
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	})
	stamped := func(v string) SendOption {
		return WithHeaders(map[string]any{"stamped_headers": []any{"mtask_id"}, "stamps": map[string]any{"mtask_id": v}})
	}
	r, _ := w.controlCommand(ctx, "revoke_by_stamped_headers", map[string]any{"headers": map[string]any{"mtask_id": []any{"v1"}}})
	if fmt.Sprint(r) != "map[ok:headers {'mtask_id': ['v1']} flagged as revoked, but not terminated]" {
		t.Errorf("reply: %v", r)
	}
	revoked := e.send(t, "tasks.add", []any{1, 1}, nil, stamped("v1"))
	kept := e.send(t, "tasks.add", []any{2, 2}, nil, stamped("v2"))
	if v, err := get(t, kept); err != nil || fmt.Sprint(v) != "4" {
		t.Errorf("a task with another stamp: %v %v", v, err)
	}
	if _, err := get(t, revoked); err == nil {
		t.Error("the task with a revoked stamp ran")
	}
	if st, _ := revoked.State(ctx); st != StateRevoked {
		t.Errorf("the task with a revoked stamp: %s, want REVOKED", st)
	}

	running := e.send(t, "tasks.block", nil, nil, stamped("v3"))
	<-started
	// The command line sends name=value strings.
	r, _ = w.controlCommand(ctx, "revoke_by_stamped_headers", map[string]any{"headers": []any{"mtask_id=v3"}, "terminate": true})
	if fmt.Sprint(r) != "map[ok:headers defaultdict(<class 'set'>, {'mtask_id': {'v3'}}) revoked]" {
		t.Errorf("terminate reply: %v", r)
	}
	select {
	case c := <-causes:
		if c != ErrTerminated {
			t.Errorf("cause %v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running task with a revoked stamp was not terminated")
	}
	_, _ = get(t, running)
	r, _ = w.controlCommand(ctx, "revoke_by_stamped_headers", map[string]any{"headers": map[string]any{"other": "x"}, "terminate": true})
	if fmt.Sprint(r) != "map[ok:headers {'other': 'x'} were not terminated]" {
		t.Errorf("nothing to terminate: %v", r)
	}
	r, _ = w.controlCommand(ctx, "revoke_by_stamped_headers", map[string]any{"headers": "oops"})
	if !strings.Contains(fmt.Sprint(r), "error:AttributeError") {
		t.Errorf("malformed headers: %v", r)
	}
}
