package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/internal/testenv"
)

// startWorker runs the example's run() in the background until the test
// ends, and checks that it then returns nil (a clean warm shutdown).
func startWorker(t *testing.T, cfg config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
}

// TestTasksOnMemory proves the example worker's three tasks: tasks.add
// returns x+y, tasks.echo returns {"args", "kwargs"}, tasks.fail fails with
// ValueError(message); on an in-process broker and a miniredis result
// backend, with no setup.
func TestTasksOnMemory(t *testing.T) {
	mr := miniredis.RunT(t)
	cfg := config{url: "memory://" + uuid.NewString(), backend: "redis://" + mr.Addr() + "/0", queue: "q-" + uuid.NewString()[:8], concurrency: 2, prefetch: 4}
	startWorker(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, cfg.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.OpenBackend(cfg.backend)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	client := celery.NewClient(conn, backend, celery.WithDefaultQueue(cfg.queue))

	send := func(name string, args []any, kwargs map[string]any) *celery.AsyncResult {
		r, err := client.SendTask(ctx, name, args, kwargs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	add, addf := send("tasks.add", []any{2, 3}, nil), send("tasks.add", []any{1.5, 2}, nil)
	echo := send("tasks.echo", []any{1, "a"}, map[string]any{"k": true})
	fail := send("tasks.fail", []any{"boom"}, nil)
	if v, err := add.Get(ctx); err != nil || fmt.Sprint(v) != "5" {
		t.Fatalf("add: %v %v", v, err)
	}
	if v, err := addf.Get(ctx); err != nil || fmt.Sprint(v) != "3.5" {
		t.Fatalf("add floats: %v %v", v, err)
	}
	if v, err := echo.Get(ctx); err != nil || fmt.Sprint(v) != "map[args:[1 a] kwargs:map[k:true]]" {
		t.Fatalf("echo: %v %v", v, err)
	}
	var te *celery.TaskError
	if _, err := fail.Get(ctx); !errors.As(err, &te) || te.Type != "ValueError" || te.Message() != "boom" {
		t.Fatalf("fail: %v", err)
	}
}

// TestPythonClient proves the example worker against real Python Celery:
// app.send_task(...) for each task, and AsyncResult.get() returns 5, the
// echoed dict, and raises ValueError('boom').
func TestPythonClient(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	py := testenv.RequirePython(t, "celery", "kombu", "redis")
	prefix := testenv.Prefix()
	queue := "exw-" + uuid.NewString()[:8]
	startWorker(t, config{url: redisURL + "?global_keyprefix=" + prefix, queue: queue, concurrency: 2, prefetch: 4})

	calls := `[{"name": "tasks.add", "args": [2, 3], "options": {"queue": "` + queue + `"}},
		{"name": "tasks.echo", "args": [1, "a"], "kwargs": {"k": [true]}, "options": {"queue": "` + queue + `", "priority": 3}},
		{"name": "tasks.fail", "args": ["boom"], "options": {"queue": "` + queue + `"}}]`
	dir, _ := filepath.Abs(filepath.Join("..", "..", "celery", "testdata"))
	_ = py
	cmd := testenv.PythonCommand(context.Background(), "client.py", "run", calls)
	cmd.Dir = dir
	cmd.Env = append(cmd.Env, "KOMBU_TEST_BROKER="+redisURL, "KOMBU_TEST_BACKEND="+redisURL,
		"KOMBU_TEST_PREFIX="+prefix, "KOMBU_TEST_QUEUE="+queue, "PYTHONDONTWRITEBYTECODE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.py: %v\n%s", err, stderr.String())
	}
	var got []struct {
		State, Raised, Message string
		Result                 json.RawMessage
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(got) != 3 || string(got[0].Result) != "5" || string(got[1].Result) != `{"args": [1, "a"], "kwargs": {"k": [true]}}` ||
		got[2].State != "FAILURE" || got[2].Raised != "ValueError" || got[2].Message != "boom" {
		t.Fatalf("outcomes: %s", out)
	}
}
