package celery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Proves add_consumer and cancel_consumer: after add_consumer the worker
// runs tasks sent to the new queue (and lists it in active_queues); after
// cancel_consumer it takes no more from it (a task sent then waits in the
// queue); cancelling a queue given at start pauses it the same way (a task
// sent to it waits, active_queues no longer lists it) and add_consumer
// resumes it (the waiting task runs).
func TestWorkerAddCancelConsumer(t *testing.T) {
	e := newTestEnv(t)
	w := e.worker(t, registerBasics)
	ctx := context.Background()
	extra := e.queue + "-extra"
	if r, _ := w.controlCommand(ctx, "add_consumer", map[string]any{"queue": extra}); fmt.Sprint(r) != "map[ok:add consumer "+extra+"]" {
		t.Fatalf("add_consumer: %v", r)
	}
	if v, err := get(t, e.send(t, "tasks.add", []any{2, 2}, nil, WithQueue(extra))); err != nil || fmt.Sprint(v) != "4" {
		t.Fatalf("task on the added queue: %v %v", v, err)
	}
	if aq, _ := w.controlCommand(ctx, "active_queues", nil); !strings.Contains(fmt.Sprint(aq), extra) {
		t.Errorf("active_queues: %v", aq)
	}
	if r, _ := w.controlCommand(ctx, "cancel_consumer", map[string]any{"queue": extra}); fmt.Sprint(r) != "map[ok:no longer consuming from "+extra+"]" {
		t.Fatalf("cancel_consumer: %v", r)
	}
	time.Sleep(1200 * time.Millisecond) // a wait in progress ends within the polling interval (1 s)
	late := e.send(t, "tasks.add", []any{3, 3}, nil, WithQueue(extra))
	time.Sleep(500 * time.Millisecond)
	if st, _ := late.State(ctx); st != StatePending {
		t.Errorf("a task sent after cancel_consumer ran: %s", st)
	}
	if n, _ := e.conn.Len(ctx, extra); n != 1 {
		t.Errorf("%d messages left in the cancelled queue, want 1", n)
	}
	if r, _ := w.controlCommand(ctx, "cancel_consumer", map[string]any{"queue": e.queue}); fmt.Sprint(r) != "map[ok:no longer consuming from "+e.queue+"]" {
		t.Fatalf("cancelling a start queue: %v", r)
	}
	time.Sleep(1200 * time.Millisecond) // a wait in progress ends within the polling interval (1 s)
	held := e.send(t, "tasks.add", []any{4, 4}, nil)
	time.Sleep(500 * time.Millisecond)
	if st, _ := held.State(ctx); st != StatePending {
		t.Errorf("a task sent to a cancelled start queue ran: %s", st)
	}
	aq, _ := w.controlCommand(ctx, "active_queues", nil)
	for _, q := range aq.([]any) {
		if q.(map[string]any)["name"] == e.queue {
			t.Errorf("active_queues lists the cancelled start queue: %v", aq)
		}
	}
	if r, _ := w.controlCommand(ctx, "add_consumer", map[string]any{"queue": e.queue}); fmt.Sprint(r) != "map[ok:add consumer "+e.queue+"]" {
		t.Fatalf("add_consumer of the cancelled start queue: %v", r)
	}
	if v, err := get(t, held); err != nil || fmt.Sprint(v) != "8" {
		t.Errorf("the task waiting in the resumed start queue: %v %v", v, err)
	}
}

// Proves ExpandNodeName forms node names as `celery worker -n` does.
func TestExpandNodeName(t *testing.T) {
	for in, want := range map[string]string{
		"go1@%h":      "go1@web1.example.com",
		"%n-go@%d":    "web1-go@example.com",
		"worker":      "celery@worker",
		"%h":          "celery@web1.example.com",
		"w%I@%n":      "w@web1",
		"a%%b@%n":     "a%b@web1",
		"celery@host": "celery@host",
	} {
		if got := expandNodeName(in, "web1.example.com"); got != want {
			t.Errorf("expandNodeName(%q) = %q, want %q", in, got, want)
		}
	}
}
