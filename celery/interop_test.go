package celery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	_ "github.com/kombu-go/kombu/redis"
	"github.com/redis/go-redis/v9"
)

// interop is one interop test's world: the shared test redis-server, a
// fresh global_keyprefix for the broker keys (Celery 5.2's result backend
// has no prefix option, so results are kept apart by their uuid4 task
// ids), a Go client and result backend, and Debian's Python with Celery.
type interop struct {
	t        *testing.T
	redisURL string
	prefix   string
	py       string
	conn     *kombu.Connection
	backend  *Backend
	client   *Client
	pyQueue  string
	goQueue  string
}

func newInterop(t *testing.T) *interop {
	t.Helper()
	redisURL := testenv.RedisURL(t)
	py := testenv.RequirePython(t, "celery", "kombu", "redis")
	ix := &interop{t: t, redisURL: redisURL, prefix: testenv.Prefix(), py: py,
		pyQueue: "py-" + uuid.NewString()[:8], goQueue: "go-" + uuid.NewString()[:8]}
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, redisURL+"?global_keyprefix="+ix.prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	t.Cleanup(func() { rc.Close() })
	ix.conn = conn
	ix.backend = NewBackend(rc)
	ix.client = NewClient(conn, ix.backend, WithDefaultQueue(ix.pyQueue))
	return ix
}

func (ix *interop) env() []string {
	return []string{
		"KOMBU_TEST_BROKER=" + ix.redisURL, "KOMBU_TEST_BACKEND=" + ix.redisURL,
		"KOMBU_TEST_PREFIX=" + ix.prefix, "KOMBU_TEST_QUEUE=" + ix.pyQueue, "KOMBU_TEST_GO_QUEUE=" + ix.goQueue,
		"PYTHONDONTWRITEBYTECODE=1",
	}
}

func testdataDir(t *testing.T) string {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startPythonWorker starts a real Celery 5.2 worker (solo pool) on the
// Python queue and stops it (its whole process group) when the test ends.
// It returns without waiting: a task round trip shows it is up.
func (ix *interop) startPythonWorker() {
	t := ix.t
	t.Helper()
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: ix.py, Dir: testdataDir(t), Queue: ix.pyQueue, Node: "py",
		Env: ix.env(), LogAfter: 15 * time.Second})
}

// python runs testdata/client.py (Celery's own client) and decodes its
// JSON output into v.
func (ix *interop) python(v any, cmd string, arg any) {
	t := ix.t
	t.Helper()
	a, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testenv.PythonCommand(ctx, "client.py", cmd, string(a))
	c.Dir = testdataDir(t)
	c.Env = append(c.Env, ix.env()...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("client.py %s: %v\nstdout: %s\nstderr: %s", cmd, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("client.py %s output %q: %v", cmd, stdout.String(), err)
	}
}

// goWorker starts a Go worker on the Go queue over the real Redis broker.
func (ix *interop) goWorker(register func(*Worker), opts ...WorkerOption) *Worker {
	t := ix.t
	t.Helper()
	w := NewWorker(ix.conn, ix.backend, append([]WorkerOption{WithQueues(ix.goQueue), WithConcurrency(2),
		WithShutdownTimeout(5 * time.Second)}, opts...)...)
	register(w)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func (ix *interop) get(r *AsyncResult) (any, error) {
	ix.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	v, err := r.Get(ctx)
	if d := time.Since(start); d > 5*time.Second {
		ix.t.Logf("%s: waited %v for task %s (from %s)", time.Now().Format("15:04:05.000"), d, r.ID, start.Format("15:04:05.000"))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		state, _ := r.State(context.Background())
		var lens []string
		for _, q := range []string{ix.pyQueue, ix.goQueue} {
			n, _ := ix.conn.Len(context.Background(), q)
			lens = append(lens, fmt.Sprintf("%s=%d", q, n))
		}
		ix.t.Fatalf("no result for task %s within 60s: state %s, queues %v", r.ID, state, lens)
	}
	return v, err
}

func (ix *interop) send(name string, args []any, kwargs map[string]any, opts ...SendOption) *AsyncResult {
	ix.t.Helper()
	r, err := ix.client.SendTask(context.Background(), name, args, kwargs, opts...)
	if err != nil {
		ix.t.Fatal(err)
	}
	return r
}

// pyOutcome is what client.py reports for one task.
type pyOutcome struct {
	ID           string          `json:"id"`
	Result       json.RawMessage `json:"result"`
	Raised       string          `json:"raised"`
	RaisedModule string          `json:"raised_module"`
	Message      string          `json:"message"`
	State        string          `json:"state"`
	DateDone     string          `json:"date_done"`
	ParentID     string          `json:"parent_id"`
}

type pyCall struct {
	Name    string         `json:"name"`
	Args    []any          `json:"args"`
	Kwargs  map[string]any `json:"kwargs"`
	Options map[string]any `json:"options"`
}

// goHandlers are the Go side of testdata/tasks.py: the same names and
// behaviour. ran records when each task id ran and with which eta.
type goHandlers struct {
	mu    sync.Mutex
	order []string
	etas  map[string][2]time.Time // id -> {eta, ran at}
	tries map[string][]int
}

func (g *goHandlers) register(ix *interop) func(*Worker) {
	g.etas = map[string][2]time.Time{}
	g.tries = map[string][]int{}
	return func(w *Worker) {
		w.Register("tasks.add", func(ctx context.Context, t *Task) (any, error) {
			g.mu.Lock()
			g.order = append(g.order, t.ID)
			g.etas[t.ID] = [2]time.Time{t.ETA, time.Now()}
			g.mu.Unlock()
			return addHandler(ctx, t)
		})
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
		w.Register("tasks.retry_until", func(_ context.Context, t *Task) (any, error) {
			var n int
			if err := t.Bind(&n); err != nil {
				return nil, err
			}
			g.mu.Lock()
			g.tries[t.ID] = append(g.tries[t.ID], t.Retries)
			g.mu.Unlock()
			if t.Retries < n {
				return nil, t.Retry(NewError("KeyError", "again"), 200*time.Millisecond)
			}
			return t.Retries, nil
		}, MaxRetries(10))
		w.Register("tasks.hop", func(_ context.Context, t *Task) (any, error) {
			var trail []string
			if err := t.Bind(&trail); err != nil {
				return nil, err
			}
			trail = append(trail, "go")
			if !slices.Contains(trail, "py") {
				return nil, &RetryError{Args: []any{trail}, Countdown: 100 * time.Millisecond, Queue: ix.pyQueue}
			}
			return map[string]any{"trail": trail, "retries": t.Retries}, nil
		})
	}
}

// Proves (Go client → Python Celery 5.2.6 worker): the worker runs tasks
// Go sent, with args and kwargs, and Go reads the results from Celery's
// result backend: a value, a dict, a FAILURE with ValueError and its
// message, a task Python retried twice, a task that expired before it ran
// (REVOKED), an unknown name (NotRegistered); priority 0 runs before
// priority 9; a countdown is held until due.
func TestInteropGoClientPythonWorker(t *testing.T) {
	ix := newInterop(t)
	// Queued before the worker starts, so priority alone decides the order.
	low := ix.send("tasks.add", []any{100, 0}, nil, WithPriority(9))
	high := ix.send("tasks.add", []any{0, 100}, nil, WithPriority(0))
	ix.startPythonWorker()

	add := ix.send("tasks.add", []any{2, 3}, nil)
	echo := ix.send("tasks.echo", []any{1, "two"}, map[string]any{"k": []any{1, 2}, "é": nil})
	fail := ix.send("tasks.fail", []any{"boom from go"}, nil)
	sentAt := time.Now()
	countdown := ix.send("tasks.add", []any{1, 1}, nil, WithCountdown(time.Second))
	retry := ix.send("tasks.retry_until", []any{2}, nil)
	expired := ix.send("tasks.add", []any{1, 2}, nil, WithExpiresIn(-time.Second))
	unknown := ix.send("tasks.nope", []any{1}, nil)

	if v, err := ix.get(add); err != nil || fmt.Sprint(v) != "5" {
		t.Fatalf("add: %v %v", v, err)
	}
	var echoed struct {
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	}
	if err := echo.GetInto(context.Background(), &echoed); err != nil ||
		fmt.Sprint(echoed.Args) != "[1 two]" || fmt.Sprint(echoed.Kwargs["k"]) != "[1 2]" || len(echoed.Kwargs) != 2 {
		t.Fatalf("echo: %+v %v", echoed, err)
	}
	var te *TaskError
	if _, err := ix.get(fail); !errors.Is(err, ErrTaskFailed) || !errors.As(err, &te) ||
		te.Type != "ValueError" || te.Module != "builtins" || te.Message() != "boom from go" || te.Traceback == "" {
		t.Fatalf("fail: %v", err)
	}
	if v, err := ix.get(retry); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("retry: %v %v", v, err)
	}
	if meta, _ := retry.Info(context.Background()); meta.ParentID != retry.ID {
		t.Fatalf("retried task's parent_id %q", meta.ParentID)
	}
	if _, err := ix.get(expired); !errors.Is(err, ErrTaskRevoked) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := ix.get(unknown); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := ix.get(countdown); err != nil {
		t.Fatal(err)
	}
	cm, _ := countdown.Info(context.Background())
	if d := cm.DateDone.Sub(sentAt); d < 900*time.Millisecond {
		t.Fatalf("countdown task done %v after sending", d)
	}
	for _, r := range []*AsyncResult{low, high} {
		if _, err := ix.get(r); err != nil {
			t.Fatal(err)
		}
	}
	lm, _ := low.Info(context.Background())
	hm, _ := high.Info(context.Background())
	if !hm.DateDone.Before(lm.DateDone) {
		t.Fatalf("priority 0 done at %v, priority 9 at %v", hm.DateDone, lm.DateDone)
	}
}

// Proves (Python Celery client → Go worker): apply_async with args,
// kwargs, priority and countdown runs on the Go worker, and Python's
// AsyncResult.get() returns the results, raises ValueError for the failing
// task, returns the final result of a task Go retried twice, and raises
// TaskRevokedError for a task that expired; priority 0 runs first.
func TestInteropPythonClientGoWorker(t *testing.T) {
	ix := newInterop(t)
	var g goHandlers
	// Priority: both queued before the Go worker starts.
	var prioIDs []string
	ix.python(&prioIDs, "send", []pyCall{
		{Name: "tasks.add", Args: []any{9, 9}, Options: map[string]any{"queue": ix.goQueue, "priority": 9}},
		{Name: "tasks.add", Args: []any{0, 0}, Options: map[string]any{"queue": ix.goQueue, "priority": 0}},
	})
	ix.goWorker(g.register(ix), WithConcurrency(1), WithPrefetchMultiplier(1))

	q := map[string]any{"queue": ix.goQueue}
	var out []pyOutcome
	ix.python(&out, "run", []pyCall{
		{Name: "tasks.add", Args: []any{2, 3}, Options: q},
		{Name: "tasks.echo", Args: []any{1, "two"}, Kwargs: map[string]any{"k": []any{1, 2}}, Options: q},
		{Name: "tasks.fail", Args: []any{"boom from python"}, Options: q},
		{Name: "tasks.add", Args: []any{20, 22}, Options: map[string]any{"queue": ix.goQueue, "countdown": 1, "priority": 5}},
		{Name: "tasks.retry_until", Args: []any{2}, Options: q},
		{Name: "tasks.add", Args: []any{1, 2}, Options: map[string]any{"queue": ix.goQueue, "expires": -1}},
	})
	if len(out) != 6 {
		t.Fatalf("outcomes %+v", out)
	}
	expect := func(i int, state, result string) {
		t.Helper()
		if out[i].State != state || string(out[i].Result) != result {
			t.Errorf("call %d: state %s result %s raised %s(%s), want %s %s", i, out[i].State, out[i].Result, out[i].Raised, out[i].Message, state, result)
		}
	}
	expect(0, "SUCCESS", "5")
	expect(1, "SUCCESS", `{"args": [1, "two"], "kwargs": {"k": [1, 2]}}`)
	if o := out[2]; o.State != "FAILURE" || o.Raised != "ValueError" || o.RaisedModule != "builtins" || o.Message != "boom from python" {
		t.Errorf("fail: %+v", o)
	}
	expect(3, "SUCCESS", "42")
	expect(4, "SUCCESS", "2")
	if o := out[5]; o.State != "REVOKED" || o.Raised != "TaskRevokedError" || o.Message != "expired" {
		t.Errorf("expired: %+v", o)
	}
	g.mu.Lock()
	eta := g.etas[out[3].ID]
	tries := g.tries[out[4].ID]
	g.mu.Unlock()
	if eta[0].IsZero() || eta[1].Before(eta[0]) {
		t.Errorf("countdown task: eta %v, ran %v", eta[0], eta[1])
	}
	if fmt.Sprint(tries) != "[0 1 2]" {
		t.Errorf("retry_until ran with retries %v", tries)
	}
	if out[4].ParentID != out[4].ID {
		t.Errorf("retried task's parent_id %q", out[4].ParentID)
	}

	var prio []pyOutcome
	ix.python(&prio, "get", prioIDs)
	if string(prio[0].Result) != "18" || string(prio[1].Result) != "0" {
		t.Fatalf("priority tasks: %+v", prio)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.order) < 2 || g.order[0] != prioIDs[1] || g.order[1] != prioIDs[0] {
		t.Fatalf("execution order %v, want priority 0 (%s) before priority 9 (%s)", g.order, prioIDs[1], prioIDs[0])
	}
}

// Proves: retries cross the language line in both directions. A task Go
// sends to the Python worker retries itself into the Go worker's queue and
// finishes there (Go reads the result); a task Python sends to the Go worker
// retries itself into the Python worker's queue and finishes there (Python's
// AsyncResult.get() reads it). Each side reads the other's retry message:
// same id, retries 1, parent_id set.
func TestInteropRetryAcrossLanguages(t *testing.T) {
	ix := newInterop(t)
	var g goHandlers
	ix.goWorker(g.register(ix))
	ix.startPythonWorker()

	fromGo := ix.send("tasks.hop", []any{[]any{}}, nil, WithQueue(ix.pyQueue))
	var res struct {
		Trail   []string `json:"trail"`
		Retries int      `json:"retries"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fromGo.GetInto(ctx, &res); err != nil || fmt.Sprint(res.Trail) != "[py go]" || res.Retries != 1 {
		t.Fatalf("Go → Python → Go: %+v %v", res, err)
	}

	var out []pyOutcome
	ix.python(&out, "run", []pyCall{{Name: "tasks.hop", Args: []any{[]any{}}, Options: map[string]any{"queue": ix.goQueue}}})
	if len(out) != 1 || out[0].State != "SUCCESS" || string(out[0].Result) != `{"trail": ["go", "py"], "retries": 1}` {
		t.Fatalf("Python → Go → Python: %+v", out)
	}
}
