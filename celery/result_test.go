package celery

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func miniBackend(t *testing.T, opts ...BackendOption) (*Backend, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	return NewBackend(client, opts...), mr
}

func dateDone(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := parseISO(s, true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Proves: the result meta the Go worker writes for each state is
// byte-identical to what Celery 5.2.6 wrote for the same outcome (key order
// status, result, traceback, children, date_done, parent_id, task_id; the
// exception dict; children tuples; naive date_done).
func TestResultMetaByteIdentical(t *testing.T) {
	cases := map[string]*ResultMeta{
		"result_success.json": {TaskID: "a7ddf057-20b4-4a20-9ad2-e7a5b76319e1", Status: StateSuccess, Result: 15,
			DateDone: dateDone(t, "2026-11-24T20:48:06.547947")},
		"result_success_children.json": {TaskID: "dc1cdbf9-5668-4e0c-b663-7ef877578e98", Status: StateSuccess, Result: 9,
			Children: []any{resultTuple("beebfc9e-58ef-454c-b1ee-587fd8ac1d01")}, DateDone: dateDone(t, "2026-11-24T20:48:06.127595")},
		"result_success_parent.json": {TaskID: "beebfc9e-58ef-454c-b1ee-587fd8ac1d01", Status: StateSuccess, Result: 19,
			ParentID: "dc1cdbf9-5668-4e0c-b663-7ef877578e98", DateDone: dateDone(t, "2026-11-24T20:48:06.131781")},
		"result_revoked.json": {TaskID: "fe8f037b-cd0c-46dc-816d-cf75433c787f", Status: StateRevoked,
			Result: revokedError("expired").exceptionDict(), DateDone: dateDone(t, "2026-11-24T20:48:06.114158")},
		"result_notregistered.json": {TaskID: "05b492fc-8435-442c-b760-c387a609003a", Status: StateFailure,
			Result: notRegisteredError("tasks.nope").exceptionDict(), DateDone: dateDone(t, "2026-11-24T20:48:06.119503")},
	}
	for name, m := range cases {
		got, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if want := captured(t, name); string(got) != string(want) {
			t.Errorf("%s:\n got: %s\nwant: %s", name, got, want)
		}
	}
	// FAILURE and RETRY carry Python tracebacks: compare all but those.
	fail := &ResultMeta{TaskID: "555716ce-ea0f-4676-8e0c-54114e5ad58a", Status: StateFailure,
		Result: NewError("ValueError", "boom").exceptionDict(), DateDone: dateDone(t, "2026-11-24T20:47:41.309771")}
	parsed, err := ParseResultMeta(captured(t, "result_failure.json"))
	if err != nil {
		t.Fatal(err)
	}
	fail.Traceback = parsed.Traceback
	if got, want := mustMarshal(t, fail), captured(t, "result_failure.json"); string(got) != string(want) {
		t.Errorf("failure:\n got: %s\nwant: %s", got, want)
	}
	retry := &ResultMeta{TaskID: "e5ac1fc8-8d71-487f-b4e1-dc28ff3c60da", Status: StateRetry,
		Result: NewError("KeyError", "again").exceptionDict(), Children: []any{resultTuple("e5ac1fc8-8d71-487f-b4e1-dc28ff3c60da")}}
	parsed, err = ParseResultMeta(captured(t, "result_retry.json"))
	if err != nil {
		t.Fatal(err)
	}
	retry.Traceback = parsed.Traceback
	if got, want := mustMarshal(t, retry), captured(t, "result_retry.json"); string(got) != string(want) {
		t.Errorf("retry:\n got: %s\nwant: %s", got, want)
	}
}

func mustMarshal(t *testing.T, m *ResultMeta) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Proves: a FAILURE written by Python reads back as a *TaskError with the
// exception type, module and message, matching ErrTaskFailed; REVOKED
// matches ErrTaskRevoked; NotRegistered matches ErrNotRegistered.
func TestResultMetaErrors(t *testing.T) {
	m, err := ParseResultMeta(captured(t, "result_failure.json"))
	if err != nil {
		t.Fatal(err)
	}
	var te *TaskError
	if err := m.Err(); !errors.As(err, &te) || !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("err %v", err)
	}
	if te.Type != "ValueError" || te.Module != "builtins" || te.Message() != "boom" || te.Error() != "ValueError: boom" || te.TaskID != m.TaskID {
		t.Fatalf("task error %+v", te)
	}
	if m.DateDone.IsZero() {
		t.Fatal("date_done not read")
	}
	rv, _ := ParseResultMeta(captured(t, "result_revoked.json"))
	if err := rv.Err(); !errors.Is(err, ErrTaskRevoked) || errors.Is(err, ErrTaskFailed) {
		t.Fatalf("revoked err %v", err)
	}
	nr, _ := ParseResultMeta(captured(t, "result_notregistered.json"))
	if err := nr.Err(); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("not registered err %v", err)
	}
	ok, _ := ParseResultMeta(captured(t, "result_success.json"))
	var n int
	if ok.Err() != nil || ok.Decode(&n) != nil || n != 15 {
		t.Fatalf("success: %v %d", ok.Err(), n)
	}
}

// Proves: Store writes the key with Celery's one-day expiry and publishes
// the same bytes on the key's channel; a SUCCESS is never overwritten.
func TestBackendStore(t *testing.T) {
	ctx := context.Background()
	b, mr := miniBackend(t)
	sub := b.Client().Subscribe(ctx, b.Key("id1"))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, &ResultMeta{TaskID: "id1", Status: StateSuccess, Result: 3}); err != nil {
		t.Fatal(err)
	}
	if ttl := mr.TTL("celery-task-meta-id1"); ttl != 24*time.Hour {
		t.Fatalf("ttl %v", ttl)
	}
	stored, _ := mr.Get("celery-task-meta-id1")
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload != stored || msg.Channel != "celery-task-meta-id1" {
		t.Fatalf("published %q on %s, stored %q", msg.Payload, msg.Channel, stored)
	}
	// A later FAILURE for the same id (a lost worker) does not replace it.
	if err := b.Store(ctx, &ResultMeta{TaskID: "id1", Status: StateFailure, Result: NewError("X", "y").exceptionDict()}); err != nil {
		t.Fatal(err)
	}
	if again, _ := mr.Get("celery-task-meta-id1"); again != stored {
		t.Fatalf("SUCCESS overwritten: %s", again)
	}
	// Expiry follows the option; zero means no expiry.
	b2 := NewBackend(b.Client(), WithResultExpires(0))
	if err := b2.Store(ctx, &ResultMeta{TaskID: "id2", Status: StateStarted}); err != nil {
		t.Fatal(err)
	}
	if ttl := mr.TTL("celery-task-meta-id2"); ttl != 0 {
		t.Fatalf("ttl %v", ttl)
	}
	if m, _ := b.Get(ctx, "missing"); m.Status != StatePending {
		t.Fatalf("missing task state %s", m.Status)
	}
}

// Proves: Wait returns as soon as the ready state is published (it
// subscribes before reading), ignores non-ready states, and honours ctx.
func TestBackendWait(t *testing.T) {
	ctx := context.Background()
	b, _ := miniBackend(t, WithPollInterval(0))
	done := make(chan *ResultMeta, 1)
	go func() {
		m, err := b.Wait(ctx, "w1")
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	time.Sleep(50 * time.Millisecond)
	if err := b.Store(ctx, &ResultMeta{TaskID: "w1", Status: StateStarted}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-done:
		t.Fatalf("returned on %s", m.Status)
	case <-time.After(50 * time.Millisecond):
	}
	if err := b.Store(ctx, &ResultMeta{TaskID: "w1", Status: StateSuccess, Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-done:
		if m.Status != StateSuccess || m.Result != "ok" {
			t.Fatalf("meta %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}
	// Already stored: returns at once.
	if m, err := b.Wait(ctx, "w1"); err != nil || m.Status != StateSuccess {
		t.Fatalf("%v %v", m, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Wait(short, "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
}

// Proves: a result stored without a notification (published while the
// waiter's pub/sub connection was away) is still found by the poll.
func TestBackendWaitPolls(t *testing.T) {
	ctx := context.Background()
	b, mr := miniBackend(t, WithPollInterval(20*time.Millisecond))
	go func() {
		time.Sleep(50 * time.Millisecond)
		raw, _ := (&ResultMeta{TaskID: "p1", Status: StateSuccess, Result: 1}).Marshal()
		mr.Set("celery-task-meta-p1", string(raw)) // no PUBLISH
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := b.Wait(wctx, "p1")
	if err != nil || m.Status != StateSuccess {
		t.Fatalf("%v %v", m, err)
	}
}

// Proves: AsyncResult.Get returns the value, or the *TaskError for a
// failure; GetInto decodes; State/Ready read without waiting.
func TestAsyncResult(t *testing.T) {
	ctx := context.Background()
	b, _ := miniBackend(t)
	r := NewAsyncResult("a1", b)
	if s, _ := r.State(ctx); s != StatePending {
		t.Fatalf("state %s", s)
	}
	if err := b.Store(ctx, &ResultMeta{TaskID: "a1", Status: StateSuccess, Result: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	if ready, _ := r.Ready(ctx); !ready {
		t.Fatal("not ready")
	}
	var v struct{ N int }
	if err := r.GetInto(ctx, &v); err != nil || v.N != 1 {
		t.Fatalf("%v %+v", err, v)
	}
	f := NewAsyncResult("a2", b)
	if err := b.Store(ctx, &ResultMeta{TaskID: "a2", Status: StateFailure, Result: NewError("ValueError", "bad").exceptionDict()}); err != nil {
		t.Fatal(err)
	}
	_, err := f.Get(ctx)
	var te *TaskError
	if !errors.As(err, &te) || te.Type != "ValueError" || te.Message() != "bad" {
		t.Fatalf("err %v", err)
	}
	if _, err := NewAsyncResult("x", nil).Get(ctx); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("err %v", err)
	}
	if err := f.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := f.State(ctx); s != StatePending {
		t.Fatalf("after forget %s", s)
	}
}

// Proves: ParseArgs/ParseKwargs (for command lines) keep numbers exact and
// refuse the wrong JSON kinds.
func TestParseArgs(t *testing.T) {
	a, err := ParseArgs(`[1, 12345678901234567890, "x"]`)
	if err != nil || a[1] != json.Number("12345678901234567890") {
		t.Fatalf("%v %v", a, err)
	}
	if _, err := ParseArgs(`{"a": 1}`); err == nil {
		t.Fatal("object accepted as args")
	}
	k, err := ParseKwargs(`{"a": [1]}`)
	if err != nil || len(k) != 1 {
		t.Fatalf("%v %v", k, err)
	}
	if _, err := ParseKwargs(`[1]`); err == nil {
		t.Fatal("array accepted as kwargs")
	}
	if a, _ := ParseArgs(""); len(a) != 0 {
		t.Fatal("empty args")
	}
}
