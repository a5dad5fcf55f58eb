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
// Canvas (celery/canvas.py, app/trace.py, backends/redis.py), the same in
// Celery 5.2.6 and 5.5.2: after a success the Worker applies the next step
// of the message's chain (stored last-first) with the result prepended
// (unless the step is immutable), parent_id and root_id, the rest of the
// chain carried along, and the step's own options (queue, routing_key,
// exchange, priority, countdown, eta, expires, link, link_error, task_id);
// a failure stores FAILURE for the later steps as mark_as_failure does and
// fires the errbacks with the failed id. Chord header tasks do
// RedisBackend.on_chord_part_return: [1, id, state, result] into the
// celery-taskset-meta-<group>.j sorted set by group_index with the .s size
// and .t counter, in one MULTI with the expiries; the last part sends the
// body with the results in header order, or, when a part failed or was
// revoked, stores ChordError("Dependency <id> raised ...") for the body and
// sends its errbacks; the keys are then deleted (Celery leaves a failed
// chord's keys to expire). Group, chord and chain signatures met in a
// chain or a callback are applied as Celery applies them. On the client
// side, Chain, Group and Chord build the same signatures and Client.Apply
// sends any of them, returning an AsyncResult (with Parent along a chain)
// or a GroupResult; GroupResult.Save and Backend.RestoreGroup share
// celery-taskset-meta-<id> with Python's GroupResult.save/restore.
//
// The Worker is a member of a Celery estate (celery/worker/control.py,
// kombu/pidbox.py, celery/events/, celery/worker/state.py): it answers
// every command of Celery's worker on its <hostname>.celery.pidbox mailbox
// (ping, stats, registered, active, reserved, scheduled, revoked,
// query_task, clock, conf, report, hello, active_queues, revoke and
// terminate, revoke_by_stamped_headers, rate_limit, time_limit,
// enable_events, disable_events, heartbeat, election, memsample, memdump,
// objgraph, pool_grow, pool_shrink, pool_restart, autoscale, add_consumer,
// cancel_consumer, shutdown, and the dump_* aliases) with Celery's replies;
// keeps revoked ids as Celery does (50,000, three hours) so a revoked task
// never runs whether queued, prefetched or held for its eta, and terminate
// cancels a running handler's context with ErrTerminated; WithStateDB keeps
// them across restarts (--statedb) in a file or a Redis key; sends
// worker-online/heartbeat/offline events always and task events with
// WithEvents, which Celery's Receiver, State, Flower and celery-exporter
// read; a Client WithSentEvents sends task-sent. Control does what
// app.control does from Go against any mix of Python and Go workers;
// EventReceiver and EventState read the event stream as Flower does. Time
// limits: past the soft limit the handler's context is cancelled with
// ErrSoftTimeLimitExceeded as its cause (SoftTimeLimitExceeded is stored if
// it then returns an error); past the hard limit the task is stored as
// TimeLimitExceeded at once and its pool slot freed even if the handler
// never returns. Rate limits (RateLimit, `celery control rate_limit`) hold
// a task for its turn with its prefetch slot, without holding up other
// task types.
//
// Celery 5.5's stamping headers (stamped_headers, stamps) pass through the
// Worker untouched: a retried message keeps them, and a chain step whose
// signature is stamped is sent with them, as Celery 5.5 sends it.
//
// pool_grow and pool_shrink resize the goroutine pool (and the prefetch
// limit with it, as Celery does). add_consumer consumes another queue on a
// channel of its own; cancel_consumer stops it, and pauses a queue given
// at Start (add_consumer resumes it).
//
// Where a Go worker answers differently from a Python one: autoscale and
// pool_restart answer Celery's "not enabled" errors (a goroutine pool has
// no autoscaler, Go code cannot be reloaded); objgraph and election answer
// errors (no Python objects, no gossip); memsample and memdump read the
// RSS from /proc (Python's need psutil); revoke answers with Celery 5.2's
// text (5.3+ writes the ids as a set); disable_events turns task events
// off even on a worker started WithEvents (a Python worker started with -E
// answers "already disabled" and keeps sending); the state db is
// kombu-go's JSON, not a Python shelve.
//
// Mingle at start is opt-in (WithMingle; Celery's is on by default): it
// costs a one-second wait at every start. As with Celery on Redis, an eta
// longer than the transport's visibility_timeout (one hour) gets the
// message redelivered.
//
// The messages Client.Apply writes for a chain, a group and a chord are
// Celery's for the same canvas (checked against Celery 5.2.6 and 5.5.2),
// but for two differences between those versions: Celery 5.5 numbers the
// members of a plain group (group_index 0, 1, ...) where 5.2 writes null,
// and 5.5 adds the headers replaced_task_nesting, stamped_headers and
// stamps; Go writes 5.5's group_index and 5.2's header set, which both
// versions read.
package celery
