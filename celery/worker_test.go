package celery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
)

// testEnv is a private in-memory broker, a miniredis result backend, a
// client and a fresh queue name.
type testEnv struct {
	conn    *kombu.Connection
	backend *Backend
	client  *Client
	queue   string
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	conn := memConn(t)
	b, _ := miniBackend(t, WithPollInterval(50*time.Millisecond))
	q := "q-" + uuid.NewString()[:8]
	return &testEnv{conn: conn, backend: b, client: NewClient(conn, b, WithDefaultQueue(q)), queue: q, logs: &syncBuffer{}}
}

// worker returns a started worker on the env's queue; it is shut down at
// the end of the test.
func (e *testEnv) worker(t *testing.T, register func(w *Worker), opts ...WorkerOption) *Worker {
	t.Helper()
	base := []WorkerOption{WithQueues(e.queue), WithConcurrency(2), WithShutdownTimeout(2 * time.Second),
		WithLogger(slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}
	w := NewWorker(e.conn, e.backend, append(base, opts...)...)
	register(w)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown() })
	return w
}

func (e *testEnv) send(t *testing.T, name string, args []any, kwargs map[string]any, opts ...SendOption) *AsyncResult {
	t.Helper()
	r, err := e.client.SendTask(context.Background(), name, args, kwargs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func get(t *testing.T, r *AsyncResult) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := r.Get(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no result for %s", r.ID)
	}
	return v, err
}

func addHandler(_ context.Context, t *Task) (any, error) {
	var x, y int
	if err := t.Bind(&x, &y); err != nil {
		return nil, err
	}
	return x + y, nil
}

func registerBasics(w *Worker) {
	w.Register("tasks.add", addHandler)
	w.Register("tasks.echo", func(_ context.Context, t *Task) (any, error) {
		return map[string]any{"args": t.Args, "kwargs": t.Kwargs}, nil
	})
	w.Register("tasks.fail", func(_ context.Context, t *Task) (any, error) {
		var msg string
		if err := t.Arg(0, &msg); err != nil {
			return nil, err
		}
		return nil, NewError("ValueError", msg)
	})
	w.Register("tasks.plain_error", func(context.Context, *Task) (any, error) { return nil, errors.New("plain go error") })
	w.Register("tasks.panic", func(context.Context, *Task) (any, error) { panic("kaboom") })
}

// Proves: registered handlers run and their results, Celery failures (with
// the Python type), plain Go errors and panics are stored as Celery stores
// them.
func TestWorkerRunsTasks(t *testing.T) {
	e := newTestEnv(t)
	e.worker(t, registerBasics)
	add := e.send(t, "tasks.add", []any{2, 3}, nil)
	echo := e.send(t, "tasks.echo", []any{1, "a"}, map[string]any{"k": true})
	fail := e.send(t, "tasks.fail", []any{"boom"}, nil)
	plain := e.send(t, "tasks.plain_error", nil, nil)
	pan := e.send(t, "tasks.panic", nil, nil)

	if v, err := get(t, add); err != nil || fmt.Sprint(v) != "5" {
		t.Fatalf("add: %v %v", v, err)
	}
	var echoed struct {
		Args   []any
		Kwargs map[string]bool
	}
	if err := echo.GetInto(context.Background(), &echoed); err != nil || len(echoed.Args) != 2 || !echoed.Kwargs["k"] {
		t.Fatalf("echo: %+v %v", echoed, err)
	}
	var te *TaskError
	if _, err := get(t, fail); !errors.As(err, &te) || te.Type != "ValueError" || te.Module != "builtins" || te.Message() != "boom" {
		t.Fatalf("fail: %v", err)
	}
	if _, err := get(t, plain); !errors.As(err, &te) || te.Type != "Exception" || te.Message() != "plain go error" {
		t.Fatalf("plain: %v", err)
	}
	if _, err := get(t, pan); !errors.As(err, &te) || !strings.Contains(te.Message(), "kaboom") || !strings.Contains(te.Traceback, "goroutine") {
		t.Fatalf("panic: %v traceback %q", err, te.Traceback)
	}
	// A wrong argument count is a TypeError, as in Python.
	bad := e.send(t, "tasks.add", []any{1}, nil)
	if _, err := get(t, bad); !errors.As(err, &te) || te.Type != "TypeError" {
		t.Fatalf("bad args: %v", err)
	}
}

// Proves: eta/countdown tasks are held without blocking the others, even
// with a prefetch limit of one message (held tasks do not count against
// prefetch, as in Celery): a task sent after five countdown tasks runs
// first, and each countdown task runs no earlier than its eta; the
// prefetch count, raised by one per held task, is back at one after.
func TestWorkerETADoesNotBlock(t *testing.T) {
	e := newTestEnv(t)
	type run struct{ eta, at time.Time }
	var mu sync.Mutex
	ran := map[string]run{}
	w := e.worker(t, func(w *Worker) {
		w.Register("tasks.when", func(_ context.Context, t *Task) (any, error) {
			mu.Lock()
			ran[t.ID] = run{eta: t.ETA, at: time.Now()}
			mu.Unlock()
			return nil, nil
		})
	}, WithConcurrency(1), WithPrefetchMultiplier(1))
	var delayed []*AsyncResult
	for i := 0; i < 5; i++ {
		delayed = append(delayed, e.send(t, "tasks.when", nil, nil, WithCountdown(1500*time.Millisecond)))
	}
	now := e.send(t, "tasks.when", nil, nil)
	if _, err := get(t, now); err != nil {
		t.Fatal(err)
	}
	for _, r := range delayed {
		if _, err := get(t, r); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	immediate := ran[now.ID]
	for _, r := range delayed {
		d := ran[r.ID]
		if d.eta.IsZero() || d.at.Before(d.eta) {
			t.Fatalf("eta task ran at %v, its eta is %v", d.at, d.eta)
		}
		if !d.at.After(immediate.at) {
			t.Fatalf("eta task ran at %v, before the task sent after it (%v)", d.at, immediate.at)
		}
	}
	if p := w.qos.Prefetch(); p != 1 {
		t.Errorf("prefetch count %d after the eta tasks ran, want 1", p)
	}
}

// Proves: a task received after its expiry is marked REVOKED
// (TaskRevokedError 'expired') without running, and so is one that expires
// while held for its eta; the messages are acknowledged.
func TestWorkerExpiredRevoked(t *testing.T) {
	e := newTestEnv(t)
	var calls atomic.Int32
	e.worker(t, func(w *Worker) {
		w.Register("tasks.x", func(context.Context, *Task) (any, error) { calls.Add(1); return 1, nil })
	})
	past := e.send(t, "tasks.x", nil, nil, WithExpiresIn(-time.Second))
	held := e.send(t, "tasks.x", nil, nil, WithCountdown(300*time.Millisecond), WithExpiresIn(100*time.Millisecond))
	for _, r := range []*AsyncResult{past, held} {
		_, err := get(t, r)
		var te *TaskError
		if !errors.Is(err, ErrTaskRevoked) || !errors.As(err, &te) || te.Type != "TaskRevokedError" || te.Message() != "expired" {
			t.Fatalf("%s: %v", r.ID, err)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("expired task ran %d times", calls.Load())
	}
	waitEmpty(t, e)
}

// waitEmpty waits until the queue is empty and nothing is unacknowledged.
func waitEmpty(t *testing.T, e *testEnv) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := e.conn.Len(context.Background(), e.queue)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("queue not empty")
}

// Proves: a handler's Retry re-sends the task (same id, retries+1,
// parent_id set, after the countdown), RETRY is stored in between, and the
// last try's result is what Get returns.
func TestWorkerRetry(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	var seen []*TaskMessage
	e.worker(t, func(w *Worker) {
		w.Register("tasks.flaky", func(_ context.Context, t *Task) (any, error) {
			mu.Lock()
			seen = append(seen, t.TaskMessage)
			mu.Unlock()
			if t.Retries < 2 {
				return nil, t.Retry(NewError("KeyError", "again"), 50*time.Millisecond)
			}
			return t.Retries, nil
		})
	})
	r := e.send(t, "tasks.flaky", []any{"x"}, nil)
	v, err := get(t, r)
	if err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("%v %v", v, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("ran %d times", len(seen))
	}
	for i, m := range seen {
		if m.ID != r.ID || m.Retries != i || m.RootID != r.ID {
			t.Fatalf("try %d: %+v", i, m)
		}
		if i > 0 && (m.ParentID != r.ID || m.ETA.IsZero() || m.Args[0] != "x") {
			t.Fatalf("retry message %d: %+v", i, m)
		}
	}
	meta, _ := r.Info(context.Background())
	if meta.ParentID != r.ID {
		t.Fatalf("final meta parent %q", meta.ParentID)
	}
}

// Proves: past max_retries a retry fails the task: with the retry's reason
// as the exception, or MaxRetriesExceededError without one; AutoRetry
// retries matching errors after the task's (pluggable) retry delay.
func TestWorkerRetryLimits(t *testing.T) {
	e := newTestEnv(t)
	var autoCalls atomic.Int32
	errFlaky := errors.New("flaky")
	e.worker(t, func(w *Worker) {
		w.Register("tasks.always_exc", func(_ context.Context, t *Task) (any, error) {
			return nil, Retry(NewError("IOError", "down"), 0)
		}, MaxRetries(1))
		w.Register("tasks.always", func(_ context.Context, t *Task) (any, error) {
			return nil, RetryAfterDelay(nil)
		}, MaxRetries(2), TaskRetryDelay(FixedRetryDelay(10*time.Millisecond)))
		w.Register("tasks.auto", func(_ context.Context, t *Task) (any, error) {
			if autoCalls.Add(1) < 3 {
				return nil, fmt.Errorf("wrapped: %w", errFlaky)
			}
			return "ok", nil
		}, AutoRetry(func(err error) bool { return errors.Is(err, errFlaky) }),
			TaskRetryDelay(ExponentialRetryDelay(5*time.Millisecond, 20*time.Millisecond)))
	})
	var te *TaskError
	if _, err := get(t, e.send(t, "tasks.always_exc", nil, nil)); !errors.As(err, &te) || te.Type != "IOError" {
		t.Fatalf("always_exc: %v", err)
	}
	_, err := get(t, e.send(t, "tasks.always", []any{1}, nil))
	if !errors.Is(err, ErrMaxRetriesExceeded) || !strings.Contains(err.Error(), "Can't retry tasks.always[") {
		t.Fatalf("always: %v", err)
	}
	if v, err := get(t, e.send(t, "tasks.auto", nil, nil)); err != nil || v != "ok" {
		t.Fatalf("auto: %v %v", v, err)
	}
}

// Proves: an unknown task name is logged and rejected with a NotRegistered
// failure stored, and the messages around it are still processed.
func TestWorkerUnknownTask(t *testing.T) {
	e := newTestEnv(t)
	e.worker(t, registerBasics, WithConcurrency(1))
	before := e.send(t, "tasks.add", []any{1, 1}, nil)
	unknown := e.send(t, "tasks.nope", []any{1}, nil)
	after := e.send(t, "tasks.add", []any{2, 2}, nil)
	if v, err := get(t, before); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("%v %v", v, err)
	}
	if v, err := get(t, after); err != nil || fmt.Sprint(v) != "4" {
		t.Fatalf("%v %v", v, err)
	}
	var te *TaskError
	if _, err := get(t, unknown); !errors.Is(err, ErrNotRegistered) || !errors.As(err, &te) || te.Message() != "tasks.nope" {
		t.Fatalf("unknown: %v", err)
	}
	waitEmpty(t, e)
	if !strings.Contains(e.logs.String(), "unregistered task") || !strings.Contains(e.logs.String(), "tasks.nope") {
		t.Fatalf("not logged: %s", e.logs.String())
	}
}

// Proves: a message that is not a task message is rejected (logged, not
// requeued) and does not stop the worker.
func TestWorkerInvalidMessage(t *testing.T) {
	e := newTestEnv(t)
	var errs atomic.Int32
	e.worker(t, registerBasics, WithConcurrency(1), WithErrorHandler(func(error) { errs.Add(1) }))
	raw := []byte(`{"body": "` + b64(`{"no": "task"}`) + `", "content-encoding": "utf-8", "content-type": "application/json", "headers": {}, "properties": {"delivery_info": {"exchange": "", "routing_key": "` + e.queue + `"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "` + uuid.NewString() + `"}}`)
	if _, err := e.conn.Transport().PublishRaw(context.Background(), "", e.queue, 0, raw, false); err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, e.send(t, "tasks.add", []any{3, 4}, nil)); err != nil || fmt.Sprint(v) != "7" {
		t.Fatalf("%v %v", v, err)
	}
	waitEmpty(t, e)
	if errs.Load() == 0 {
		t.Fatal("invalid message not reported")
	}
}

// Proves: the prefetch limit (concurrency × multiplier) bounds how many
// messages the worker takes while its pool is busy (exactly, as Celery:
// with a prefetch of one, the running task, acknowledged when it started,
// frees its slot, so one more is taken and ten of twelve stay queued);
// multiplier 0 takes everything, as in Celery.
func TestWorkerPrefetch(t *testing.T) {
	for _, c := range []struct {
		mult        int
		wantLeftMin int64
	}{{1, 10}, {0, 0}} {
		t.Run(fmt.Sprint("multiplier=", c.mult), func(t *testing.T) {
			e := newTestEnv(t)
			release := make(chan struct{})
			started := make(chan struct{}, 20)
			w := e.worker(t, func(w *Worker) {
				w.Register("tasks.block", func(ctx context.Context, t *Task) (any, error) {
					started <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
					}
					return nil, nil
				})
			}, WithConcurrency(1), WithPrefetchMultiplier(c.mult))
			for i := 0; i < 12; i++ {
				e.send(t, "tasks.block", nil, nil)
			}
			<-started
			if c.mult > 0 {
				time.Sleep(200 * time.Millisecond) // time to take more, if it would
				left, _ := e.conn.Len(context.Background(), e.queue)
				if n := w.qos.Unsettled(); n > c.mult {
					t.Fatalf("%d messages held against a prefetch of %d", n, c.mult)
				}
				if left < c.wantLeftMin {
					t.Fatalf("only %d left on the queue", left)
				}
			} else {
				waitEmpty(t, e) // everything taken while one task blocks
			}
			close(release)
			waitEmpty(t, e)
		})
	}
}

// Proves: tasks run concurrently up to the concurrency setting.
func TestWorkerConcurrency(t *testing.T) {
	e := newTestEnv(t)
	var running, peak atomic.Int32
	e.worker(t, func(w *Worker) {
		w.Register("tasks.sleep", func(context.Context, *Task) (any, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			// Hold the slot until four run at once (or give up).
			for deadline := time.Now().Add(5 * time.Second); peak.Load() < 4 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			return nil, nil
		})
	}, WithConcurrency(4))
	var rs []*AsyncResult
	for i := 0; i < 8; i++ {
		rs = append(rs, e.send(t, "tasks.sleep", nil, nil))
	}
	for _, r := range rs {
		if _, err := get(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != 4 {
		t.Fatalf("peak concurrency %d, want 4", p)
	}
}

// Proves: a warm shutdown lets the running task finish and store its
// result, and puts back on the queue every message the worker held but had
// not started: prefetched ones and eta ones.
//
// The five messages are queued before the worker starts, the eta one
// first, so that it takes all of them whatever the timing: its first fetch
// takes four (the prefetch count), the eta one raises the count by one and
// the running task's early ack frees another, which brings the fifth. (Sent
// after the first task started, the eta message could arrive once three
// others held three of the four slots: the fetch loop then waits for two
// free slots, which the blocked task never gives.)
func TestWorkerShutdownRestores(t *testing.T) {
	e := newTestEnv(t)
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	e.send(t, "tasks.block", nil, nil, WithCountdown(time.Hour))
	first := e.send(t, "tasks.block", nil, nil)
	for i := 0; i < 3; i++ {
		e.send(t, "tasks.block", nil, nil)
	}
	w := e.worker(t, func(w *Worker) {
		w.Register("tasks.block", func(context.Context, *Task) (any, error) {
			started <- struct{}{}
			<-release
			return "done", nil
		})
	}, WithConcurrency(1), WithPrefetchMultiplier(4))
	<-started
	waitEmpty(t, e) // the worker took (prefetched or holds) all of them
	done := make(chan error)
	go func() { done <- w.Shutdown() }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, first); err != nil || v != "done" {
		t.Fatalf("running task: %v %v", v, err)
	}
	if n, _ := e.conn.Len(context.Background(), e.queue); n != 4 {
		t.Fatalf("%d messages back on the queue, want 4", n)
	}
	if len(started) != 0 {
		t.Fatal("a held task was started during shutdown")
	}
}

// Proves: acks_late and early acks behave as in Celery when a task is cut
// off by the shutdown timeout: with late acks the message goes back to its
// queue; with early acks it was acknowledged when the task started.
func TestWorkerAcksLateVsEarly(t *testing.T) {
	for _, late := range []bool{true, false} {
		t.Run(fmt.Sprint("acks_late=", late), func(t *testing.T) {
			e := newTestEnv(t)
			started := make(chan struct{}, 1)
			w := e.worker(t, func(w *Worker) {
				w.Register("tasks.stuck", func(ctx context.Context, t *Task) (any, error) {
					started <- struct{}{}
					<-ctx.Done()
					return nil, ctx.Err()
				})
			}, WithConcurrency(1), WithAcksLate(late), WithShutdownTimeout(100*time.Millisecond))
			r := e.send(t, "tasks.stuck", nil, nil)
			<-started
			if err := w.Shutdown(); err != nil {
				t.Fatal(err)
			}
			n, _ := e.conn.Len(context.Background(), e.queue)
			want := int64(0)
			if late {
				want = 1
			}
			if n != want {
				t.Fatalf("%d on the queue, want %d", n, want)
			}
			if s, _ := r.State(context.Background()); s != StatePending {
				t.Fatalf("state %s stored for a task cut off by shutdown", s)
			}
		})
	}
}

// Proves: link callbacks run with the result prepended and their results
// are recorded as children; link_error errbacks run with the task id;
// immutable signatures get no extra argument.
func TestWorkerCallbacks(t *testing.T) {
	e := newTestEnv(t)
	got := make(chan []any, 4)
	e.worker(t, func(w *Worker) {
		registerBasics(w)
		w.Register("tasks.record", func(_ context.Context, t *Task) (any, error) {
			got <- t.Args
			return nil, nil
		})
	}, WithClientOptions(WithDefaultQueue(e.queue))) // callbacks go to the default queue, as in Celery
	r := e.send(t, "tasks.add", []any{4, 5}, nil, WithLink(NewSignature("tasks.add", []any{10}, nil)))
	if _, err := get(t, r); err != nil {
		t.Fatal(err)
	}
	meta, _ := r.Info(context.Background())
	if len(meta.Children) != 1 {
		t.Fatalf("children %v", meta.Children)
	}
	childID := meta.Children[0].([]any)[0].([]any)[0].(string)
	child := e.client.AsyncResult(childID)
	if v, err := get(t, child); err != nil || fmt.Sprint(v) != "19" {
		t.Fatalf("callback: %v %v", v, err)
	}
	if cm, _ := child.Info(context.Background()); cm.ParentID != r.ID {
		t.Fatalf("callback parent %q", cm.ParentID)
	}
	f := e.send(t, "tasks.fail", []any{"x"}, nil,
		WithLinkError(NewSignature("tasks.record", nil, nil), Signature{Task: "tasks.record", Args: []any{"fixed"}, Immutable: true}))
	_, _ = get(t, f)
	var calls [][]any
	for i := 0; i < 2; i++ {
		select {
		case a := <-got:
			calls = append(calls, a)
		case <-time.After(5 * time.Second):
			t.Fatal("errback not run")
		}
	}
	seen := fmt.Sprint(calls)
	if !strings.Contains(seen, "["+f.ID+"]") || !strings.Contains(seen, "[fixed]") {
		t.Fatalf("errback args %v", calls)
	}
}

// Proves: Reject drops (or, with late acks, requeues) the message and
// Ignore acknowledges it, both without storing a state, as Celery's Reject
// and Ignore.
func TestWorkerRejectIgnore(t *testing.T) {
	e := newTestEnv(t)
	var requeued atomic.Int32
	e.worker(t, func(w *Worker) {
		w.Register("tasks.reject", func(context.Context, *Task) (any, error) { return nil, Reject(errors.New("no"), false) })
		w.Register("tasks.ignore", func(context.Context, *Task) (any, error) { return nil, ErrIgnore })
		w.Register("tasks.requeue", func(_ context.Context, t *Task) (any, error) {
			if requeued.Add(1) == 1 {
				return nil, Reject(nil, true)
			}
			return "second", nil
		}, TaskAcksLate(true)) // as in Celery, requeueing needs late acks
	}, WithConcurrency(1))
	rj := e.send(t, "tasks.reject", nil, nil)
	ig := e.send(t, "tasks.ignore", nil, nil)
	rq := e.send(t, "tasks.requeue", nil, nil)
	if v, err := get(t, rq); err != nil || v != "second" {
		t.Fatalf("requeue: %v %v", v, err)
	}
	waitEmpty(t, e)
	for _, r := range []*AsyncResult{rj, ig} {
		if s, _ := r.State(context.Background()); s != StatePending {
			t.Fatalf("%s stored %s", r.ID, s)
		}
	}
}

// Proves: a task's time limit cancels the handler's context and fails the
// task with TimeLimitExceeded; the message's own limit (WithTimeLimit)
// applies too.
func TestWorkerTimeLimit(t *testing.T) {
	e := newTestEnv(t)
	slow := func(ctx context.Context, _ *Task) (any, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
			return "late", nil
		}
	}
	e.worker(t, func(w *Worker) {
		w.Register("tasks.slow", slow, TimeLimit(50*time.Millisecond))
		w.Register("tasks.slow2", slow)
	})
	var te *TaskError
	if _, err := get(t, e.send(t, "tasks.slow", nil, nil)); !errors.As(err, &te) || te.Type != "TimeLimitExceeded" {
		t.Fatalf("%v", err)
	}
	if _, err := get(t, e.send(t, "tasks.slow2", nil, nil, WithTimeLimit(50*time.Millisecond, 0))); !errors.As(err, &te) || te.Type != "TimeLimitExceeded" {
		t.Fatalf("%v", err)
	}
}

// Proves: the worker runs protocol 1 messages (Celery's task_protocol=1)
// as Celery does.
func TestWorkerProtocol1(t *testing.T) {
	e := newTestEnv(t)
	e.worker(t, registerBasics)
	raw := strings.Replace(string(captured(t, "v1_countdown.json")), `"routing_key": "celery"`, `"routing_key": "`+e.queue+`"`, 1)
	if _, err := e.conn.Transport().PublishRaw(context.Background(), "", e.queue, 0, []byte(raw), false); err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, e.client.AsyncResult("a7ddf057-20b4-4a20-9ad2-e7a5b76319e1")); err != nil || fmt.Sprint(v) != "15" {
		t.Fatalf("%v %v", v, err)
	}
}

// Proves: STARTED is stored when tracking is on, and extended results carry
// the task name, args and worker (result_extended).
func TestWorkerTrackStartedExtended(t *testing.T) {
	e := newTestEnv(t)
	started := make(chan struct{})
	release := make(chan struct{})
	e.worker(t, func(w *Worker) {
		w.Register("tasks.track", func(context.Context, *Task) (any, error) {
			close(started)
			<-release
			return 1, nil
		})
	}, WithTrackStarted(), WithResultExtended(), WithHostname("celery@gotest"))
	r := e.send(t, "tasks.track", []any{"a"}, nil)
	<-started
	if s, _ := r.State(context.Background()); s != StateStarted {
		t.Fatalf("state %s", s)
	}
	close(release)
	if _, err := get(t, r); err != nil {
		t.Fatal(err)
	}
	m, _ := r.Info(context.Background())
	if m.Extended == nil || m.Extended.Name != "tasks.track" || m.Extended.Worker != "celery@gotest" || m.Extended.Queue != e.queue {
		t.Fatalf("extended %+v", m.Extended)
	}
}

// Proves: Run returns nil after its context is cancelled (the same warm
// shutdown SIGINT/SIGTERM trigger), and Start refuses a running worker.
func TestWorkerRunStops(t *testing.T) {
	e := newTestEnv(t)
	w := NewWorker(e.conn, e.backend, WithQueues(e.queue))
	registerBasics(w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	if v, err := get(t, e.send(t, "tasks.add", []any{1, 2}, nil)); err != nil || fmt.Sprint(v) != "3" {
		t.Fatalf("%v %v", v, err)
	}
	if err := w.Start(context.Background()); !errors.Is(err, ErrWorkerRunning) {
		t.Fatalf("second Start: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// Proves: a task published through a named direct exchange with a routing
// key reaches the worker consuming the bound queue; extra headers arrive in
// Task.Headers; Param binds positional or keyword arguments as Python does.
func TestWorkerExchangeHeadersParams(t *testing.T) {
	e := newTestEnv(t)
	got := make(chan *Task, 2)
	e.worker(t, func(w *Worker) {
		w.Register("tasks.params", func(_ context.Context, t *Task) (any, error) {
			got <- t
			var x, y int
			if err := t.Param(0, "x", &x); err != nil {
				return nil, err
			}
			if err := t.Param(1, "y", &y); err != nil {
				return nil, err
			}
			return x * y, nil
		})
	})
	// The worker declared e.queue bound to exchange e.queue with key e.queue.
	r := e.send(t, "tasks.params", []any{6}, map[string]any{"y": 7},
		WithExchange(e.queue, kombu.Direct), WithRoutingKey(e.queue), WithHeaders(map[string]any{"tenant": "acme"}))
	if v, err := get(t, r); err != nil || fmt.Sprint(v) != "42" {
		t.Fatalf("%v %v", v, err)
	}
	task := <-got
	if task.Headers["tenant"] != "acme" || task.Exchange != e.queue || task.RoutingKey != e.queue {
		t.Fatalf("task %+v headers %v", task, task.Headers)
	}
	var te *TaskError
	if _, err := get(t, e.send(t, "tasks.params", nil, map[string]any{"x": 1})); !errors.As(err, &te) || te.Type != "TypeError" {
		t.Fatalf("missing y: %v", err)
	}
}

// Proves: when the connection under a running worker is closed, the worker
// stops by itself and Run returns the error instead of hanging.
func TestWorkerStopsWhenConnectionCloses(t *testing.T) {
	e := newTestEnv(t)
	w := NewWorker(e.conn, e.backend, WithQueues(e.queue))
	registerBasics(w)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	if v, err := get(t, e.send(t, "tasks.add", []any{1, 2}, nil)); err != nil || fmt.Sprint(v) != "3" {
		t.Fatalf("%v %v", v, err)
	}
	e.conn.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after the connection closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the connection closed")
	}
}
