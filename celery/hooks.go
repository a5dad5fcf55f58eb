package celery

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/kombu-go/kombu"
)

// ErrNilMiddleware is returned (by Client.Publish, SendTask and
// Worker.Start) when WithSendMiddleware or WithTaskMiddleware was given a
// nil middleware.
var ErrNilMiddleware = errors.New("celery: nil middleware")

// errTaskNotRun is the failure of a task whose TaskMiddleware returned
// without calling next and without an error.
var errTaskNotRun = errors.New("celery: task middleware did not run the task")

// OutgoingTask is what a SendMiddleware sees of a task message about to be
// published: the message, whose Headers it may add to (they are written as
// protocol 2 message headers, where Celery's before_task_publish handlers
// add theirs), and where it goes, for reading.
type OutgoingTask struct {
	// Message is the task message. Its Headers map is the message's own
	// (never nil, and not shared with the message it was copied from).
	Message *TaskMessage
	// Queue is the queue the message is routed to through the default
	// exchange ("" when it goes to a named exchange).
	Queue string
	// Exchange is the exchange ("" for the default exchange).
	Exchange string
	// RoutingKey is the routing key (the queue on the default exchange).
	RoutingKey string
}

// SendFunc publishes one task message (the core publish, or the next
// middleware).
type SendFunc func(ctx context.Context, t *OutgoingTask) error

// SendMiddleware wraps the publish of a task message: it may add headers
// before calling next and observe the error after. It must call next at
// most once; returning without calling it drops the message.
type SendMiddleware func(next SendFunc) SendFunc

// WithSendMiddleware adds middleware around the publish of every task
// message the client sends: SendTask, Publish and canvases (Apply), and,
// given to a worker through WithClientOptions, the retries, chain steps,
// callbacks and errbacks the worker sends. The first given is the
// outermost. Instrumentation (package otelcelery) uses it to start a
// producer span and inject trace context into the message headers.
func WithSendMiddleware(mw ...SendMiddleware) ClientOption {
	return func(c *Client) {
		for _, m := range mw {
			if m == nil {
				c.hooks.err = ErrNilMiddleware
				return
			}
		}
		c.hooks.send = append(c.hooks.send, mw...)
	}
}

// clientHooks are a client's send middleware.
type clientHooks struct {
	send []SendMiddleware
	err  error
}

// Publish publishes a prepared task message through the client's send
// middleware. With exchange "" or no routing key it goes to queue (the
// default queue when empty) through the default exchange, as Celery's
// send_task_message does for direct exchanges; otherwise to exchange with
// routingKey.
func (c *Client) Publish(ctx context.Context, m *TaskMessage, queue, exchange string, typ kombu.ExchangeType, routingKey string) error {
	if c.hooks.err != nil {
		return c.hooks.err
	}
	if len(c.hooks.send) == 0 {
		return c.publish(ctx, m, queue, exchange, typ, routingKey)
	}
	out := &OutgoingTask{Message: m, Queue: queue, Exchange: exchange, RoutingKey: routingKey}
	if queue == "" && exchange == "" {
		out.Queue = c.queue
	}
	if exchange == "" || routingKey == "" {
		out.Exchange, out.RoutingKey = "", out.Queue
	} else {
		out.Queue = ""
	}
	// A retry is a shallow copy of the running task's message: give the
	// middleware a map of this message's own to write to.
	if m.Headers == nil {
		m.Headers = map[string]any{}
	} else {
		m.Headers = maps.Clone(m.Headers)
	}
	send := SendFunc(func(ctx context.Context, _ *OutgoingTask) error {
		return c.publish(ctx, m, queue, exchange, typ, routingKey)
	})
	for i := len(c.hooks.send) - 1; i >= 0; i-- {
		send = c.hooks.send[i](send)
	}
	return send(ctx, out)
}

// TaskFunc runs one task: the handler within its time limits and then
// what follows from its outcome (storing the result, the chain's next
// step, callbacks, a retry, the acknowledgement), returning the handler's
// result and error. It is the core a TaskMiddleware wraps, or the next
// middleware.
type TaskFunc func(ctx context.Context, t *Task) (any, error)

// TaskMiddleware wraps the run of every task: it sees the Task (its id,
// name, headers, retries, parent and root ids) before the handler and the
// handler's result and error after everything that follows from them, so
// the messages the task sends (retries, chain steps, callbacks) are sent
// within it, with the context it passes to next. That context must derive
// from the one it was given (the worker cancels it for time limits,
// revokes and shutdown). A middleware must call next at most once; if it
// returns (or panics) without calling it the task fails with the
// middleware's error (or the panic, as an Exception).
//
// The error seen is the handler's: a *RetryError for a retry, a
// *TaskError for a panic (Type "Exception"), ErrTimeLimitExceeded when the
// hard time limit cut the handler off.
type TaskMiddleware func(next TaskFunc) TaskFunc

// WithTaskMiddleware adds middleware around every task the worker runs
// (the first given is the outermost). Instrumentation (package otelcelery)
// uses it to extract trace context from the task's headers and run the
// task in a consumer span.
func WithTaskMiddleware(mw ...TaskMiddleware) WorkerOption {
	return func(o *workerOptions) {
		for _, m := range mw {
			if m == nil {
				o.hooks.err = ErrNilMiddleware
				return
			}
		}
		o.hooks.task = append(o.hooks.task, mw...)
	}
}

// workerHooks are a worker's task middleware.
type workerHooks struct {
	task []TaskMiddleware
	err  error
}

// hooksErr reports a nil middleware given to the worker or its client.
func (w *Worker) hooksErr() error {
	if w.opts.hooks.err != nil {
		return w.opts.hooks.err
	}
	return w.client.hooks.err
}

// runTask runs core for req's task through the task middleware.
func (w *Worker) runTask(ctx context.Context, req *request, task *Task, core TaskFunc) {
	if len(w.opts.hooks.task) == 0 {
		_, _ = core(ctx, task)
		return
	}
	called := false
	defer func() {
		// A panicking middleware fails a task it did not run; one that
		// panics after is only logged (the task is settled).
		if r := recover(); r != nil {
			w.logFor(req).Error("celery: task middleware panicked", "task", task.Task, "id", task.ID, "panic", r)
			if !called {
				w.fail(context.WithoutCancel(ctx), req, &TaskError{Type: "Exception", Module: "builtins",
					Args: []any{fmt.Sprintf("panic in task middleware: %v", r)}}, "")
			}
		}
	}()
	run := TaskFunc(func(ctx context.Context, t *Task) (any, error) {
		if called {
			return nil, errors.New("celery: task middleware called next twice")
		}
		called = true
		return core(ctx, t)
	})
	for i := len(w.opts.hooks.task) - 1; i >= 0; i-- {
		run = w.opts.hooks.task[i](run)
	}
	_, err := run(ctx, task)
	if !called {
		if err == nil {
			err = errTaskNotRun
		}
		w.fail(context.WithoutCancel(ctx), req, err, "")
	}
}
