package celery

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// Handler runs one task and returns its result, any JSON-encodable value,
// or an error. The error decides what happens, checked in this order:
//
//   - a *RetryError (see Retry, RetryAfterDelay): the task is sent again with
//     retries+1 after the countdown and RETRY is stored; past the task's
//     retry limit it fails instead, as Celery's task.retry() does;
//   - ErrReject or a *RejectError (see Reject): the message is rejected or
//     requeued and no state is stored (Celery's Reject);
//   - ErrIgnore: the message is acknowledged and no state is stored
//     (Celery's Ignore);
//   - an error the task's AutoRetry function accepts: retried after the
//     task's retry delay (Celery's autoretry_for);
//   - any other error: FAILURE. A *TaskError in the chain gives the Python
//     exception type and message (NewError); any other error is stored as
//     builtins.Exception with the error's text.
//
// A panic is a FAILURE too, with the Go stack as the traceback. ctx is
// cancelled when the task's time limit passes or when the worker's shutdown
// timeout ends.
type Handler func(ctx context.Context, t *Task) (any, error)

// Task is the request a handler runs: the decoded message and where it
// came from (Celery's task.request).
type Task struct {
	*TaskMessage
	// Queue and Exchange are the message's delivery_info (the queue it was
	// taken from and the exchange it was published to).
	Queue, Exchange string
	// RoutingKey is delivery_info.routing_key.
	RoutingKey string
	// DeliveryTag is the Kombu delivery tag.
	DeliveryTag string
	// Redelivered is true when the message was restored or requeued before.
	Redelivered bool
	// Hostname is the worker's node name.
	Hostname string
}

// Arg decodes positional argument i into v (as encoding/json would decode
// its JSON text).
func (t *Task) Arg(i int, v any) error {
	if i < 0 || i >= len(t.Args) {
		return NewError("TypeError", fmt.Sprintf("%s() missing positional argument %d", t.Task, i))
	}
	return decodeValue(t.Args[i], v)
}

// Kwarg decodes keyword argument name into v and reports whether it was
// given.
func (t *Task) Kwarg(name string, v any) (bool, error) {
	x, ok := t.Kwargs[name]
	if !ok {
		return false, nil
	}
	return true, decodeValue(x, v)
}

// Param decodes one parameter the way Python binds a call to def f(...):
// positional argument index if the caller gave that many, else keyword
// argument name; neither is a TypeError. Use it for tasks Python calls
// both as add.delay(2, 3) and add.delay(x=2, y=3).
func (t *Task) Param(index int, name string, v any) error {
	if index >= 0 && index < len(t.Args) {
		return decodeValue(t.Args[index], v)
	}
	if x, ok := t.Kwargs[name]; ok {
		return decodeValue(x, v)
	}
	return NewError("TypeError", fmt.Sprintf("%s() missing required argument: '%s'", t.Task, name))
}

// Bind decodes the positional arguments into ptrs, one each. It fails with
// a TypeError, as Python would, when the counts differ.
func (t *Task) Bind(ptrs ...any) error {
	if len(t.Args) != len(ptrs) {
		return NewError("TypeError", fmt.Sprintf("%s() takes %d positional arguments but %d were given", t.Task, len(ptrs), len(t.Args)))
	}
	for i, p := range ptrs {
		if err := decodeValue(t.Args[i], p); err != nil {
			return NewError("TypeError", fmt.Sprintf("%s() argument %d: %v", t.Task, i, err))
		}
	}
	return nil
}

func decodeValue(x, v any) error {
	b, err := pyjson.Marshal(x)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Retry returns an error that makes the worker send the task again after
// countdown (zero: at once), with retries+1, and store RETRY with err as
// the reason, as raising self.retry(exc=err, countdown=...) does. err may
// be nil.
func (t *Task) Retry(err error, countdown time.Duration) *RetryError { return Retry(err, countdown) }

// RetryError asks the worker to retry a task. It matches ErrRetry and
// unwraps to Err.
type RetryError struct {
	// Err is the reason (Celery's exc): stored with the RETRY state, and
	// the task's failure if it has no retries left. May be nil.
	Err error
	// Countdown is the delay before the next try.
	Countdown time.Duration
	// ETA, if set, is when the next try may run (instead of Countdown).
	ETA time.Time
	// UseRetryDelay takes the delay from the task's retry delay function
	// instead of Countdown (Celery's default_retry_delay).
	UseRetryDelay bool
	// MaxRetries, if set, overrides the task's retry limit for this call
	// (negative: unlimited).
	MaxRetries *int
	// Args and Kwargs, if set, replace the task's arguments for the retry.
	Args   []any
	Kwargs map[string]any
	// Queue, if set, sends the retry to another queue (Celery's
	// self.retry(queue=...)); by default it goes back where it came from.
	Queue string
}

// Retry returns a *RetryError with a countdown.
func Retry(err error, countdown time.Duration) *RetryError {
	return &RetryError{Err: err, Countdown: countdown}
}

// RetryAfterDelay returns a *RetryError whose delay comes from the task's
// retry delay function (by default Celery's default_retry_delay, 3 minutes).
func RetryAfterDelay(err error) *RetryError { return &RetryError{Err: err, UseRetryDelay: true} }

func (e *RetryError) Error() string {
	when := "in " + e.Countdown.String()
	if !e.ETA.IsZero() {
		when = "at " + formatISO(e.ETA)
	}
	if e.Err != nil {
		return fmt.Sprintf("Retry %s: %v", when, e.Err)
	}
	return "Retry " + when
}

// Is reports whether target is ErrRetry.
func (e *RetryError) Is(target error) bool { return target == ErrRetry }

// Unwrap returns the reason.
func (e *RetryError) Unwrap() error { return e.Err }

// TaskOption configures one registered task.
type TaskOption func(*taskConfig)

type taskConfig struct {
	maxRetries   int
	retryDelay   func(retries int, err error) time.Duration
	autoRetry    func(error) bool
	acksLate     *bool
	ignoreResult bool
	timeLimit    time.Duration
	trackStarted *bool
	// softTimeLimit and rateLimit (tasks per second, 0: none) are set by
	// remote control (time_limit, rate_limit) or RateLimit.
	softTimeLimit time.Duration
	rateLimit     float64
}

// MaxRetries sets how many times the task may be retried (Celery's
// max_retries, 3 by default); negative means no limit.
func MaxRetries(n int) TaskOption { return func(c *taskConfig) { c.maxRetries = n } }

// TaskRetryDelay sets the task's retry delay function (Celery's
// default_retry_delay, made pluggable): it gets the number of retries so
// far and the reason.
func TaskRetryDelay(f func(retries int, err error) time.Duration) TaskOption {
	return func(c *taskConfig) { c.retryDelay = f }
}

// AutoRetry retries the task, after its retry delay, when the handler's
// error satisfies f (Celery's autoretry_for).
func AutoRetry(f func(error) bool) TaskOption { return func(c *taskConfig) { c.autoRetry = f } }

// TaskAcksLate overrides the worker's acks_late for this task.
func TaskAcksLate(late bool) TaskOption { return func(c *taskConfig) { c.acksLate = &late } }

// TaskIgnoreResult never stores the task's result or state.
func TaskIgnoreResult() TaskOption { return func(c *taskConfig) { c.ignoreResult = true } }

// TimeLimit cancels the handler's context after d; a handler still running
// then fails with TimeLimitExceeded. The message's own time limit wins when
// set.
func TimeLimit(d time.Duration) TaskOption { return func(c *taskConfig) { c.timeLimit = d } }

// TaskTrackStarted overrides the worker's track_started for this task.
func TaskTrackStarted(track bool) TaskOption { return func(c *taskConfig) { c.trackStarted = &track } }

// DefaultRetryDelay is Celery's Task.default_retry_delay.
const DefaultRetryDelay = 3 * time.Minute

// DefaultMaxRetries is Celery's Task.max_retries.
const DefaultMaxRetries = 3

// FixedRetryDelay returns a retry delay function that always waits d.
func FixedRetryDelay(d time.Duration) func(int, error) time.Duration {
	return func(int, error) time.Duration { return d }
}

// ExponentialRetryDelay returns a retry delay function that waits base,
// 2×base, 4×base, ... up to max (Celery's retry_backoff without jitter).
func ExponentialRetryDelay(base, max time.Duration) func(int, error) time.Duration {
	return func(retries int, _ error) time.Duration {
		d := base
		for i := 0; i < retries && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}
