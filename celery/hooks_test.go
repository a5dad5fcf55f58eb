package celery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type hookCtxKey struct{}

// hookLog records what the middleware saw.
type hookLog struct {
	mu    sync.Mutex
	sends []string // "task id queue rk ctx=<value>"
	runs  []string // "task id retries parent root header"
	ends  []string // "task id result err"
}

func (l *hookLog) add(p *[]string, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*p = append(*p, s)
}

func (l *hookLog) snapshot() (sends, runs, ends []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sends...), append([]string(nil), l.runs...), append([]string(nil), l.ends...)
}

func (l *hookLog) send(who string) SendMiddleware {
	return func(next SendFunc) SendFunc {
		return func(ctx context.Context, o *OutgoingTask) error {
			o.Message.Headers["x-hook"] = who + ":" + o.Message.ID
			v, _ := ctx.Value(hookCtxKey{}).(string)
			l.add(&l.sends, fmt.Sprintf("%s %s %s %s/%s ctx=%s", who, o.Message.Task, o.Message.ID, o.Queue, o.RoutingKey, v))
			return next(ctx, o)
		}
	}
}

func (l *hookLog) task() TaskMiddleware {
	return func(next TaskFunc) TaskFunc {
		return func(ctx context.Context, t *Task) (any, error) {
			l.add(&l.runs, fmt.Sprintf("%s %s retries=%d parent=%s root=%s hook=%v", t.Task, t.ID, t.Retries, t.ParentID, t.RootID, t.Headers["x-hook"]))
			r, err := next(context.WithValue(ctx, hookCtxKey{}, "run:"+t.ID), t)
			l.add(&l.ends, fmt.Sprintf("%s %s %v %v", t.Task, t.ID, r, err))
			return r, err
		}
	}
}

// TestSendAndTaskMiddleware proves: a client's send middleware sees every
// task message before publish (queue and routing key resolved) and the
// headers it adds reach the worker's Task; a worker's task middleware sees
// each run (id, name, retries, parent and root ids, headers) and the
// handler's result or error; the retries and chain steps the worker sends
// go through the worker client's send middleware with the context the
// task middleware passed on, so instrumentation parents them under the
// running task.
func TestSendAndTaskMiddleware(t *testing.T) {
	e := newTestEnv(t)
	var log hookLog
	e.client = NewClient(e.conn, e.backend, WithDefaultQueue(e.queue), WithSendMiddleware(log.send("client")))
	var mu sync.Mutex
	tries := 0
	e.worker(t, func(w *Worker) {
		w.Register("add", addHandler)
		w.Register("flaky", func(_ context.Context, t *Task) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			tries++
			if tries == 1 {
				return nil, t.Retry(errors.New("once more"), 0)
			}
			return "ok", nil
		})
	}, WithTaskMiddleware(log.task()), WithClientOptions(WithSendMiddleware(log.send("worker"))))

	ctx := context.Background()
	r := e.send(t, "flaky", nil, nil)
	if v, err := get(t, r); err != nil || v != "ok" {
		t.Fatalf("flaky: %v %v", v, err)
	}
	res, err := e.client.Apply(ctx, Chain(NewSignature("add", []any{1, 2}, nil), NewSignature("add", []any{3}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := res.Get(gctx); err != nil || fmt.Sprint(v) != "6" {
		t.Fatalf("chain: %v %v", v, err)
	}
	// The chain's last result is stored after its middleware returned;
	// wait for the middleware's own record of it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ends := log.snapshot(); len(ends) == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	sends, runs, ends := log.snapshot()
	first := r.ID
	want := []string{
		fmt.Sprintf("client flaky %s %s/%s ctx=", first, e.queue, e.queue),
		fmt.Sprintf("worker flaky %s %s/%s ctx=run:%s", first, e.queue, e.queue, first),
	}
	if len(sends) != 4 || sends[0] != want[0] || sends[1] != want[1] {
		t.Fatalf("sends:\n%q\nwant first two\n%q", sends, want)
	}
	if len(runs) != 4 {
		t.Fatalf("runs: %q", runs)
	}
	if w := fmt.Sprintf("flaky %s retries=0 parent= root=%s hook=client:%s", first, first, first); runs[0] != w {
		t.Errorf("first run %q, want %q", runs[0], w)
	}
	if w := fmt.Sprintf("flaky %s retries=1 parent=%s root=%s hook=worker:%s", first, first, first, first); runs[1] != w {
		t.Errorf("retry run %q, want %q", runs[1], w)
	}
	// A middleware returns after its task's result is stored (and the
	// test goes on), so the ends come in any order.
	if w := fmt.Sprintf("flaky %s <nil> Retry in 0s: once more", first); !slices.Contains(ends, w) {
		t.Errorf("ends %q, want one %q", ends, w)
	}
	if w := fmt.Sprintf("flaky %s ok <nil>", first); !slices.Contains(ends, w) {
		t.Errorf("ends %q, want one %q", ends, w)
	}
	// The chain: the client sends the first step, the worker the second
	// from within the first's run.
	var step1 string
	if _, err := fmt.Sscanf(sends[2], "client add %s", &step1); err != nil {
		t.Fatalf("chain send %q: %v", sends[2], err)
	}
	var step2, rest string
	if _, err := fmt.Sscanf(sends[3], "worker add %s %s", &step2, &rest); err != nil || rest != fmt.Sprintf("%s/%s", e.queue, e.queue) {
		t.Fatalf("chain step send %q: %v", sends[3], err)
	}
	if w := fmt.Sprintf("worker add %s %s/%s ctx=run:%s", step2, e.queue, e.queue, step1); sends[3] != w {
		t.Errorf("chain step send %q, want %q", sends[3], w)
	}
	if w := fmt.Sprintf("add %s retries=0 parent=%s root=%s hook=worker:%s", step2, step1, step1, step2); runs[3] != w {
		t.Errorf("chain step run %q, want %q", runs[3], w)
	}
	if w := fmt.Sprintf("add %s 6 <nil>", step2); !slices.Contains(ends, w) {
		t.Errorf("ends %q, want one %q", ends, w)
	}
}

// TestMiddlewareErrors proves: a nil middleware fails the send (client)
// and Start (worker, whether given to it or to its client) with
// ErrNilMiddleware; a task middleware that returns without running the
// task fails it with the middleware's error, stored as the result; one
// that panics fails it with the panic, and the worker survives.
func TestMiddlewareErrors(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c := NewClient(e.conn, e.backend, WithSendMiddleware(nil))
	if _, err := c.SendTask(ctx, "add", []any{1, 2}, nil); !errors.Is(err, ErrNilMiddleware) {
		t.Errorf("SendTask with a nil middleware: %v", err)
	}
	for _, opt := range []WorkerOption{WithTaskMiddleware(nil), WithClientOptions(WithSendMiddleware(nil))} {
		w := NewWorker(e.conn, e.backend, WithQueues(e.queue), opt)
		if err := w.Start(ctx); !errors.Is(err, ErrNilMiddleware) {
			_ = w.Shutdown()
			t.Errorf("Start with a nil middleware: %v", err)
		}
	}
	ran := false
	e.worker(t, func(w *Worker) {
		w.Register("add", func(ctx context.Context, t *Task) (any, error) { ran = true; return addHandler(ctx, t) })
	}, WithTaskMiddleware(func(next TaskFunc) TaskFunc {
		return func(ctx context.Context, t *Task) (any, error) {
			return nil, NewError("PermissionError", "not today")
		}
	}))
	_, err := get(t, e.send(t, "add", []any{1, 2}, nil))
	var te *TaskError
	if !errors.As(err, &te) || te.Type != "PermissionError" || ran {
		t.Fatalf("vetoed task: %v (ran %v)", err, ran)
	}

	e2 := newTestEnv(t)
	e2.worker(t, func(w *Worker) { w.Register("add", addHandler) }, WithTaskMiddleware(func(next TaskFunc) TaskFunc {
		return func(ctx context.Context, t *Task) (any, error) { panic("middleware bug") }
	}))
	_, err = get(t, e2.send(t, "add", []any{1, 2}, nil))
	if !errors.As(err, &te) || te.Type != "Exception" || !strings.Contains(te.Error(), "panic in task middleware: middleware bug") {
		t.Fatalf("task of a panicking middleware: %v", err)
	}
}
