package celery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu/internal/testenv"
)

// celeryCLI runs `celery -A tasks <args...>` (Celery's own command line)
// against the test broker and returns its standard output.
func (ix *interop) celeryCLI(args ...string) []byte {
	ix.t.Helper()
	stdout, stderr, err := ix.celeryCLIStatus(args...)
	if err != nil {
		ix.t.Fatalf("celery %v: %v\nstdout: %s\nstderr: %s", args, err, stdout, stderr)
	}
	return stdout
}

// celeryCLIStatus runs `celery -A tasks <args...>` and returns its output
// and how it exited.
func (ix *interop) celeryCLIStatus(args ...string) (stdout, stderr []byte, err error) {
	ix.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := testenv.PythonCommand(ctx, append([]string{"-m", "celery", "-A", "tasks"}, args...)...)
	cmd.Dir = testdataDir(ix.t)
	cmd.Env = append(cmd.Env, ix.env()...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// inspectGo runs `celery inspect <what> -d <go node> --json` and returns
// the Go node's reply.
func (ix *interop) inspectGo(node, what string, extra ...string) any {
	ix.t.Helper()
	out := ix.celeryCLI(append([]string{"inspect", what, "-d", node, "--json", "-t", "3"}, extra...)...)
	var r map[string]any
	if err := json.Unmarshal(lastLine(out), &r); err != nil {
		ix.t.Fatalf("inspect %s output %q: %v", what, out, err)
	}
	v, ok := r[node]
	if !ok {
		ix.t.Fatalf("inspect %s: no reply from %s in %s", what, node, out)
	}
	return v
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// Proves (Celery's own `celery inspect` against the Go worker, both
// version sets): the Go worker answers on its pidbox with replies shaped as
// a Python worker's: ping, registered, stats (pool max-concurrency and
// processes, total per task, pid, clock, uptime, prefetch_count, broker,
// rusage), active_queues, active (a running task's info), reserved,
// scheduled (an eta task), revoked, query_task, clock, conf, report.
func TestControlInspectInterop(t *testing.T) {
	ix := newInterop(t)
	node := "go-" + uuid.NewString()[:8] + "@testhost"
	release := make(chan struct{})
	var g goHandlers
	started := make(chan string, 1)
	ix.goWorker(func(w *Worker) {
		g.register(ix)(w)
		w.Register("tasks.block", func(ctx context.Context, t *Task) (any, error) {
			started <- t.ID
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "released", nil
		})
	}, WithHostname(node), WithConcurrency(1), WithPrefetchMultiplier(4))
	defer close(release)

	if v := ix.inspectGo(node, "ping"); fmt.Sprint(v) != "map[ok:pong]" {
		t.Errorf("ping: %v", v)
	}
	reg, _ := ix.inspectGo(node, "registered").([]any)
	if len(reg) < 4 || reg[0] != "tasks.add" {
		t.Errorf("registered: %v", reg)
	}
	if v, err := ix.get(ix.send("tasks.add", []any{1, 2}, nil, WithQueue(ix.goQueue))); err != nil || fmt.Sprint(v) != "3" {
		t.Fatalf("add: %v %v", v, err)
	}
	stats, _ := ix.inspectGo(node, "stats").(map[string]any)
	pool, _ := stats["pool"].(map[string]any)
	total, _ := stats["total"].(map[string]any)
	broker, _ := stats["broker"].(map[string]any)
	if pool["max-concurrency"] != 1.0 || len(pool["processes"].([]any)) != 1 || total["tasks.add"] != 1.0 ||
		stats["pid"] == nil || stats["prefetch_count"] != 4.0 || broker["transport"] != "redis" || stats["rusage"] == nil {
		t.Errorf("stats: %v", stats)
	}
	aq, _ := ix.inspectGo(node, "active_queues").([]any)
	if len(aq) != 1 || aq[0].(map[string]any)["name"] != ix.goQueue {
		t.Errorf("active_queues: %v", aq)
	}

	running := ix.send("tasks.block", nil, nil, WithQueue(ix.goQueue))
	<-started
	waiting := ix.send("tasks.add", []any{5, 5}, nil, WithQueue(ix.goQueue))
	later := ix.send("tasks.add", []any{6, 6}, nil, WithQueue(ix.goQueue), WithCountdown(30*time.Second))
	time.Sleep(300 * time.Millisecond) // let the worker take them
	active, _ := ix.inspectGo(node, "active").([]any)
	if len(active) != 1 || active[0].(map[string]any)["id"] != running.ID || active[0].(map[string]any)["name"] != "tasks.block" {
		t.Errorf("active: %v", active)
	}
	reserved, _ := ix.inspectGo(node, "reserved").([]any)
	if len(reserved) != 1 || reserved[0].(map[string]any)["id"] != waiting.ID {
		t.Errorf("reserved: %v", reserved)
	}
	sched, _ := ix.inspectGo(node, "scheduled").([]any)
	if len(sched) != 1 || sched[0].(map[string]any)["request"].(map[string]any)["id"] != later.ID {
		t.Errorf("scheduled: %v", sched)
	}
	q, _ := ix.inspectGo(node, "query_task", running.ID).(map[string]any)
	if st, _ := q[running.ID].([]any); len(st) != 2 || st[0] != "active" {
		t.Errorf("query_task: %v", q)
	}
	if c, _ := ix.inspectGo(node, "clock").(map[string]any); c["clock"] == nil {
		t.Errorf("clock: %v", c)
	}
	ix.celeryCLI("control", "revoke", later.ID, "-d", node, "--json")
	if rv, _ := ix.inspectGo(node, "revoked").([]any); len(rv) != 1 || rv[0] != later.ID {
		t.Errorf("revoked: %v", rv)
	}
	if conf, _ := ix.inspectGo(node, "conf").(map[string]any); conf["worker_concurrency"] != 1.0 {
		t.Errorf("conf: %v", conf)
	}
	if rep, _ := ix.inspectGo(node, "report").(map[string]any); !strings.Contains(fmt.Sprint(rep["ok"]), "kombu-go") {
		t.Errorf("report: %v", rep)
	}
}

// Proves (`celery control revoke` against the Go worker, both version
// sets): a revoked task never runs wherever the Go worker holds it when the
// revoke arrives: queued (revoked before the worker takes it), prefetched
// (waiting for a pool slot), held for its eta; each ends REVOKED, which
// Python's AsyncResult.get() raises as TaskRevokedError; and revoke
// --terminate cancels a running handler's context with ErrTerminated as
// its cause, storing REVOKED ("terminated") (through `celery control
// terminate KILL <id>`, which is revoke with terminate=True and a signal).
func TestControlRevokeInterop(t *testing.T) {
	ix := newInterop(t)
	node := "go-" + uuid.NewString()[:8] + "@testhost"
	var ran atomic.Int32
	started := make(chan string, 4)
	causes := make(chan error, 1)
	ix.goWorker(func(w *Worker) {
		w.Register("tasks.add", func(ctx context.Context, t *Task) (any, error) {
			ran.Add(1)
			return addHandler(ctx, t)
		})
		w.Register("tasks.block", func(ctx context.Context, t *Task) (any, error) {
			started <- t.ID
			select {
			case <-ctx.Done():
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			case <-time.After(30 * time.Second):
				return "not cut", nil
			}
		})
	}, WithHostname(node), WithConcurrency(1))

	// Queued: revoked before the worker could take it.
	queuedID := uuid.NewString()
	ix.celeryCLI("control", "revoke", queuedID, "-d", node, "--json")
	queued := ix.send("tasks.add", []any{1, 1}, nil, WithQueue(ix.goQueue), WithTaskID(queuedID))
	// Held for its eta.
	eta := ix.send("tasks.add", []any{2, 2}, nil, WithQueue(ix.goQueue), WithCountdown(20*time.Second))
	// Prefetched behind a running task, then that task terminated.
	running := ix.send("tasks.block", nil, nil, WithQueue(ix.goQueue))
	<-started
	prefetched := ix.send("tasks.add", []any{3, 3}, nil, WithQueue(ix.goQueue))
	time.Sleep(300 * time.Millisecond)
	ix.celeryCLI("control", "revoke", eta.ID, prefetched.ID, "-d", node, "--json")
	out := ix.celeryCLI("control", "terminate", "KILL", running.ID, "-d", node, "--json")
	if !strings.Contains(string(out), "terminate: "+running.ID) {
		t.Errorf("revoke --terminate replied %s", out)
	}
	select {
	case c := <-causes:
		if c != ErrTerminated {
			t.Errorf("terminated handler saw cause %v, want ErrTerminated", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("revoke --terminate did not cancel the running handler")
	}
	var outs []pyOutcome
	ix.python(&outs, "get", []string{queued.ID, eta.ID, prefetched.ID, running.ID})
	for i, o := range outs {
		if o.State != "REVOKED" || o.Raised != "TaskRevokedError" {
			t.Errorf("task %d (%s): %+v, want REVOKED raising TaskRevokedError", i, o.ID, o)
		}
	}
	meta, _ := ix.backend.Get(context.Background(), running.ID)
	if te, _ := meta.Err().(*TaskError); te == nil || te.Message() != "terminated" {
		t.Errorf("terminated task's result: %v", meta.Err())
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("%d revoked tasks ran", n)
	}
}

// Proves (the Go Control API against a real Python Celery worker, both
// version sets): Ping, Registered and Stats get the Python worker's
// replies; Revoke makes it discard a task held for its eta; an unknown
// command gets the same error reply from a Python and a Go worker; hello
// (mingle) hands the Go worker's revoked ids to whoever asks.
func TestControlClientInterop(t *testing.T) {
	ix := newInterop(t)
	ix.startPythonWorker()
	goNode := "go-" + uuid.NewString()[:8] + "@testhost"
	var g goHandlers
	ix.goWorker(g.register(ix), WithHostname(goNode))
	ctx := context.Background()
	ctl := NewControl(ix.conn)
	// The Python worker is up once it runs a task.
	if v, err := ix.get(ix.send("tasks.add", []any{1, 1}, nil)); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("python worker: %v %v", v, err)
	}
	pings, err := ctl.Ping(ctx, WithReplyTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	pyNode := ""
	seenGo := false
	for _, r := range pings {
		if strings.HasPrefix(r.Hostname, "py-") && fmt.Sprint(r.Value) == "map[ok:pong]" {
			pyNode = r.Hostname
		}
		if r.Hostname == goNode && fmt.Sprint(r.Value) == "map[ok:pong]" {
			seenGo = true
		}
	}
	if pyNode == "" || !seenGo {
		t.Fatalf("ping replies %+v: want the Python and the Go worker", pings)
	}
	reg, err := ctl.Registered(ctx, WithDestination(pyNode))
	if err != nil || len(reg) != 1 || !strings.Contains(fmt.Sprint(reg[0].Value), "tasks.add") {
		t.Errorf("registered from Python: %+v %v", reg, err)
	}
	st, err := ctl.Stats(ctx, WithDestination(pyNode))
	if err != nil || len(st) != 1 {
		t.Fatalf("stats from Python: %+v %v", st, err)
	}
	if pool, _ := st[0].Value.(map[string]any)["pool"].(map[string]any); pool["max-concurrency"] == nil {
		t.Errorf("Python stats: %v", st[0].Value)
	}

	eta := ix.send("tasks.add", []any{7, 7}, nil, WithCountdown(2*time.Second))
	if r, err := ctl.Revoke(ctx, []string{eta.ID}, false, "", WithDestination(pyNode)); err != nil || len(r) != 1 || r[0].Err() != nil {
		t.Fatalf("revoke on Python: %+v %v", r, err)
	}
	_, err = ix.get(eta)
	var te *TaskError
	if !errors.As(err, &te) || te.Type != "TaskRevokedError" {
		t.Errorf("task revoked on Python by Go: %v", err)
	}

	unknown := func(node string) any {
		r, err := ctl.Broadcast(ctx, "no_such_command", nil, WithDestination(node), WithReplyTimeout(2*time.Second))
		if err != nil || len(r) != 1 {
			t.Fatalf("unknown command on %s: %+v %v", node, r, err)
		}
		return r[0].Value
	}
	if py, gov := unknown(pyNode), unknown(goNode); fmt.Sprint(py) != fmt.Sprint(gov) {
		t.Errorf("unknown command: Python replied %v, Go %v", py, gov)
	}

	// Mingle: the Go worker hands its revoked ids to a new node.
	if _, err := ctl.Revoke(ctx, []string{"mingle-id"}, false, "", WithDestination(goNode)); err != nil {
		t.Fatal(err)
	}
	hello, err := ctl.Broadcast(ctx, "hello", map[string]any{"from_node": "new@node", "revoked": map[string]any{"from-new": 1.0e9}},
		WithDestination(goNode))
	if err != nil || len(hello) != 1 {
		t.Fatalf("hello: %+v %v", hello, err)
	}
	rv, _ := hello[0].Value.(map[string]any)["revoked"].(map[string]any)
	if _, ok := rv["mingle-id"]; !ok {
		t.Errorf("hello reply %v lacks the Go worker's revoked id", hello[0].Value)
	}
}

// Proves mingle both ways (both version sets): a Python Celery worker
// started with mingle learns the ids the Go worker had revoked (it then
// discards such a task), and a Go worker started WithMingle learns the ids
// a Python worker had revoked.
func TestMingleInterop(t *testing.T) {
	ix := newInterop(t)
	goNode := "go-" + uuid.NewString()[:8] + "@testhost"
	var g goHandlers
	ix.goWorker(g.register(ix), WithHostname(goNode))
	ctx := context.Background()
	ctl := NewControl(ix.conn)
	goRevoked := uuid.NewString()
	if r, err := ctl.Revoke(ctx, []string{goRevoked}, false, "", WithDestination(goNode)); err != nil || len(r) != 1 {
		t.Fatalf("revoke on Go: %+v %v", r, err)
	}
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: ix.py, Dir: testdataDir(t), Queue: ix.pyQueue, Node: "pymingle",
		Env: ix.env(), Mingle: true, LogAfter: 15 * time.Second})
	if v, err := ix.get(ix.send("tasks.add", []any{1, 1}, nil)); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("python worker: %v %v", v, err)
	}
	revoked, err := ctl.Broadcast(ctx, "revoked", nil, WithPattern("pymingle-*", "glob"), WithReplyTimeout(2*time.Second))
	if err != nil || len(revoked) != 1 || !strings.Contains(fmt.Sprint(revoked[0].Value), goRevoked) {
		t.Fatalf("the Python worker did not learn the Go worker's revoked id %s: %+v %v", goRevoked, revoked, err)
	}
	pyRevoked := uuid.NewString()
	if _, err := ctl.Revoke(ctx, []string{pyRevoked}, false, "", WithPattern("pymingle-*", "glob"), WithLimit(1)); err != nil {
		t.Fatal(err)
	}
	late := NewWorker(ix.conn, ix.backend, WithQueues("late-"+ix.goQueue), WithHostname("late-"+goNode), WithMingle())
	if err := late.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer late.Shutdown()
	if !late.state.revoked.has(pyRevoked) || !late.state.revoked.has(goRevoked) {
		t.Errorf("a Go worker started WithMingle did not learn the revoked ids: %v", late.state.revoked.list())
	}
}
