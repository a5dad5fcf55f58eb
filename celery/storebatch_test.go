package celery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeHook holds the first pipeline of a Store until released and records
// the Store pipelines;
// fail, if set, decides whether a pipeline fails (before it is sent).
type pipeHook struct {
	mu      sync.Mutex
	held    bool
	release chan struct{}
	pipes   [][]string // the command names of each pipeline sent
	fail    func(cmds []redis.Cmder) error
}

func newPipeHook() *pipeHook { return &pipeHook{release: make(chan struct{})} }

func (h *pipeHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *pipeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if n := cmds[0].Name(); n != "get" && n != "multi" {
			return next(ctx, cmds) // connection set-up, not a Store
		}
		h.mu.Lock()
		first := !h.held
		h.held = true
		var names []string
		for _, c := range cmds {
			names = append(names, c.Name())
		}
		h.pipes = append(h.pipes, names)
		fail := h.fail
		h.mu.Unlock()
		if first {
			<-h.release
		}
		if fail != nil {
			if err := fail(cmds); err != nil {
				for _, c := range cmds {
					c.SetErr(err)
				}
				return err
			}
		}
		return next(ctx, cmds)
	}
}

func (h *pipeHook) sent() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]string(nil), h.pipes...)
}

// queued waits until n Store calls wait in b's batch queue.
func queued(t *testing.T, b *Backend, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.batch.mu.Lock()
		got := len(b.batch.queue)
		b.batch.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Store calls queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Proves: Store calls made while one is in flight go together in one
// pipeline of GETs and one MULTI/EXEC, in the order they were made: every
// result is stored and published, a task's successive states are written
// in order (its channel sees STARTED then SUCCESS), and a FAILURE queued
// after a SUCCESS of the same task in the same batch is left out, as
// Celery's GET guard would leave it out had the calls gone one by one.
func TestBackendStoreGroupCommit(t *testing.T) {
	ctx := context.Background()
	b, mr := miniBackend(t)
	hook := newPipeHook()
	b.Client().(*redis.Client).AddHook(hook)
	sub := b.Client().Subscribe(ctx, b.Key("dup"))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 13)
	store := func(i int, m *ResultMeta) {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.Store(ctx, m) }()
	}
	store(0, &ResultMeta{TaskID: "first", Status: StateSuccess, Result: 0}) // held in flight
	waitFor(t, func() bool { return len(hook.sent()) == 1 })
	for i := 1; i <= 10; i++ {
		store(i, &ResultMeta{TaskID: fmt.Sprintf("t%d", i), Status: StateSuccess, Result: i})
		queued(t, b, i)
	}
	store(11, &ResultMeta{TaskID: "dup", Status: StateStarted})
	queued(t, b, 11)
	store(12, &ResultMeta{TaskID: "dup", Status: StateSuccess, Result: "done"})
	queued(t, b, 12)
	wg.Add(1)
	var lateErr error
	go func() {
		defer wg.Done()
		lateErr = b.Store(ctx, &ResultMeta{TaskID: "dup", Status: StateFailure, Result: NewError("X", "lost worker").exceptionDict()})
	}()
	queued(t, b, 13)
	close(hook.release)
	wg.Wait()
	for i, err := range append(errs, lateErr) {
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	for i := 1; i <= 10; i++ {
		m, err := b.Get(ctx, fmt.Sprintf("t%d", i))
		if err != nil || m.Status != StateSuccess || fmt.Sprint(m.Result) != fmt.Sprint(i) {
			t.Fatalf("t%d: %+v %v", i, m, err)
		}
		if ttl := mr.TTL(b.Key(fmt.Sprintf("t%d", i))); ttl != DefaultResultExpires {
			t.Fatalf("t%d ttl %v", i, ttl)
		}
	}
	if m, _ := b.Get(ctx, "dup"); m.Status != StateSuccess || m.Result != "done" {
		t.Fatalf("dup: %+v", m)
	}
	for _, want := range []State{StateStarted, StateSuccess} {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := ParseResultMeta([]byte(msg.Payload)); m == nil || m.Status != want {
			t.Fatalf("dup published %s, want %s", msg.Payload, want)
		}
	}
	// The lone first call, then the 13 queued ones in one GET pipeline and
	// one MULTI/EXEC (12 of them written).
	pipes := hook.sent()
	if len(pipes) != 4 {
		t.Fatalf("%d pipelines, want 4: %v", len(pipes), pipes)
	}
	if n := strings.Count(strings.Join(pipes[2], " "), "get"); n != 13 {
		t.Fatalf("batch GET pipeline %v", pipes[2])
	}
	if n := strings.Count(strings.Join(pipes[3], " "), "setex"); n != 12 {
		t.Fatalf("batch MULTI %v", pipes[3])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// Proves: errors in a batch reach the calls they belong to: a key whose
// GET fails (WRONGTYPE) or holds a meta that does not parse fails its own
// call only, the others of the batch are stored; a MULTI/EXEC that fails
// fails every call it carried; a caller whose context ends while queued
// gets the context's error and nothing of its call is written.
func TestBackendStoreBatchErrors(t *testing.T) {
	ctx := context.Background()
	b, mr := miniBackend(t)
	hook := newPipeHook()
	b.Client().(*redis.Client).AddHook(hook)
	mr.HSet(b.Key("hash"), "f", "v")
	_ = mr.Set(b.Key("garbage"), "{not json")

	run := func(ms ...*ResultMeta) []error {
		errs := make([]error, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = b.Store(ctx, m) }()
			if i == 0 {
				waitFor(t, func() bool { return len(hook.sent()) > 0 })
			} else {
				queued(t, b, i)
			}
		}
		close(hook.release)
		wg.Wait()
		return errs
	}
	errs := run(&ResultMeta{TaskID: "lead", Status: StateSuccess},
		&ResultMeta{TaskID: "ok1", Status: StateSuccess}, &ResultMeta{TaskID: "hash", Status: StateSuccess},
		&ResultMeta{TaskID: "garbage", Status: StateSuccess}, &ResultMeta{TaskID: "ok2", Status: StateSuccess})
	if errs[0] != nil || errs[1] != nil || errs[4] != nil {
		t.Fatalf("good calls failed: %v", errs)
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "WRONGTYPE") || !strings.Contains(errs[2].Error(), "hash") {
		t.Fatalf("WRONGTYPE call: %v", errs[2])
	}
	if errs[3] == nil || !strings.Contains(errs[3].Error(), "result meta") {
		t.Fatalf("garbage call: %v", errs[3])
	}
	for _, id := range []string{"ok1", "ok2"} {
		if m, _ := b.Get(ctx, id); m.Status != StateSuccess {
			t.Fatalf("%s not stored: %+v", id, m)
		}
	}

	// A failing MULTI/EXEC fails each of its calls.
	boom := &net.OpError{Op: "write", Err: errors.New("connection reset")}
	hook2 := newPipeHook()
	hook2.fail = func(cmds []redis.Cmder) error {
		if cmds[0].Name() == "multi" {
			return boom
		}
		return nil
	}
	b2, _ := miniBackend(t)
	b2.Client().(*redis.Client).AddHook(hook2)
	b, hook = b2, hook2
	errs = run(&ResultMeta{TaskID: "a", Status: StateSuccess}, &ResultMeta{TaskID: "b", Status: StateSuccess},
		&ResultMeta{TaskID: "c", Status: StateFailure})
	for i, err := range errs {
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), []string{"a", "b", "c"}[i]) {
			t.Fatalf("call %d: %v", i, err)
		}
	}

	// A caller whose context ends while queued writes nothing.
	b3, mr3 := miniBackend(t)
	hook3 := newPipeHook()
	b3.Client().(*redis.Client).AddHook(hook3)
	done := make(chan error, 1)
	go func() { done <- b3.Store(ctx, &ResultMeta{TaskID: "lead", Status: StateSuccess}) }()
	waitFor(t, func() bool { return len(hook3.sent()) > 0 })
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { cancelled <- b3.Store(cctx, &ResultMeta{TaskID: "gone", Status: StateSuccess}) }()
	queued(t, b3, 1)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	close(hook3.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if mr3.Exists(b3.Key("gone")) {
		t.Fatal("a cancelled queued call was written")
	}
}

// Proves: when a batched store fails, each task of the batch goes through
// the worker's store error path (logged and passed to WithErrorHandler
// with its own task id).
func TestWorkerBatchedStoreFailure(t *testing.T) {
	e := newTestEnv(t)
	hook := newPipeHook()
	boom := errors.New("backend down")
	hook.fail = func(cmds []redis.Cmder) error {
		if cmds[0].Name() == "multi" {
			return boom
		}
		return nil
	}
	e.backend.Client().(*redis.Client).AddHook(hook)
	var mu sync.Mutex
	failed := map[string]bool{}
	e.worker(t, func(w *Worker) {
		w.Register("tasks.noop", func(context.Context, *Task) (any, error) { return "x", nil })
	}, WithConcurrency(4), WithErrorHandler(func(err error) {
		if errors.Is(err, boom) {
			mu.Lock()
			for _, f := range strings.Fields(err.Error()) {
				failed[strings.TrimSuffix(f, ":")] = true
			}
			mu.Unlock()
		}
	}))
	var ids []string
	for range 4 {
		ids = append(ids, e.send(t, "tasks.noop", nil, nil).ID)
	}
	waitFor(t, func() bool { return len(hook.sent()) > 0 })
	queued(t, e.backend, 3) // the other three tasks' stores wait for one batch
	close(hook.release)
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if !failed[id] {
				return false
			}
		}
		return true
	})
	if n := strings.Count(e.logs.String(), `msg="celery: store result"`); n != 4 {
		t.Fatalf("%d store errors logged, want 4:\n%s", n, e.logs.String())
	}
	pipes := hook.sent()
	if len(pipes) != 4 || len(pipes[2]) != 3 {
		t.Fatalf("pipelines %v, want the lone store (GET, MULTI) then one batch of 3 GETs and its MULTI", pipes)
	}
}

// Proves: the errors of a slot in migration or moved (which make a
// batched store fall back to one MULTI per call) are told from others.
func TestSlotMoving(t *testing.T) {
	for msg, want := range map[string]bool{
		"TRYAGAIN Multiple keys request during rehashing of slot":     true,
		"ASK 866 127.0.0.1:7001":                                      true,
		"MOVED 866 127.0.0.1:7001":                                    true,
		"CROSSSLOT Keys in request don't hash to the same slot":       true,
		"WRONGTYPE Operation against a key holding the wrong kind":    false,
		"EXECABORT Transaction discarded because of previous errors.": false,
	} {
		if got := slotMoving(errors.New(msg)); got != want {
			t.Errorf("slotMoving(%q) = %v, want %v", msg, got, want)
		}
	}
}
