package celery_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/redis" // registers redis://
)

// Send a task that a Python Celery worker runs, and read its result. (The
// code of celery/README.md's first snippet; compiled, not run: it needs a
// Redis server and a Celery worker.)
func ExampleClient() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "redis://localhost:6379/0") // Celery's broker_url
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.OpenBackend("redis://localhost:6379/0") // Celery's result_backend
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	client := celery.NewClient(conn, backend)

	// add.apply_async((2, 3), queue="celery", priority=0, countdown=1)
	res, err := client.SendTask(ctx, "tasks.add", []any{2, 3}, nil,
		celery.WithQueue("celery"), celery.WithPriority(0), celery.WithCountdown(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var sum int
	if err := res.GetInto(wait, &sum); err != nil {
		log.Fatal(err)
	}
	fmt.Println("tasks.add(2, 3) =", sum)

	// A task that raises ValueError('boom') in Python.
	res, err = client.SendTask(ctx, "tasks.fail", []any{"boom"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = res.Get(wait)
	var te *celery.TaskError
	if errors.Is(err, celery.ErrTaskFailed) && errors.As(err, &te) {
		fmt.Println(te.Type, te.Message()) // ValueError boom
	}
}

// Run Go handlers for tasks Python sends with delay()/apply_async(). (The
// code of celery/README.md's second snippet; compiled, not run.)
func ExampleWorker() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "redis://localhost:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.OpenBackend("redis://localhost:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	w := celery.NewWorker(conn, backend, celery.WithQueues("celery"), celery.WithConcurrency(4))
	w.Register("tasks.add", func(ctx context.Context, t *celery.Task) (any, error) {
		var x, y int
		if err := t.Bind(&x, &y); err != nil {
			return nil, err // a TypeError in Python
		}
		return x + y, nil
	})
	w.Register("tasks.fail", func(ctx context.Context, t *celery.Task) (any, error) {
		var msg string
		if err := t.Bind(&msg); err != nil {
			return nil, err
		}
		return nil, celery.NewError("ValueError", msg) // AsyncResult.get() raises ValueError(msg)
	})
	w.Register("tasks.fetch", func(ctx context.Context, t *celery.Task) (any, error) {
		body, err := fetch(ctx)
		if err != nil {
			// self.retry(exc=err, countdown=5): RETRY is stored, the task
			// comes back with retries+1; past max_retries it fails with err.
			return nil, t.Retry(err, 5*time.Second)
		}
		return body, nil
	}, celery.MaxRetries(5))

	// Until SIGINT/SIGTERM (or ctx is cancelled), then a warm shutdown.
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func fetch(context.Context) (string, error) { return "", errors.New("not reachable") }
