package celery_test

import (
	"context"
	"fmt"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
)

// Middleware around sending and running tasks: the client adds a header
// to every task message, the worker's task middleware reads it and sees
// the handler's result.
func ExampleWithTaskMiddleware() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://hooks-example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	done := make(chan struct{})
	w := celery.NewWorker(conn, nil, celery.WithTaskMiddleware(func(next celery.TaskFunc) celery.TaskFunc {
		return func(ctx context.Context, t *celery.Task) (any, error) {
			fmt.Println("running", t.Task, "for", t.Headers["x-request-id"])
			result, err := next(ctx, t)
			fmt.Println("result", result, "error", err)
			close(done)
			return result, err
		}
	}))
	w.Register("tasks.add", func(_ context.Context, t *celery.Task) (any, error) {
		var x, y int
		return x + y, t.Bind(&x, &y)
	})
	if err := w.Start(ctx); err != nil {
		panic(err)
	}
	defer w.Shutdown()

	client := celery.NewClient(conn, nil, celery.WithSendMiddleware(func(next celery.SendFunc) celery.SendFunc {
		return func(ctx context.Context, o *celery.OutgoingTask) error {
			o.Message.Headers["x-request-id"] = "req-42"
			return next(ctx, o)
		}
	}))
	if _, err := client.SendTask(ctx, "tasks.add", []any{2, 3}, nil); err != nil {
		panic(err)
	}
	<-done
	// Output:
	// running tasks.add for req-42
	// result 5 error <nil>
}
