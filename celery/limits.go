package celery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Software identity the worker reports (stats, and events' sw_ident,
// sw_ver, sw_sys): this library, not Celery.
const (
	SoftwareIdent = "kombu-go"
	Version       = "0.4.0"
)

// RateLimit sets a task's rate limit in Celery's syntax ("10/s", "100/m",
// "1000/h"; a plain number is per second), as the task's rate_limit
// option; `celery control rate_limit` changes it at run time. A limited
// task waits for its turn holding its prefetch slot (as Celery's token
// bucket does), without holding up other task types or the pool.
func RateLimit(spec string) TaskOption {
	per, err := ParseRateLimit(spec)
	if err != nil {
		panic(err)
	}
	return func(c *taskConfig) { c.rateLimit = per }
}

// limiters keeps one token bucket per rate-limited task name.
type limiters struct {
	mu sync.Mutex
	by map[string]*rate.Limiter
}

func (w *Worker) setRateLimit(task string, perSecond float64) {
	w.limits.mu.Lock()
	defer w.limits.mu.Unlock()
	if w.limits.by == nil {
		w.limits.by = map[string]*rate.Limiter{}
	}
	if perSecond <= 0 {
		delete(w.limits.by, task)
		return
	}
	if l, ok := w.limits.by[task]; ok {
		l.SetLimit(rate.Limit(perSecond))
		return
	}
	w.limits.by[task] = rate.NewLimiter(rate.Limit(perSecond), 1)
}

func (w *Worker) limiter(task string) *rate.Limiter {
	w.limits.mu.Lock()
	defer w.limits.mu.Unlock()
	return w.limits.by[task]
}

// rateDelay returns how long a task must wait for its rate limit (0: run
// now), taking its token.
func (w *Worker) rateDelay(task string) time.Duration {
	l := w.limiter(task)
	if l == nil {
		return 0
	}
	return l.Reserve().Delay()
}

// holdForRate pushes req to the pool after d, keeping its prefetch slot;
// a shutdown in between leaves it unsettled, to be restored.
func (w *Worker) holdForRate(life context.Context, req *request, d time.Duration) {
	t := time.NewTimer(d)
	go func() {
		defer t.Stop()
		select {
		case <-t.C:
			w.ready.push(req)
		case <-life.Done():
			w.settle(req, settleRequeue)
		}
	}()
}

func (w *Worker) controlEvents(method string) any {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch method {
	case "enable_events":
		if w.eventsOn {
			return ok("task events already enabled")
		}
		w.eventsOn = true
		return ok("task events enabled")
	case "disable_events":
		if !w.eventsOn {
			return ok("task events already disabled")
		}
		w.eventsOn = false
		return ok("task events disabled")
	}
	return nil // heartbeat
}

// Time-limit causes. A handler's context is cancelled with
// ErrSoftTimeLimitExceeded as its cause when the soft time limit passes
// (Celery's SoftTimeLimitExceeded: the handler may clean up and return;
// returning that error, or any error, stores SoftTimeLimitExceeded), and
// with ErrTimeLimitExceeded when the hard limit passes: the task is then
// stored as TimeLimitExceeded at once and its pool slot freed, whether or
// not the handler returns.
var (
	ErrSoftTimeLimitExceeded = errors.New("celery: soft time limit exceeded")
	ErrTimeLimitExceeded     = errors.New("celery: hard time limit exceeded")
)

// callWithLimits runs the handler under the soft and hard time limits.
func (w *Worker) callWithLimits(ctx context.Context, req *request, t *Task, soft, hard time.Duration) (result any, err error, stack string, hardHit bool) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if soft > 0 && (hard <= 0 || soft < hard) {
		st := time.AfterFunc(soft, func() {
			w.logFor(req).Warn("celery: soft time limit exceeded", "task", t.Task, "id", t.ID, "limit", soft)
			cancel(ErrSoftTimeLimitExceeded)
		})
		defer st.Stop()
	}
	if hard <= 0 {
		result, err, stack = w.call(runCtx, req.reg.handler, t)
		if err != nil && errors.Is(context.Cause(runCtx), ErrSoftTimeLimitExceeded) && !errors.Is(err, ErrSoftTimeLimitExceeded) {
			err = fmt.Errorf("%w: %w", ErrSoftTimeLimitExceeded, err)
		}
		return result, err, stack, false
	}
	type outcome struct {
		result any
		err    error
		stack  string
	}
	done := make(chan outcome, 1)
	go func() {
		r, e, s := w.call(runCtx, req.reg.handler, t)
		done <- outcome{r, e, s}
	}()
	timer := time.NewTimer(hard)
	defer timer.Stop()
	select {
	case o := <-done:
		if o.err != nil && errors.Is(context.Cause(runCtx), ErrSoftTimeLimitExceeded) && !errors.Is(o.err, ErrSoftTimeLimitExceeded) {
			o.err = fmt.Errorf("%w: %w", ErrSoftTimeLimitExceeded, o.err)
		}
		return o.result, o.err, o.stack, false
	case <-timer.C:
		cancel(ErrTimeLimitExceeded)
		return nil, ErrTimeLimitExceeded, "", true
	}
}

// poolState is the worker's pool of task goroutines.
type poolState struct {
	wg     *sync.WaitGroup
	ctx    context.Context
	size   int // goroutines running or about to
	shrink int // goroutines asked to stop
	// finishing counts tasks finishing after their goroutine handed its
	// slot over (handoff.go).
	finishing int
	// idle holds the wake channels of goroutines that finished a task
	// after a hand-off and wait to take a slot again (handoff.go).
	idle []chan struct{}
}

// growPool starts n more pool goroutines (Celery's pool_grow) and raises
// the prefetch limit by n × the prefetch multiplier, as Celery does.
func (w *Worker) growPool(n int) {
	w.mu.Lock()
	p := w.pool
	if p == nil || n <= 0 {
		w.mu.Unlock()
		return
	}
	p.size += n
	started := p.wg != nil && w.qos != nil
	w.mu.Unlock()
	if started && w.opts.prefetchMult > 0 && p.size > n {
		w.qos.Increment(n * w.opts.prefetchMult)
	}
	for range n {
		p.wg.Add(1)
		go w.poolLoop(p) // handoff.go
	}
}

// shrinkPool stops n pool goroutines once they are idle (Celery's
// pool_shrink); at least one stays.
func (w *Worker) shrinkPool(n int) int {
	w.mu.Lock()
	p := w.pool
	if p == nil {
		w.mu.Unlock()
		return 0
	}
	n = min(n, p.size-p.shrink-1)
	if n <= 0 {
		w.mu.Unlock()
		return 0
	}
	p.shrink += n
	w.mu.Unlock()
	if w.opts.prefetchMult > 0 {
		w.qos.Decrement(n * w.opts.prefetchMult)
	}
	w.ready.nudge()
	return n
}

func (w *Worker) leavePool() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pool.shrink > 0 {
		w.pool.shrink--
		w.pool.size--
		return true
	}
	return false
}

// poolSize returns the pool's size as pool_grow/pool_shrink left it.
func (w *Worker) poolSize() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pool == nil {
		return w.opts.concurrency
	}
	return w.pool.size - w.pool.shrink
}
