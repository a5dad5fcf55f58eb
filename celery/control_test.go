package celery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// Proves bad input on the worker's mailbox is logged and dropped without
// disturbing it: a body that is not JSON, JSON that is not a command dict,
// a pickled body (refused by the accept list), a command without a method,
// and a shutdown addressed to another node (ignored); afterwards the worker
// still answers ping and runs tasks. Also that a pattern/matcher pair
// selects nodes as kombu's Node.handle_message does.
func TestControlBadInput(t *testing.T) {
	e := newTestEnv(t)
	node := "go-bad@testhost"
	w := e.worker(t, registerBasics, WithHostname(node))
	ctx := context.Background()
	pidbox := kombu.WithExchange(kombu.Exchange{Name: PidboxExchange, Type: kombu.Fanout})
	p := e.conn.Producer()
	for _, m := range []struct {
		body any
		opts []kombu.PublishOption
	}{
		{[]byte("{not json"), []kombu.PublishOption{kombu.WithContentType("application/json", "utf-8")}},
		{[]any{"ping"}, nil},
		{[]byte("\x80\x04K\x01."), []kombu.PublishOption{kombu.WithContentType("application/x-python-serialize", "binary")}},
		{map[string]any{"arguments": map[string]any{}}, nil},
		{map[string]any{"method": "shutdown", "destination": []any{"other@node"}, "arguments": map[string]any{}}, nil},
		{map[string]any{"method": "shutdown", "pattern": "other-*", "matcher": "glob", "arguments": map[string]any{}}, nil},
	} {
		if _, err := p.Publish(ctx, m.body, append([]kombu.PublishOption{pidbox}, m.opts...)...); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-w.Done():
		t.Fatal("the worker stopped on a shutdown for another node")
	default:
	}
	ctl := NewControl(e.conn)
	r, err := ctl.Ping(ctx, WithDestination(node), WithReplyTimeout(2*time.Second))
	if err != nil || len(r) != 1 || fmt.Sprint(r[0].Value) != "map[ok:pong]" {
		t.Fatalf("ping after bad input: %+v %v", r, err)
	}
	r, err = ctl.Ping(ctx, WithPattern("go-*", "glob"), WithReplyTimeout(time.Second))
	if err != nil || len(r) != 1 {
		t.Errorf("ping by glob pattern: %+v %v", r, err)
	}
	r, err = ctl.Ping(ctx, WithPattern("^go-bad@", "pcre"), WithReplyTimeout(time.Second))
	if err != nil || len(r) != 1 {
		t.Errorf("ping by pcre pattern: %+v %v", r, err)
	}
	if v, err := get(t, e.send(t, "tasks.add", []any{2, 5}, nil)); err != nil || fmt.Sprint(v) != "7" {
		t.Errorf("a task after bad control input: %v %v", v, err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "malformed control message dropped") {
		t.Errorf("the malformed control messages were not logged:\n%s", logs)
	}
}

// Proves Control is safe for concurrent use: broadcasts from many
// goroutines on one Control each get their own reply (none is taken by
// another broadcast), and each broadcast's reply queue and binding are
// gone when it returns.
func TestControlConcurrentBroadcasts(t *testing.T) {
	e := newTestEnv(t)
	node := "go-conc@testhost"
	e.worker(t, registerBasics, WithHostname(node))
	ctx := context.Background()
	ctl := NewControl(e.conn)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := []string{"ping", "clock", "registered", "stats"}[i%4]
			r, err := ctl.Broadcast(ctx, cmd, nil, WithDestination(node), WithReplyTimeout(5*time.Second))
			if err != nil || len(r) != 1 || r[0].Hostname != node {
				errs <- fmt.Errorf("%s: %+v %v", cmd, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if rows, err := e.conn.Bindings(ctx, PidboxReplyExchange); err != nil || len(rows) != 0 {
		t.Errorf("reply bindings left behind: %+v %v", rows, err)
	}
}
