package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/internal/testenv"
)

// TestClientOnMemory proves the example client end to end with no setup:
// it sends tasks.add [2, 3] to a Go worker on an in-process broker, prints
// the task id and the result 5; a failing task makes run return the
// exception ("ValueError: boom"), which main prints and exits 1 on.
func TestClientOnMemory(t *testing.T) {
	mr := miniredis.RunT(t)
	url, backendURL, queue := "memory://"+uuid.NewString(), "redis://"+mr.Addr()+"/0", "q-"+uuid.NewString()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.OpenBackend(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	w := celery.NewWorker(conn, backend, celery.WithQueues(queue))
	w.Register("tasks.add", func(_ context.Context, t *celery.Task) (any, error) {
		var x, y int
		return x + y, t.Bind(&x, &y)
	})
	w.Register("tasks.fail", func(_ context.Context, t *celery.Task) (any, error) {
		var m string
		_ = t.Bind(&m)
		return nil, celery.NewError("ValueError", m)
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()

	var out strings.Builder
	cfg := config{url: url, backend: backendURL, queue: queue, wait: true, timeout: 10 * time.Second, task: "tasks.add", args: "[2, 3]"}
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "sent tasks.add[") || lines[1] != "5" {
		t.Fatalf("output:\n%s", out.String())
	}
	cfg.task, cfg.args = "tasks.fail", `["boom"]`
	if err := run(ctx, cfg, &out); err == nil || err.Error() != "ValueError: boom" {
		t.Fatalf("fail: %v", err)
	}
	cfg.args = "{not json"
	if err := run(ctx, cfg, &out); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

// TestClientWithPythonWorker proves the example client against a real
// Celery 5.2.6 worker: tasks.add '[2, 3]' with a priority and a countdown
// prints 5.
func TestClientWithPythonWorker(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	py := testenv.RequirePython(t, "celery", "kombu", "redis")
	prefix := testenv.Prefix()
	queue := "exc-" + uuid.NewString()[:8]
	dir, _ := filepath.Abs(filepath.Join("..", "..", "celery", "testdata"))
	_ = py
	worker := testenv.PythonCommand(context.Background(), "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-Q", queue,
		"--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning", "-n", queue+"@%h")
	worker.Dir = dir
	worker.Env = append(worker.Env, "KOMBU_TEST_BROKER="+redisURL, "KOMBU_TEST_BACKEND="+redisURL,
		"KOMBU_TEST_PREFIX="+prefix, "KOMBU_TEST_QUEUE="+queue, "PYTHONDONTWRITEBYTECODE=1")
	var logs bytes.Buffer
	worker.Stdout, worker.Stderr = &logs, &logs
	worker.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-worker.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = worker.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-worker.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("celery worker output:\n%s", logs.String())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out strings.Builder
	cfg := config{url: redisURL + "?global_keyprefix=" + prefix, queue: queue, priority: 3, countdown: 500 * time.Millisecond,
		wait: true, timeout: 60 * time.Second, task: "tasks.add", args: "[2, 3]"}
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || lines[1] != "5" {
		t.Fatalf("output:\n%s", out.String())
	}
}
