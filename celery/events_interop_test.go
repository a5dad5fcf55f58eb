package celery

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
)

// Proves (Celery's own event Receiver and State against the Go worker,
// both version sets): the Go worker's events are read by
// celery.events.state.State as a Python worker's: the worker is known with
// its heartbeats, processed count and sw_ident (kombu-go), and goes offline
// at shutdown; every task's final state is right (SUCCESS with its result
// repr, FAILURE with the exception repr, a retried task, REVOKED, a
// rejected one),
// from task-received, -started, -succeeded, -failed, -retried, -revoked
// and -rejected; and a Go client WithSentEvents sends task-sent events
// State reads.
func TestEventsInterop(t *testing.T) {
	ix := newInterop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	spec, _ := json.Marshal(map[string]any{"seconds": 9})
	cmd := testenv.PythonCommand(ctx, "client.py", "events", string(spec))
	cmd.Dir = testdataDir(t)
	cmd.Env = append(cmd.Env, ix.env()...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	if !sc.Scan() || !strings.Contains(sc.Text(), "ready") {
		t.Fatalf("event receiver did not start: %q %s", sc.Text(), stderr.String())
	}
	node := "go-" + uuid.NewString()[:8] + "@testhost"
	var g goHandlers
	w := ix.goWorker(func(w *Worker) {
		g.register(ix)(w)
		w.Register("tasks.reject", func(context.Context, *Task) (any, error) { return nil, ErrReject })
	}, WithHostname(node), WithEvents())
	sender := NewClient(ix.conn, ix.backend, WithSentEvents(), WithOrigin("gen42@gohost"))
	// To a queue no worker consumes: task-sent is the only event of it.
	sent, err := sender.SendTask(ctx, "tasks.add", []any{4, 4}, nil, WithQueue("unconsumed-"+ix.goQueue))
	if err != nil {
		t.Fatal(err)
	}
	rejected := ix.send("tasks.reject", nil, nil, WithQueue(ix.goQueue))
	add := ix.send("tasks.add", []any{2, 3}, nil, WithQueue(ix.goQueue))
	fail := ix.send("tasks.fail", []any{"boom"}, nil, WithQueue(ix.goQueue))
	retry := ix.send("tasks.retry_until", []any{1}, nil, WithQueue(ix.goQueue))
	expired := ix.send("tasks.add", []any{1, 1}, nil, WithQueue(ix.goQueue), WithExpiresIn(-time.Second))
	for _, r := range []*AsyncResult{add, fail, retry, expired} {
		_, _ = ix.get(r)
	}
	time.Sleep(2500 * time.Millisecond) // a heartbeat
	if err := w.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Workers map[string]struct {
			Alive      bool
			Processed  int
			SwIdent    string `json:"sw_ident"`
			Heartbeats int
		}
		Tasks map[string]struct {
			State, Name, Result, Exception string
			Worker                         string
			Rejected                       *float64
		}
		Seen []string
	}
	if !sc.Scan() {
		t.Fatalf("no report from the receiver: %s", stderr.String())
	}
	if err := json.Unmarshal(sc.Bytes(), &out); err != nil {
		t.Fatalf("%s: %v", sc.Text(), err)
	}
	_ = cmd.Wait()
	wk, ok := out.Workers[node]
	if !ok || wk.SwIdent != "kombu-go" || wk.Processed < 4 || wk.Alive {
		t.Errorf("State's view of the Go worker: %+v (known: %v), want sw_ident kombu-go, processed >= 4, heartbeats, offline after shutdown", wk, ok)
	}
	want := map[string]string{sent.ID: "PENDING", rejected.ID: "STARTED", add.ID: "SUCCESS", fail.ID: "FAILURE", retry.ID: "SUCCESS", expired.ID: "REVOKED"}
	for id, st := range want {
		got := out.Tasks[id]
		if got.State != st {
			t.Errorf("task %s: State has %+v, want %s", id, got, st)
		}
	}
	if r := out.Tasks[add.ID].Result; r != "5" {
		t.Errorf("succeeded result repr %q", r)
	}
	if e := out.Tasks[fail.ID].Exception; e != "ValueError('boom')" {
		t.Errorf("failed exception repr %q", e)
	}
	// Celery's State keeps STARTED for a task rejected after it started
	// (REJECTED ranks below STARTED), as for a Python worker, and records
	// when it was rejected.
	if r := out.Tasks[rejected.ID]; r.Rejected == nil {
		t.Errorf("the rejected task: %+v, want a rejected timestamp", r)
	}
	if s := out.Tasks[sent.ID]; s.Name != "tasks.add" {
		t.Errorf("the task known only by its task-sent event: %+v, want its name", s)
	}
	for _, typ := range []string{"worker-online", "worker-heartbeat", "worker-offline", "task-sent", "task-rejected", "task-received", "task-started",
		"task-succeeded", "task-failed", "task-retried", "task-revoked"} {
		found := false
		for _, s := range out.Seen {
			found = found || s == typ
		}
		if !found {
			t.Errorf("no %s event seen (seen %v)", typ, out.Seen)
		}
	}
}

// Proves (the Go EventReceiver and EventState against a real Python Celery
// worker run with -E, both version sets): the Python worker shows as alive
// with its sw_ident, and a task it ran as SUCCESS with its result repr and
// a failing one as FAILURE with its exception repr (Celery 5.2.6 sends
// "ExceptionWithTraceback()" there, 5.5.2 the real repr), also when they
// come buffered as "task.multi" lists; a malformed message on the
// event exchange is reported and dropped without stopping the stream.
func TestEventReceiverInterop(t *testing.T) {
	ix := newInterop(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := NewEventState()
	ready := make(chan struct{})
	bad := make(chan error, 4)
	done := make(chan error, 1)
	go func() {
		done <- NewEventReceiver(ix.conn).Run(ctx, state.Apply, func() { close(ready) }, func(err error) { bad <- err })
	}()
	<-ready
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: ix.py, Dir: testdataDir(t), Queue: ix.pyQueue, Node: "pyev",
		Env: ix.env(), Events: true, LogAfter: 15 * time.Second})
	ok := ix.send("tasks.add", []any{20, 22}, nil)
	bad1 := ix.send("tasks.fail", []any{"nope"}, nil)
	_, _ = ix.get(ok)
	_, _ = ix.get(bad1)
	// A malformed event: a JSON list, not an event dict.
	if _, err := ix.conn.Producer().Publish(ctx, []any{1, 2}, kombu.WithExchange(kombu.Exchange{Name: EventExchange, Type: kombu.Fanout, Durable: true}),
		kombu.WithRoutingKey("task.bogus")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		a, _ := state.Task(ok.ID)
		f, _ := state.Task(bad1.ID)
		var py *WorkerInfo
		for _, w := range state.Workers() {
			if strings.HasPrefix(w.Hostname, "pyev-") {
				w := w
				py = &w
			}
		}
		if a.State == "SUCCESS" && f.State == "FAILURE" && py != nil && py.Alive(time.Now()) {
			if a.Result != "42" || a.Name != "tasks.add" || f.Exception == "" || py.SwIdent != "py-celery" {
				t.Errorf("state: task %+v, failed %+v, worker %+v", a, f, *py)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state after 15 s: task %+v, failed %+v, workers %+v", a, f, state.Workers())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-bad:
		if !strings.Contains(err.Error(), "malformed event") {
			t.Errorf("bad event reported as %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the malformed event was not reported")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("receiver: %v", err)
	}
}
