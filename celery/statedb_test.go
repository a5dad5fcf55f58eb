package celery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Proves WithStateDB (Celery's --statedb), in a file and in a Redis key: a
// task id revoked on one worker stays revoked on the next worker started
// with the same state db (the task sent after the restart never runs and
// is stored REVOKED), and the logical clock does not go back.
func TestStateDBKeepsRevokedAcrossRestarts(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	for name, db := range map[string]StateDB{
		"file":  FileStateDB(filepath.Join(t.TempDir(), "worker.state")),
		"redis": RedisStateDB(client, "kombu-go-test:statedb"),
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			ctx := context.Background()
			ran := make(chan string, 4)
			register := func(w *Worker) {
				w.Register("tasks.add", func(ctx context.Context, t *Task) (any, error) {
					ran <- t.ID
					return addHandler(ctx, t)
				})
			}
			first := e.worker(t, register, WithStateDB(db))
			id := uuid.NewString()
			first.controlCommand(ctx, "revoke", map[string]any{"task_id": id})
			for range 5 {
				first.state.clock.forward()
			}
			clock := first.state.clock.v.Load()
			if err := first.Shutdown(); err != nil {
				t.Fatal(err)
			}
			second := e.worker(t, register, WithStateDB(db))
			if got := second.state.clock.v.Load(); got < clock {
				t.Errorf("clock after restart %d, before %d", got, clock)
			}
			r := e.send(t, "tasks.add", []any{1, 1}, nil, WithTaskID(id))
			ok := e.send(t, "tasks.add", []any{2, 2}, nil)
			if v, err := get(t, ok); err != nil || fmt.Sprint(v) != "4" {
				t.Fatalf("a task not revoked: %v %v", v, err)
			}
			_, _ = get(t, r)
			if st, _ := r.State(ctx); st != StateRevoked {
				t.Errorf("the task revoked before the restart: %s, want REVOKED", st)
			}
			if len(ran) != 1 {
				t.Errorf("%d tasks ran, want 1 (the revoked one must not)", len(ran))
			}
		})
	}
}

// Proves bad input in a state db is a clear error at Start, not a worker
// that forgot its revoked ids silently: a file that is not JSON state, and
// a state db that cannot be read.
func TestStateDBBadState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.state")
	if err := os.WriteFile(path, []byte("\x80\x04shelve"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t)
	w := NewWorker(e.conn, e.backend, WithQueues(e.queue), WithStateDB(FileStateDB(path)))
	err := w.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "state db") {
		t.Fatalf("Start with a malformed state file: %v", err)
	}
	w = NewWorker(e.conn, e.backend, WithQueues(e.queue), WithStateDB(FileStateDB(t.TempDir())))
	if err := w.Start(context.Background()); err == nil || !errors.Is(err, errIsDir(t)) {
		t.Fatalf("Start with a directory as state file: %v", err)
	}
}

func errIsDir(t *testing.T) error {
	t.Helper()
	_, err := os.ReadFile(t.TempDir())
	var pe *os.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("reading a directory: %v", err)
	}
	return pe.Err
}
