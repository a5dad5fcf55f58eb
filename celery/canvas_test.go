package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proves (bad input): a task whose chain embed is malformed (not a list,
// or holding something that is not a signature) fails with a clear
// ErrInvalidCanvas error stored as its FAILURE, is acknowledged (never
// retried), and the next task on the queue still runs. A chord part whose
// body cannot be read is reported to the error handler, not waited on.
func TestWorkerMalformedCanvas(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	var reported []error
	e.worker(t, registerBasics, WithErrorHandler(func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}))
	ctx := context.Background()
	for i, chain := range []any{"not a list", []any{42}, []any{map[string]any{"args": []any{1}}}} {
		m, err := e.client.NewMessage("tasks.add", []any{1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Chain = chain
		if err := e.client.Publish(ctx, m, e.queue, "", "", ""); err != nil {
			t.Fatal(err)
		}
		_, err = get(t, e.client.AsyncResult(m.ID))
		var te *TaskError
		if !errors.As(err, &te) || !strings.Contains(te.Message(), "invalid canvas") {
			t.Errorf("chain %d (%v): %v, want a failure naming the invalid canvas", i, chain, err)
		}
	}
	// A chord part whose body has no task name.
	idx := 0
	m, err := e.client.NewMessage("tasks.add", []any{1, 2}, nil, WithGroup("g-"+e.queue, idx))
	if err != nil {
		t.Fatal(err)
	}
	m.Chord = map[string]any{"args": []any{}}
	if err := e.backend.SetChordSize(ctx, "g-"+e.queue, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Publish(ctx, m, e.queue, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, e.client.AsyncResult(m.ID)); err != nil || fmt.Sprint(v) != "3" {
		t.Errorf("chord part with a bad body: %v %v", v, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(reported)
		var last error
		if n > 0 {
			last = reported[n-1]
		}
		mu.Unlock()
		if last != nil && errors.Is(last, ErrInvalidCanvas) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bad chord body was not reported: %v", reported)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing else is disturbed.
	if v, err := get(t, e.send(t, "tasks.add", []any{20, 22}, nil)); err != nil || fmt.Sprint(v) != "42" {
		t.Fatalf("a task after the bad ones: %v %v", v, err)
	}
}

// Proves: a chord part that returns while the header's size was never set
// is reported after ChordSizeWait instead of hanging silently.
func TestWorkerChordSizeNeverSet(t *testing.T) {
	old := ChordSizeWait
	ChordSizeWait = 200 * time.Millisecond
	t.Cleanup(func() { ChordSizeWait = old })
	e := newTestEnv(t)
	got := make(chan error, 4)
	e.worker(t, registerBasics, WithErrorHandler(func(err error) { got <- err }))
	m, err := e.client.NewMessage("tasks.add", []any{1, 2}, nil, WithGroup("g2-"+e.queue, 0))
	if err != nil {
		t.Fatal(err)
	}
	m.Chord = NewSignature("tasks.echo", nil, nil).object()
	if err := e.client.Publish(context.Background(), m, e.queue, "", "", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrInvalidCanvas) || !strings.Contains(err.Error(), "never set") {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a chord whose size never arrives was not reported")
	}
}

// Proves: several link callbacks are sent as one group, as Celery's trace
// does: both run with the result, their results carry the new group's id
// and index, and the parent's children hold the group's result tuple.
func TestWorkerCallbacksAsGroup(t *testing.T) {
	e := newTestEnv(t)
	e.worker(t, registerBasics)
	parent := e.send(t, "tasks.add", []any{1, 2}, nil, WithLink(NewSignature("tasks.echo", []any{"a"}, nil), NewSignature("tasks.echo", []any{"b"}, nil)))
	if _, err := get(t, parent); err != nil {
		t.Fatal(err)
	}
	meta, err := e.backend.Get(context.Background(), parent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Children) != 1 {
		t.Fatalf("children %v, want one group tuple", meta.Children)
	}
	g, err := e.backend.resultFromTuple(normalizeTuple(meta.Children[0]))
	if err != nil {
		t.Fatal(err)
	}
	gr, ok := g.(*GroupResult)
	if !ok || len(gr.Results) != 2 {
		t.Fatalf("children[0] = %v", meta.Children[0])
	}
	v, err := gr.Join(context.Background())
	if err != nil || fmt.Sprint(v) != "[map[args:[3 a] kwargs:map[]] map[args:[3 b] kwargs:map[]]]" {
		t.Fatalf("callbacks: %v %v", v, err)
	}
	for i, r := range gr.Results {
		m, _ := e.backend.Get(context.Background(), r.(*AsyncResult).ID)
		if m.GroupID != gr.ID {
			t.Errorf("callback %d: group id %q, want %q", i, m.GroupID, gr.ID)
		}
	}
}

// normalizeTuple turns a decoded children entry into plain []any values.
func normalizeTuple(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}
