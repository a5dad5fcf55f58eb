package celery

import (
	"context"
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
