package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Proves the time limits: past the soft limit the handler's context is
// cancelled with ErrSoftTimeLimitExceeded as its cause, and returning
// stores Celery's SoftTimeLimitExceeded (billiard.exceptions); past the
// hard limit a handler that ignores its context is abandoned: the task is
// stored as TimeLimitExceeded at once and, with one pool slot, the next
// task runs while the stuck handler is still running.
func TestWorkerSoftAndHardTimeLimits(t *testing.T) {
	e := newTestEnv(t)
	causes := make(chan error, 1)
	stuck := make(chan struct{})
	defer close(stuck)
	e.worker(t, func(w *Worker) {
		registerBasics(w)
		w.Register("tasks.polite", func(ctx context.Context, _ *Task) (any, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, context.Cause(ctx)
		})
		w.Register("tasks.stuck", func(ctx context.Context, _ *Task) (any, error) {
			<-stuck // ignores its context
			return "too late", nil
		})
	}, WithConcurrency(1))
	var te *TaskError
	start := time.Now()
	if _, err := get(t, e.send(t, "tasks.polite", nil, nil, WithTimeLimit(0, 200*time.Millisecond))); !errors.As(err, &te) ||
		te.Type != "SoftTimeLimitExceeded" || te.Module != "billiard.exceptions" {
		t.Fatalf("soft limit: %v", err)
	}
	if c := <-causes; !errors.Is(c, ErrSoftTimeLimitExceeded) {
		t.Fatalf("soft limit cause %v", c)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("soft limit took %v", d)
	}
	start = time.Now()
	if _, err := get(t, e.send(t, "tasks.stuck", nil, nil, WithTimeLimit(300*time.Millisecond, 0))); !errors.As(err, &te) ||
		te.Type != "TimeLimitExceeded" || te.Module != "billiard.exceptions" {
		t.Fatalf("hard limit: %v", err)
	}
	if v, err := get(t, e.send(t, "tasks.add", []any{1, 2}, nil)); err != nil || fmt.Sprint(v) != "3" {
		t.Fatalf("the next task after a stuck one: %v %v", v, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hard limit freed the slot after %v", d)
	}
}

// Proves the rate limit: with RateLimit("5/s"), 8 tasks of that name take
// at least about a second (the token bucket lets one through every 200
// ms; the bound is generous), while a task of another name sent after
// them is not held up behind them; the rate_limit command changes it at
// run time and ParseRateLimit reads Celery's syntax.
func TestWorkerRateLimit(t *testing.T) {
	for in, want := range map[string]float64{"10/s": 10, "120/m": 2, "3600/h": 1, "4": 4, "": 0, "0": 0} {
		if got, err := ParseRateLimit(in); err != nil || got != want {
			t.Errorf("ParseRateLimit(%q) = %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseRateLimit("ten/s"); err == nil {
		t.Error("ParseRateLimit accepted ten/s")
	}
	e := newTestEnv(t)
	w := e.worker(t, func(w *Worker) {
		registerBasics(w)
		w.Register("tasks.limited", addHandler, RateLimit("5/s"))
	}, WithConcurrency(2), WithPrefetchMultiplier(8))
	start := time.Now()
	var rs []*AsyncResult
	for i := range 8 {
		rs = append(rs, e.send(t, "tasks.limited", []any{i, 0}, nil))
	}
	other := e.send(t, "tasks.add", []any{1, 1}, nil)
	if _, err := get(t, other); err != nil {
		t.Fatal(err)
	}
	otherAt := time.Since(start)
	for _, r := range rs {
		if _, err := get(t, r); err != nil {
			t.Fatal(err)
		}
	}
	all := time.Since(start)
	if all < 1200*time.Millisecond {
		t.Errorf("8 tasks at 5/s took %v, want >= ~1.4 s", all)
	}
	if otherAt >= all {
		t.Errorf("another task type waited behind the limited ones (%v of %v)", otherAt, all)
	}
	// Celery answers by the argument's truth: a number 0 or None says
	// "disabled", the string "0" (what the command line sends) "new rate
	// limit set"; both disable the limit.
	if r := w.controlRateLimit("tasks.limited", json.Number("0")); fmt.Sprint(r) != "map[ok:rate limit disabled successfully]" || w.limiter("tasks.limited") != nil {
		t.Errorf("rate_limit 0: %v", r)
	}
	if r := w.controlRateLimit("tasks.limited", "0"); fmt.Sprint(r) != "map[ok:new rate limit set successfully]" || w.limiter("tasks.limited") != nil {
		t.Errorf("rate_limit \"0\": %v", r)
	}
	if r := w.controlRateLimit("tasks.limited", nil); fmt.Sprint(r) != "map[ok:rate limit disabled successfully]" {
		t.Errorf("rate_limit None: %v", r)
	}
	if r := w.controlRateLimit("tasks.nope", "1/s"); fmt.Sprint(r) != "map[error:unknown task]" {
		t.Errorf("rate_limit of an unknown task: %v", r)
	}
	start = time.Now()
	for i := range 8 {
		rs[i] = e.send(t, "tasks.limited", []any{i, 0}, nil)
	}
	for _, r := range rs {
		if _, err := get(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("with the limit removed 8 tasks took %v", d)
	}
}

// Proves pool_grow and pool_shrink: a worker of concurrency 1 runs two
// blocking tasks at once after pool_grow 1 (stats then reports
// max-concurrency 2), and one at a time again after pool_shrink 1;
// autoscale answers Celery's error.
func TestWorkerPoolGrowShrink(t *testing.T) {
	e := newTestEnv(t)
	running := make(chan string, 4)
	release := make(chan struct{}, 4)
	w := e.worker(t, func(w *Worker) {
		registerBasics(w)
		w.Register("tasks.block", func(ctx context.Context, t *Task) (any, error) {
			running <- t.ID
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		})
	}, WithConcurrency(1), WithPrefetchMultiplier(4))
	concurrentPair := func() bool {
		a, b := e.send(t, "tasks.block", nil, nil), e.send(t, "tasks.block", nil, nil)
		<-running
		second := false
		select {
		case <-running:
			second = true
		case <-time.After(500 * time.Millisecond):
		}
		release <- struct{}{}
		if !second {
			<-running
		}
		release <- struct{}{}
		_, _ = get(t, a)
		_, _ = get(t, b)
		return second
	}
	if concurrentPair() {
		t.Fatal("two tasks ran at once with concurrency 1")
	}
	if r, _ := w.controlCommand(context.Background(), "pool_grow", map[string]any{"n": 1}); fmt.Sprint(r) != "map[ok:pool will grow]" {
		t.Fatalf("pool_grow: %v", r)
	}
	if w.stats()["pool"].(map[string]any)["max-concurrency"] != 2 {
		t.Errorf("stats after pool_grow: %v", w.stats()["pool"])
	}
	if !concurrentPair() {
		t.Fatal("after pool_grow 1 two tasks did not run at once")
	}
	if r, _ := w.controlCommand(context.Background(), "pool_shrink", map[string]any{"n": 1}); fmt.Sprint(r) != "map[ok:pool will shrink]" {
		t.Fatalf("pool_shrink: %v", r)
	}
	time.Sleep(100 * time.Millisecond)
	if concurrentPair() {
		t.Fatal("after pool_shrink 1 two tasks ran at once")
	}
	if r, _ := w.controlCommand(context.Background(), "autoscale", map[string]any{"max": 4}); fmt.Sprint(r) != "map[error:ValueError('Autoscale not enabled')]" {
		t.Errorf("autoscale: %v", r)
	}
}
