// Package celery lets Go services and Python Celery 5 share task queues on
// Redis: a Client sends tasks that a Python worker runs and reads their
// results, and a Worker runs, in Go, the tasks Python code sends with
// task.delay() or apply_async(), storing results that Python's
// AsyncResult.get() reads. It is built on the kombu package's public API
// (Connection, transport) and on go-redis for the result backend.
//
// Celery 5.2.6 (with Kombu 5.2.4) is the reference; the wire formats are
// checked byte for byte against messages and results it wrote:
//
//   - Task messages are protocol 2 exactly as celery/app/amqp.py writes them:
//     the headers lang, task, id, shadow, eta, expires, group, group_index,
//     retries, timelimit, root_id, parent_id, argsrepr, kwargsrepr, origin,
//     ignore_result in that order, the body [args, kwargs, {callbacks,
//     errbacks, chain, chord}], and the correlation_id, reply_to, priority
//     (and, with expires, expiration) properties. argsrepr and kwargsrepr are
//     Celery's saferepr. Protocol 1 and the hybrid form are read too.
//   - Results live under celery-task-meta-<id> as celery/backends/base.py
//     writes them (status, result, traceback, children, date_done,
//     [group_id], [parent_id], task_id), with SETEX for result_expires (one
//     day) and a PUBLISH on the key's channel, which waiting clients
//     subscribe to, as celery/backends/redis.py does. Exceptions are
//     {"exc_type", "exc_message", "exc_module"}: Python raises the real
//     type.
//
// The Worker behaves as Celery's (celery/worker/request.py and strategy.py):
// concurrency goroutines; prefetch of concurrency × worker_prefetch_multiplier
// messages; early acknowledgement (when the task starts) or acks_late; eta
// and countdown tasks held unacknowledged and outside the prefetch count
// until due; expired tasks marked REVOKED ("expired"); retries re-sent with
// the same id, retries+1, parent_id and an eta, RETRY stored in between,
// failing past max_retries; unknown task names logged, rejected and stored
// as NotRegistered failures without disturbing other messages; link and
// link_error callbacks; warm shutdown on context cancellation, Shutdown, or
// SIGINT/SIGTERM under Run. Handler errors are classified with errors.Is
// and errors.As (RetryError, RejectError, ErrIgnore, TaskError), a panic
// is a failure with the Go stack as traceback, and the retry delay is
// pluggable.
//
// Not implemented: Celery's events, remote control (inspect, revoke by id
// broadcast, pidbox), heartbeats, rate limits, chords, groups and chains as
// callbacks. As with Celery on Redis, an eta longer than the transport's
// visibility_timeout (one hour) gets the message redelivered.
package celery
