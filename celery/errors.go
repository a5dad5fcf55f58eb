package celery

import "errors"

// Sentinel errors of package celery. Branch on them with errors.Is.
var (
	// ErrInvalidMessage: a message is not a Celery task message (protocol 1
	// or 2) that can be run. The worker rejects such messages, as Celery's
	// on_invalid_task does.
	ErrInvalidMessage = errors.New("celery: invalid task message")
	// ErrNotRegistered: no handler is registered for a task name. The
	// worker rejects the message and stores a NotRegistered failure, as
	// Celery's on_unknown_task does; a *TaskError of that type matches it.
	ErrNotRegistered = errors.New("celery: task not registered")
	// ErrTaskFailed: the task finished in the FAILURE state. The error is a
	// *TaskError carrying the exception type and message.
	ErrTaskFailed = errors.New("celery: task failed")
	// ErrTaskRevoked: the task was revoked (for example it expired before
	// it ran). The error is a *TaskError of type TaskRevokedError.
	ErrTaskRevoked = errors.New("celery: task revoked")
	// ErrRetry is matched by every *RetryError: the handler asked for the
	// task to run again later.
	ErrRetry = errors.New("celery: retry task")
	// ErrMaxRetriesExceeded matches a *TaskError of type
	// MaxRetriesExceededError: a retry was asked for past the task's retry
	// limit without a reason (with one, the task fails with the reason, as
	// Celery re-raises exc).
	ErrMaxRetriesExceeded = errors.New("celery: max retries exceeded")
	// ErrReject, returned (or wrapped) by a handler, rejects the message
	// without storing a state, as raising celery.exceptions.Reject does. See
	// Reject for requeueing.
	ErrReject = errors.New("celery: reject task")
	// ErrIgnore, returned (or wrapped) by a handler, acknowledges the
	// message and stores no state, as raising celery.exceptions.Ignore does.
	ErrIgnore = errors.New("celery: ignore task")
	// ErrNoBackend: a result was asked for but the client has no result
	// backend.
	ErrNoBackend = errors.New("celery: no result backend")
	// ErrWorkerRunning: Start was called on a worker that is running.
	ErrWorkerRunning = errors.New("celery: worker already running")
)

// RejectError rejects the task's message, optionally requeueing it
// (Celery's Reject(requeue=...)). It matches ErrReject.
type RejectError struct {
	Reason  error
	Requeue bool
}

func (e *RejectError) Error() string {
	s := "celery: reject task"
	if e.Requeue {
		s += " (requeue)"
	}
	if e.Reason != nil {
		s += ": " + e.Reason.Error()
	}
	return s
}

// Is reports whether target is ErrReject.
func (e *RejectError) Is(target error) bool { return target == ErrReject }

// Unwrap returns the reason.
func (e *RejectError) Unwrap() error { return e.Reason }

// Reject returns an error that makes the worker reject the message: dropped,
// or put back on its queue when requeue is true. No result is stored. As in
// Celery, this only affects a message not yet acknowledged: use it with
// late acks (WithAcksLate, TaskAcksLate).
func Reject(reason error, requeue bool) error { return &RejectError{Reason: reason, Requeue: requeue} }
