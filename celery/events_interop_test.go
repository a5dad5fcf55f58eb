package celery

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu/internal/testenv"
)

// Proves (Celery's own event Receiver and State against the Go worker,
// both version sets): the Go worker's events are read by
// celery.events.state.State as a Python worker's: the worker is known with
// its heartbeats, processed count and sw_ident (kombu-go), and goes offline
// at shutdown; every task's final state is right (SUCCESS with its result
// repr, FAILURE with the exception repr, a retried task, REVOKED), from
// task-received, -started, -succeeded, -failed, -retried and -revoked.
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
	w := ix.goWorker(g.register(ix), WithHostname(node), WithEvents())
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
	want := map[string]string{add.ID: "SUCCESS", fail.ID: "FAILURE", retry.ID: "SUCCESS", expired.ID: "REVOKED"}
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
	for _, typ := range []string{"worker-online", "worker-heartbeat", "worker-offline", "task-received", "task-started",
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
