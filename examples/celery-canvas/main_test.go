package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/internal/testenv"
)

func check(t *testing.T, cfg config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), " ok\n"); n != 3 {
		t.Fatalf("want 3 right results:\n%s", out.String())
	}
}

// Proves: the example's chain, group and chord give the right results when
// a Go worker (the celery package's Worker with the example worker's
// tasks) serves tasks.add and tasks.echo.
func TestCanvasOnGoWorker(t *testing.T) {
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix()
	queue := "canvas-" + uuid.NewString()[:8]
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, url+"?global_keyprefix="+prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.OpenBackend(url)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	w := celery.NewWorker(conn, backend, celery.WithQueues(queue), celery.WithConcurrency(2))
	w.Register("tasks.add", func(_ context.Context, t *celery.Task) (any, error) {
		var x, y int
		if err := t.Bind(&x, &y); err != nil {
			return nil, err
		}
		return x + y, nil
	})
	w.Register("tasks.echo", func(_ context.Context, t *celery.Task) (any, error) {
		return map[string]any{"args": t.Args, "kwargs": t.Kwargs}, nil
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	check(t, config{url: url + "?global_keyprefix=" + prefix, backend: url, queue: queue, timeout: 30 * time.Second})
}

// Proves: the same canvas gives the same results on a real Python Celery
// worker (both version sets) with tasks of the same names.
func TestCanvasOnPythonWorker(t *testing.T) {
	url := testenv.RedisURL(t)
	py := testenv.RequirePython(t, "celery", "kombu", "redis")
	prefix := testenv.Prefix()
	queue := "canvas-" + uuid.NewString()[:8]
	dir, _ := filepath.Abs(filepath.Join("..", "..", "celery", "testdata"))
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: py, Dir: dir, Queue: queue, Node: "canvas",
		Env: []string{"KOMBU_TEST_BROKER=" + url, "KOMBU_TEST_BACKEND=" + url, "KOMBU_TEST_PREFIX=" + prefix, "KOMBU_TEST_QUEUE=" + queue}})
	check(t, config{url: url + "?global_keyprefix=" + prefix, backend: url, queue: queue, timeout: 30 * time.Second})
}
