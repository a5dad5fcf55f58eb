package celery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// Worker defaults, as in Celery 5.2.
const (
	// DefaultPrefetchMultiplier is worker_prefetch_multiplier.
	DefaultPrefetchMultiplier = 4
	// DefaultShutdownTimeout is how long a warm shutdown waits for running
	// tasks before cancelling their contexts.
	DefaultShutdownTimeout = 30 * time.Second
)

// Worker runs Go handlers for Celery tasks taken from Kombu queues, as a
// Celery worker does: prefetch of concurrency × multiplier messages, early
// or late acknowledgement, eta/countdown tasks held (unacknowledged, not
// counted against prefetch) until due, expired tasks marked REVOKED,
// retries re-sent with a countdown, results and failures stored in Celery's
// format, unknown task names rejected with a NotRegistered failure.
//
// Its lifecycle follows asynq's Server: Start, Shutdown, and Run, which
// also shuts down on SIGINT or SIGTERM. A shutdown is warm: the worker stops
// taking messages, lets running tasks finish (up to the shutdown timeout),
// and returns every message it holds and has not acknowledged (prefetched,
// waiting for an eta) to the front of its queue.
type Worker struct {
	conn    *kombu.Connection
	backend *Backend
	client  *Client
	opts    workerOptions
	log     *slog.Logger

	mu       sync.Mutex
	handlers map[string]*registration
	running  bool
	stopping bool
	cancel   context.CancelFunc
	done     chan struct{}
	err      error

	qos    *kombu.QoS // the consumers' shared prefetch limit
	ready  *readyQueue
	timers map[*request]*time.Timer

	state    *workerState // revoked ids, reserved and active requests (control.go)
	pool     *poolState   // the goroutines running tasks (pool_grow, pool_shrink)
	queues   *queueSet    // queues added by add_consumer (queues.go)
	limits   limiters     // rate limits per task name (limits.go)
	eventsOn bool         // task events enabled (enable_events)
	events   *eventer     // nil until Start (events.go)
	// stateSave asks the state saver to save (WithStateDB, statedb.go);
	// set before Start starts anything, read-only while running.
	stateSave chan struct{}
}

type registration struct {
	name    string
	handler Handler
	cfg     taskConfig
}

// WorkerOption configures a Worker.
type WorkerOption func(*workerOptions)

type workerOptions struct {
	mingle          bool
	noControl       bool
	taskEvents      bool
	noHeartbeat     bool
	queues          []string
	concurrency     int
	prefetchMult    int
	acksLate        bool
	shutdownTimeout time.Duration
	hostname        string
	logger          *slog.Logger
	retryDelay      func(int, error) time.Duration
	resultExtended  bool
	trackStarted    bool
	onError         func(error)
	accept          []string
	clientOpts      []ClientOption
	stateDB         StateDB
	hooks           workerHooks // WithTaskMiddleware (hooks.go)
}

// WithQueues sets the queues to consume (default "celery"), as celery
// worker -Q does. Each is declared as Celery declares it (CeleryQueue).
func WithQueues(queues ...string) WorkerOption {
	return func(o *workerOptions) { o.queues = append([]string(nil), queues...) }
}

// WithConcurrency sets the number of tasks run at once (default: the number
// of CPUs, as Celery's default). It bounds the handlers running at once: a
// slot whose handler has returned takes the next task while its task's
// result is stored (the task stays active until then).
func WithConcurrency(n int) WorkerOption { return func(o *workerOptions) { o.concurrency = n } }

// WithPrefetchMultiplier sets worker_prefetch_multiplier (default 4): at
// most concurrency × n messages are taken and not yet acknowledged, eta
// tasks aside. Zero means no limit, as in Celery.
func WithPrefetchMultiplier(n int) WorkerOption {
	return func(o *workerOptions) { o.prefetchMult = n }
}

// WithAcksLate acknowledges messages after the task ran instead of just
// before (Celery's task_acks_late). Tasks may override it (TaskAcksLate).
func WithAcksLate(late bool) WorkerOption { return func(o *workerOptions) { o.acksLate = late } }

// WithShutdownTimeout sets how long a warm shutdown waits for running tasks
// before cancelling their contexts (default 30 s).
func WithShutdownTimeout(d time.Duration) WorkerOption {
	return func(o *workerOptions) { o.shutdownTimeout = d }
}

// WithHostname sets the worker's node name (default "celery@<hostname>").
func WithHostname(name string) WorkerOption { return func(o *workerOptions) { o.hostname = name } }

// WithoutRemoteControl turns the worker's remote-control mailbox off
// (Celery's worker_enable_remote_control=False): it then does not answer
// `celery inspect`/`celery control` and cannot be revoked by broadcast.
func WithoutRemoteControl() WorkerOption { return func(o *workerOptions) { o.noControl = true } }

// WithLogger sets the worker's logger (default: the connection's logger).
func WithLogger(l *slog.Logger) WorkerOption { return func(o *workerOptions) { o.logger = l } }

// WithRetryDelay sets the default retry delay function of every task
// (default: Celery's default_retry_delay, 3 minutes, whatever the retry).
func WithRetryDelay(f func(retries int, err error) time.Duration) WorkerOption {
	return func(o *workerOptions) { o.retryDelay = f }
}

// WithResultExtended stores the task name, args, kwargs, worker, retries
// and queue with results (Celery's result_extended).
func WithResultExtended() WorkerOption { return func(o *workerOptions) { o.resultExtended = true } }

// WithTrackStarted stores the STARTED state when a task starts (Celery's
// task_track_started).
func WithTrackStarted() WorkerOption { return func(o *workerOptions) { o.trackStarted = true } }

// WithErrorHandler receives the errors the worker survives (invalid and
// unknown messages, backend and broker errors).
func WithErrorHandler(f func(error)) WorkerOption { return func(o *workerOptions) { o.onError = f } }

// WithAcceptContent sets the accepted serializers (Celery's accept_content,
// default ["json"]).
func WithAcceptContent(accept ...string) WorkerOption {
	return func(o *workerOptions) { o.accept = accept }
}

// WithClientOptions configures the client the worker sends retries and
// callbacks with.
func WithClientOptions(opts ...ClientOption) WorkerOption {
	return func(o *workerOptions) { o.clientOpts = append(o.clientOpts, opts...) }
}

// NewWorker returns a worker consuming over conn and storing results in
// backend (nil: results are not stored, as with Celery's disabled
// backend).
func NewWorker(conn *kombu.Connection, backend *Backend, opts ...WorkerOption) *Worker {
	o := workerOptions{
		queues:          []string{DefaultQueue},
		concurrency:     runtime.NumCPU(),
		prefetchMult:    DefaultPrefetchMultiplier,
		shutdownTimeout: DefaultShutdownTimeout,
		retryDelay:      FixedRetryDelay(DefaultRetryDelay),
		accept:          []string{"json"},
	}
	for _, f := range opts {
		f(&o)
	}
	if o.concurrency <= 0 {
		o.concurrency = 1
	}
	if len(o.queues) == 0 {
		o.queues = []string{DefaultQueue}
	}
	if o.hostname == "" {
		host, _ := os.Hostname()
		o.hostname = "celery@" + host
	}
	log := o.logger
	if log == nil {
		log = conn.Logger()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{
		conn: conn, backend: backend, opts: o, log: log,
		// Tasks the worker sends (chain steps, callbacks, chord bodies) go
		// to its first queue unless they name one or WithClientOptions
		// sets a default queue: a Celery worker uses its app's
		// task_default_queue, which is its queue in the common setup.
		client:   NewClient(conn, backend, append([]ClientOption{WithDefaultQueue(o.queues[0])}, o.clientOpts...)...),
		handlers: map[string]*registration{},
		state:    newWorkerState(),
		eventsOn: o.taskEvents,
	}
}

// Register registers the handler of a task name (for example "tasks.add").
// Registering a name again replaces its handler. It may be called while the
// worker runs.
func (w *Worker) Register(name string, h Handler, opts ...TaskOption) {
	if name == "" || h == nil {
		panic("celery: Register needs a task name and a handler")
	}
	cfg := taskConfig{maxRetries: DefaultMaxRetries}
	for _, o := range opts {
		o(&cfg)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers[name] = &registration{name: name, handler: h, cfg: cfg}
	if cfg.rateLimit > 0 {
		defer w.setRateLimit(name, cfg.rateLimit)
	}
}

// Tasks returns the registered task names.
func (w *Worker) Tasks() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.handlers))
	for n := range w.handlers {
		names = append(names, n)
	}
	return names
}

func (w *Worker) lookup(name string) *registration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handlers[name]
}

func (w *Worker) onError(err error) {
	if w.opts.onError != nil {
		w.opts.onError(err)
	}
}

// Start declares the queues and starts consuming in the background. The
// worker runs until ctx is cancelled or Shutdown is called; either starts a
// warm shutdown.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.hooksErr(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return ErrWorkerRunning
	}
	w.running, w.stopping, w.err = true, false, nil
	w.mu.Unlock()

	if err := w.loadState(ctx); err != nil {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
		return err
	}
	for _, q := range w.opts.queues {
		if _, err := w.conn.DeclareQueue(ctx, CeleryQueue(q)); err != nil {
			w.mu.Lock()
			w.running = false
			w.mu.Unlock()
			return fmt.Errorf("celery: worker: declare queue %s: %w", q, err)
		}
	}

	limit := 0
	if w.opts.prefetchMult > 0 {
		limit = w.opts.concurrency * w.opts.prefetchMult
	}
	life, cancel := context.WithCancel(ctx)
	events := w.startEvents(ctx)
	w.mu.Lock()
	w.events = events
	w.qos = kombu.NewQoS(limit)
	w.ready = newReadyQueue()
	w.ready.emptied = w.qos.Wake // the consumers fetch again at once (hungry)
	w.timers = map[*request]*time.Timer{}
	w.cancel = cancel
	w.done = make(chan struct{})
	w.mu.Unlock()

	stateSaved := make(chan struct{})
	if w.opts.stateDB != nil {
		w.stateSave = make(chan struct{}, 1)
		go w.runStateSaver(life, w.stateSave, stateSaved)
	} else {
		close(stateSaved)
	}
	if w.opts.mingle {
		w.mingle(ctx) // before tasks flow in: a task revoked elsewhere must not run here
	}
	// The consumer outlives ctx: it must keep the channel open while
	// running tasks finish, and restore what is left only after them.
	consumeCtx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	// Task contexts are cancelled only when the shutdown timeout passes.
	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))

	var pool sync.WaitGroup
	w.mu.Lock()
	w.pool = &poolState{wg: &pool, ctx: taskCtx, size: 0}
	w.mu.Unlock()
	w.growPool(w.opts.concurrency)

	w.mu.Lock()
	w.queues = &queueSet{life: life, consumeCtx: consumeCtx, extra: map[string]*extraConsumer{}, paused: map[string]bool{}}
	w.mu.Unlock()
	consumeErr := make(chan error, 1)
	go func() {
		err := w.consumer(w.opts.queues...).Consume(consumeCtx, func(_ context.Context, m *kombu.Message) error {
			w.dispatch(life, m)
			return nil
		})
		if err != nil && consumeCtx.Err() == nil {
			// The consumer stopped by itself (connection closed): shut down.
			cancel()
		}
		consumeErr <- err
	}()

	if !w.opts.noControl {
		// Start returns once the mailbox listens: a broadcast right after
		// it (pub/sub is at most once) reaches the worker.
		listening := make(chan struct{})
		var once sync.Once
		go w.runPidbox(life, func() { once.Do(func() { close(listening) }) })
		select {
		case <-listening:
		case <-time.After(5 * time.Second):
			w.log.Warn("celery: control mailbox not listening after 5 s; continuing")
		case <-life.Done():
		}
	}
	heartStopped := make(chan struct{})
	if !w.opts.noHeartbeat {
		go w.runHeart(life, heartStopped)
	} else {
		close(heartStopped)
	}
	go func() {
		<-life.Done()
		w.mu.Lock()
		w.stopping = true
		for req, t := range w.timers {
			t.Stop() // the message stays unacknowledged: restored below
			delete(w.timers, req)
			w.qos.Decrement(1)
		}
		w.mu.Unlock()
		w.ready.close()
		drained := make(chan struct{})
		go func() { pool.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(w.opts.shutdownTimeout):
			w.log.Warn("celery: tasks still running after the shutdown timeout; cancelling them")
			cancelTasks()
			select {
			case <-drained:
			case <-time.After(5 * time.Second):
			}
		}
		cancelTasks()
		stopConsume()
		w.stopExtraConsumers()
		<-heartStopped
		<-stateSaved
		events.close()
		err := <-consumeErr // Consume restored what was left unsettled
		w.mu.Lock()
		if err != nil && !errors.Is(err, context.Canceled) {
			w.err = err
		}
		w.running = false
		close(w.done)
		w.mu.Unlock()
	}()
	w.log.Info("celery: worker ready", "hostname", w.opts.hostname, "queues", w.opts.queues, "concurrency", w.opts.concurrency)
	return nil
}

// Shutdown starts a warm shutdown, if none is under way, and waits for it:
// no new messages, running tasks finish (up to the shutdown timeout), held
// messages go back to their queues. It returns the error that stopped the
// worker, if any.
func (w *Worker) Shutdown() error {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Done is closed when the worker has stopped after a Start.
func (w *Worker) Done() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// Run starts the worker and blocks until ctx is cancelled, SIGINT or
// SIGTERM arrives, or the worker stops by itself; then it shuts down
// warmly and returns.
func (w *Worker) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-w.Done():
	}
	return w.Shutdown()
}

// request is one task message the worker holds.
type request struct {
	msg     *entity.Message
	tm      *TaskMessage
	reg     *registration
	mu      sync.Mutex
	settle  bool
	started time.Time // when the pool started it (runtime in task-succeeded)
	// handoff, if set, hands the pool slot to a fresh goroutine once the
	// handler has returned (handoff.go).
	handoff func()
}

func (w *Worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

// dispatch is the consumer's handler: it decides what to do with each
// message without running the task (Celery's strategy).
func (w *Worker) dispatch(life context.Context, m *entity.Message) {
	if w.isStopping() {
		return // unsettled: restored when the consumer stops
	}
	tm, err := DecodeMessage(m)
	if err != nil {
		w.log.Error("celery: received invalid task message; rejecting it", "error", err, "delivery_tag", m.DeliveryTag)
		w.onError(err)
		w.settle(&request{msg: m}, settleReject)
		return
	}
	req := &request{msg: m, tm: tm}
	req.reg = w.lookup(tm.Task)
	if req.reg == nil {
		err := fmt.Errorf("%w: %s (task id %s)", ErrNotRegistered, tm.Task, tm.ID)
		w.logFor(req).Error("celery: received unregistered task; the message has been rejected", "task", tm.Task, "id", tm.ID)
		w.onError(err)
		w.settle(req, settleReject)
		w.store(context.WithoutCancel(life), req, &ResultMeta{Status: StateFailure, Result: notRegisteredError(tm.Task).exceptionDict()}, true)
		return
	}
	if w.state.revoked.has(tm.ID) || w.stampRevoked(tm) {
		w.revokeRequest(context.WithoutCancel(life), req, "revoked")
		return
	}
	now := time.Now()
	if w.expired(req, now) {
		return
	}
	w.state.reserve(req)
	if w.taskEventsOn() { // the fields are built only for an event sent
		w.taskEvent("task-received", req, map[string]any{
			"name": tm.Task, "args": orRepr(tm.ArgsRepr, func() string { return argsRepr(tm.Args) }),
			"kwargs":  orRepr(tm.KwargsRepr, func() string { return kwargsRepr(tm.Kwargs) }),
			"root_id": tm.RootID, "parent_id": nilIfEmpty(tm.ParentID), "retries": tm.Retries,
			"eta": isoOrNil(tm.ETA), "expires": isoOrNil(tm.Expires),
		})
	}
	if !tm.ETA.IsZero() && tm.ETA.After(now) {
		w.schedule(req, tm.ETA.Sub(now))
		return
	}
	if d := w.rateDelay(tm.Task); d > 0 {
		w.holdForRate(life, req, d)
		return
	}
	w.ready.push(req)
}

// schedule holds an eta task until it is due. As Celery does
// (strategy.py: qos.increment_eventually; apply_eta_task:
// decrement_eventually), the prefetch count is raised by one while the task
// is held, so that held tasks do not stop the worker taking others; every
// path that stops holding it (due, revoked, shutdown) lowers it again.
func (w *Worker) schedule(req *request, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return
	}
	w.qos.Increment(1)
	w.timers[req] = time.AfterFunc(d, func() {
		w.mu.Lock()
		if _, held := w.timers[req]; !held || w.stopping {
			w.mu.Unlock()
			return
		}
		delete(w.timers, req)
		w.qos.Decrement(1)
		w.mu.Unlock()
		w.ready.push(req)
	})
}

// expired marks a task whose expires has passed as REVOKED and
// acknowledges it (Celery's Request.revoked()).
func (w *Worker) expired(req *request, now time.Time) bool {
	tm := req.tm
	if tm.Expires.IsZero() || !now.After(tm.Expires) {
		return false
	}
	w.logFor(req).Info("celery: discarding expired task", "task", tm.Task, "id", tm.ID, "expires", formatISO(tm.Expires))
	w.revokeRequest(context.Background(), req, "expired")
	return true
}

// revokeRequest is Celery's Request._announce_revoked: REVOKED stored
// (TaskRevokedError(reason)), the chord part returned, the message
// acknowledged; the task does not run.
func (w *Worker) revokeRequest(ctx context.Context, req *request, reason string) {
	tm := req.tm
	if reason != "expired" {
		w.logFor(req).Info("celery: discarding revoked task", "task", tm.Task, "id", tm.ID, "reason", reason)
	}
	w.store(ctx, req, &ResultMeta{Status: StateRevoked, Result: revokedError(reason).exceptionDict()}, false)
	if part, ok := req.chordPart(); ok { // mark_as_revoked returns the chord part
		w.chordPartReturn(ctx, part, StateRevoked, revokedError(reason).exceptionDict())
	}
	w.settle(req, settleAck)
	w.taskEvent("task-revoked", req, map[string]any{"terminated": reason == "terminated", "signum": signumOf(reason), "expired": reason == "expired"})
}

type settleKind int

const (
	settleAck settleKind = iota
	settleReject
	settleRequeue
)

// settle acknowledges, rejects or requeues the message once (which frees
// its prefetch slot).
func (w *Worker) settle(req *request, kind settleKind) {
	w.state.release(req)
	req.mu.Lock()
	if req.settle {
		req.mu.Unlock()
		return
	}
	req.settle = true
	req.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	switch kind {
	case settleAck:
		err = req.msg.Ack(ctx)
	case settleReject:
		err = req.msg.Reject(ctx)
	case settleRequeue:
		err = req.msg.Requeue(ctx)
	}
	if err != nil {
		w.log.Error("celery: settle message", "delivery_tag", req.msg.DeliveryTag, "error", err)
		w.onError(err)
	}
}

func (w *Worker) acksLate(req *request) bool {
	if req.reg.cfg.acksLate != nil {
		return *req.reg.cfg.acksLate
	}
	return w.opts.acksLate
}

// store writes a state to the result backend unless results are ignored.
// force stores even for ignore_result (Celery stores NotRegistered
// failures regardless).
func (w *Worker) store(ctx context.Context, req *request, meta *ResultMeta, force bool) {
	if w.backend == nil || req.tm == nil {
		return
	}
	if !force && (req.tm.IgnoreResult || (req.reg != nil && req.reg.cfg.ignoreResult)) {
		return
	}
	meta.TaskID = req.tm.ID
	meta.GroupID = req.tm.GroupID
	meta.ParentID = req.tm.ParentID
	if w.opts.resultExtended {
		meta.Extended = &ExtendedMeta{
			Name: req.tm.Task, Args: req.tm.Args, Kwargs: req.tm.Kwargs,
			Worker: w.opts.hostname, Retries: req.tm.Retries, Queue: req.msg.DeliveryInfo.RoutingKey,
		}
	}
	if err := w.backend.Store(ctx, meta); err != nil {
		w.logFor(req).Error("celery: store result", "task", req.tm.Task, "id", req.tm.ID, "state", meta.Status, "error", err)
		w.onError(err)
	}
}

// execute runs one task in a pool goroutine (Celery's Request and trace).
func (w *Worker) execute(ctx context.Context, req *request) {
	tm, cfg := req.tm, req.reg.cfg
	if w.state.revoked.has(tm.ID) || w.stampRevoked(tm) { // revoked while queued, prefetched or held for its eta
		w.revokeRequest(context.WithoutCancel(ctx), req, "revoked")
		return
	}
	if w.expired(req, time.Now()) {
		return
	}
	ctx, finished := w.state.start(ctx, req)
	defer finished()
	req.started = time.Now()
	w.taskEvent("task-started", req, nil)
	late := w.acksLate(req)
	if !late {
		w.settle(req, settleAck) // Celery acknowledges when the task starts
	}
	track := w.opts.trackStarted
	if cfg.trackStarted != nil {
		track = *cfg.trackStarted
	}
	if track {
		w.store(ctx, req, &ResultMeta{Status: StateStarted, Result: pyjson.Object{
			{Key: "pid", Value: os.Getpid()}, {Key: "hostname", Value: w.opts.hostname},
		}}, false)
	}
	hard, soft := cfg.timeLimit, cfg.softTimeLimit
	if tm.TimeLimit > 0 {
		hard = time.Duration(tm.TimeLimit * float64(time.Second))
	}
	if tm.SoftTimeLimit > 0 {
		soft = time.Duration(tm.SoftTimeLimit * float64(time.Second))
	}
	task := &Task{
		TaskMessage: tm, Queue: req.msg.DeliveryInfo.Queue, Exchange: req.msg.DeliveryInfo.Exchange,
		RoutingKey: req.msg.DeliveryInfo.RoutingKey, DeliveryTag: req.msg.DeliveryTag,
		Redelivered: req.msg.Redelivered, Hostname: w.opts.hostname,
	}
	w.runTask(ctx, req, task, func(ctx context.Context, task *Task) (any, error) { return w.finish(ctx, req, task, soft, hard, late) })
}

// finish runs the handler within its time limits and acts on its outcome
// (the core of a task a TaskMiddleware wraps).
func (w *Worker) finish(ctx context.Context, req *request, task *Task, soft, hard time.Duration, late bool) (any, error) {
	tm, cfg := req.tm, req.reg.cfg
	result, err, stack, hardHit := w.callWithLimits(ctx, req, task, soft, hard)
	if req.handoff != nil {
		req.handoff() // the handler is done: its slot may take the next task
	}
	softHit := errors.Is(err, ErrSoftTimeLimitExceeded) || (err != nil && errors.Is(context.Cause(ctx), ErrSoftTimeLimitExceeded))
	bg := context.WithoutCancel(ctx)
	if errors.Is(context.Cause(ctx), ErrTerminated) {
		// revoke --terminate: Celery stores REVOKED ("terminated").
		w.revokeRequest(bg, req, "terminated")
		return result, err
	}

	var rerr *RetryError
	var rej *RejectError
	switch {
	case err != nil && stack == "" && ctx.Err() != nil:
		// Cut off by the shutdown timeout: like a worker lost in Celery, no
		// state is stored; with late acks the message stays unacknowledged
		// and is restored to its queue, with early acks it is gone.
		w.logFor(req).Warn("celery: task cancelled by shutdown", "task", tm.Task, "id", tm.ID, "acks_late", late, "error", err)
	case stack != "":
		w.fail(bg, req, err, stack)
	case err == nil:
		w.succeed(bg, req, result)
	case hardHit:
		// The handler is abandoned (its goroutine ends when it returns);
		// its pool slot is free now, as Celery's pool kills the process.
		w.state.countHardTimeout()
		w.logFor(req).Error("celery: hard time limit exceeded", "task", tm.Task, "id", tm.ID, "limit", hard)
		w.fail(bg, req, &TaskError{Type: "TimeLimitExceeded", Module: "billiard.exceptions", Args: []any{seconds(hard.Seconds())}}, "")
	case softHit:
		w.fail(bg, req, &TaskError{Type: "SoftTimeLimitExceeded", Module: "billiard.exceptions"}, "")
	case errors.As(err, &rerr):
		w.retry(bg, req, rerr)
	case errors.As(err, &rej) && rej.Requeue:
		w.settle(req, settleRequeue)
		w.taskEvent("task-rejected", req, map[string]any{"requeue": true})
	case errors.Is(err, ErrReject):
		w.settle(req, settleReject)
		w.taskEvent("task-rejected", req, map[string]any{"requeue": false})
	case errors.Is(err, ErrIgnore):
		w.settle(req, settleAck)
	case cfg.autoRetry != nil && cfg.autoRetry(err):
		w.retry(bg, req, &RetryError{Err: err, UseRetryDelay: true})
	default:
		w.fail(bg, req, err, "")
	}
	return result, err
}

// call runs the handler, turning a panic into an error and its stack.
func (w *Worker) call(ctx context.Context, h Handler, t *Task) (result any, err error, stack string) {
	defer func() {
		if r := recover(); r != nil {
			err = &TaskError{Type: "Exception", Module: "builtins", Args: []any{fmt.Sprintf("panic: %v", r)}}
			stack = fmt.Sprintf("Go panic in task %s[%s]: %v\n%s", t.Task, t.ID, r, debug.Stack())
		}
	}()
	result, err = h(ctx, t)
	return result, err, ""
}

func (w *Worker) succeed(ctx context.Context, req *request, result any) {
	tm := req.tm
	root := tm.RootID
	if root == "" {
		root = tm.ID
	}
	// Callbacks and the chain's next step are applied before the result is
	// stored, so that the result's children name them (app/trace.py).
	children := w.applyCallbacks(ctx, req, root, result)
	next, err := w.continueChain(ctx, req, result)
	if err != nil {
		// Celery fails the task when applying its chain raises.
		w.logFor(req).Error("celery: continue chain", "task", tm.Task, "id", tm.ID, "error", err)
		w.fail(ctx, req, err, "")
		return
	}
	if next != "" {
		children = append(children, resultTuple(next))
	}
	w.store(ctx, req, &ResultMeta{Status: StateSuccess, Result: result, Children: children}, false)
	if part, ok := req.chordPart(); ok {
		w.chordPartReturn(ctx, part, StateSuccess, result)
	}
	w.settle(req, settleAck)
	if w.taskEventsOn() {
		w.taskEvent("task-succeeded", req, map[string]any{"result": safeRepr(normalize(result), 1024), "runtime": time.Since(req.started).Seconds()})
	}
	if w.log.Enabled(context.Background(), slog.LevelInfo) {
		w.logFor(req).Info("celery: task succeeded", "task", tm.Task, "id", tm.ID)
	}
}

// fail is Celery's mark_as_failure: store FAILURE, return the chord part,
// store the failure for the rest of the chain (so whoever waits on its
// last task is told), then send the errbacks with the task's id.
func (w *Worker) fail(ctx context.Context, req *request, err error, traceback string) {
	tm := req.tm
	exc := exceptionOf(err)
	if traceback == "" {
		traceback = fmt.Sprintf("Traceback (most recent call last):\n  Go handler %s[%s]\n%s\n", tm.Task, tm.ID, exc.Error())
	}
	w.store(ctx, req, &ResultMeta{Status: StateFailure, Result: exc.exceptionDict(), Traceback: traceback}, false)
	if part, ok := req.chordPart(); ok {
		w.chordPartReturn(ctx, part, StateFailure, exc.exceptionDict())
	}
	w.failChain(ctx, req, StateFailure, exc, traceback)
	root := tm.RootID
	if root == "" {
		root = tm.ID
	}
	for _, sig := range tm.Errbacks {
		if _, serr := w.client.applySignature(ctx, sig, []any{tm.ID}, applyOpts{parentID: tm.ID, rootID: root}); serr != nil {
			w.logFor(req).Error("celery: send errback", "task", tm.Task, "id", tm.ID, "errback", sig.Task, "error", serr)
			w.onError(serr)
		}
	}
	// acks_on_failure_or_timeout (True): acknowledge after the failure is
	// stored, with early or late acks alike.
	w.settle(req, settleAck)
	w.taskEvent("task-failed", req, map[string]any{"exception": pyExcRepr(normalizeExc(exc)), "traceback": traceback})
	w.logFor(req).Error("celery: task failed", "task", tm.Task, "id", tm.ID, "error", exc.Error())
}

// retry is Celery's task.retry(): store RETRY, send the task again with
// retries+1 and an eta, acknowledge; past the retry limit, fail instead.
func (w *Worker) retry(ctx context.Context, req *request, r *RetryError) {
	tm, cfg := req.tm, req.reg.cfg
	retries := tm.Retries + 1
	maxRetries := cfg.maxRetries
	if r.MaxRetries != nil {
		maxRetries = *r.MaxRetries
	}
	if maxRetries >= 0 && retries > maxRetries {
		var exc error = r.Err
		if exc == nil {
			exc = &TaskError{Type: "MaxRetriesExceededError", Module: "celery.exceptions", Args: []any{
				fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", tm.Task, tm.ID, argsRepr(tm.Args), kwargsRepr(tm.Kwargs)),
			}}
		}
		// Celery re-raises exc, or raises MaxRetriesExceededError.
		w.fail(ctx, req, exc, "")
		return
	}
	now := time.Now()
	eta := r.ETA
	if eta.IsZero() {
		delay := r.Countdown
		if r.UseRetryDelay {
			f := cfg.retryDelay
			if f == nil {
				f = w.opts.retryDelay
			}
			delay = f(tm.Retries, r.Err)
		}
		eta = now.Add(delay).UTC()
	}
	next := *tm
	next.Retries = retries
	next.ETA = eta
	next.ParentID = tm.ID
	if next.RootID == "" {
		next.RootID = tm.ID
	}
	next.Origin = w.client.origin
	next.ArgsRepr, next.KwargsRepr = "", ""
	if r.Args != nil {
		next.Args = r.Args
	}
	if r.Kwargs != nil {
		next.Kwargs = r.Kwargs
	}
	next.Expiration = nil
	if !tm.Expires.IsZero() {
		exp := max(0, tm.Expires.Sub(now))
		next.Expiration = &exp
	}
	// Same queue: Celery re-sends to delivery_info's routing key when the
	// task came through the default exchange, else to the same exchange.
	di := req.msg.DeliveryInfo
	queue, exchange, rk := di.RoutingKey, "", ""
	switch {
	case r.Queue != "":
		queue = r.Queue
	case di.Exchange != "":
		queue, exchange, rk = "", di.Exchange, di.RoutingKey
	}
	// RETRY is stored before the retry is sent: once sent, the retry may
	// run and store its final state before a later RETRY would overwrite
	// it (the client would then wait forever).
	var result any
	if r.Err != nil {
		result = exceptionOf(r.Err).exceptionDict()
	}
	tb := ""
	if r.Err != nil {
		tb = fmt.Sprintf("Traceback (most recent call last):\n  Go handler %s[%s]\ncelery.exceptions.Retry: %s\n", tm.Task, tm.ID, r.Error())
	}
	w.store(ctx, req, &ResultMeta{Status: StateRetry, Result: result, Traceback: tb, Children: []any{resultTuple(tm.ID)}}, false)
	if err := w.client.Publish(ctx, &next, queue, exchange, w.conn.ExchangeType(di.Exchange), rk); err != nil {
		w.logFor(req).Error("celery: could not send retry", "task", tm.Task, "id", tm.ID, "error", err)
		w.onError(err)
		req.mu.Lock()
		settled := req.settle
		req.mu.Unlock()
		if !settled {
			w.settle(req, settleRequeue) // acks_late: the message runs again later
			return
		}
		w.fail(ctx, req, err, "")
		return
	}
	w.settle(req, settleAck)
	w.taskEvent("task-retried", req, map[string]any{"exception": pyExcRepr(normalizeExc(exceptionOf(r))), "traceback": tb})
	w.logFor(req).Info("celery: task retry", "task", tm.Task, "id", tm.ID, "retries", retries, "eta", formatISO(eta))
}

// resultTuple is AsyncResult.as_tuple() of a child: [[id, null], null].
func resultTuple(id string) any { return []any{[]any{id, nil}, nil} }

// readyQueue holds the requests due to run, in arrival order.
type readyQueue struct {
	mu     sync.Mutex
	items  []*request
	wake   chan struct{}
	closed bool
	done   chan struct{} // closed by close
	// waiting counts goroutines blocked in pop on wake.
	waiting int
	// emptied, if set, is called (without q.mu) when pop takes the last
	// request: the consumers' Hungry turns true (handoff.go).
	emptied func()
}

func newReadyQueue() *readyQueue {
	return &readyQueue{wake: make(chan struct{}), done: make(chan struct{})}
}

func (q *readyQueue) push(r *request) {
	q.mu.Lock()
	q.items = append(q.items, r)
	if q.waiting > 0 { // nobody to wake otherwise: keep the channel
		close(q.wake)
		q.wake = make(chan struct{})
	}
	q.mu.Unlock()
}

// nudge wakes every goroutine waiting in pop, which then returns (nil,
// true) so that it can check whether the pool is shrinking.
func (q *readyQueue) nudge() {
	q.mu.Lock()
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
}

// pop returns the next request, waiting for one; false once closed; (nil,
// true) after a nudge.
func (q *readyQueue) pop() (*request, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		if len(q.items) > 0 {
			r := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			emptied := len(q.items) == 0
			q.mu.Unlock()
			if emptied && q.emptied != nil {
				q.emptied()
			}
			return r, true
		}
		wake := q.wake
		q.waiting++
		q.mu.Unlock()
		<-wake
		q.mu.Lock()
		q.waiting--
		empty := len(q.items) == 0 && !q.closed
		q.mu.Unlock()
		if empty {
			return nil, true
		}
	}
}

func (q *readyQueue) close() {
	q.mu.Lock()
	if !q.closed {
		close(q.done)
	}
	q.closed = true
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
}
