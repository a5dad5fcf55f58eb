package interop

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// TestCompetingConsumers proves that a Go consumer and a Python Kombu
// consumer can share one queue: while Go and Python publish concurrently,
// with mixed priorities, both consume at once (Go waits with its BLMOVE
// watcher, Python with BRPOP) and every message is delivered exactly once,
// to one of them, and acked; nothing is left in the lists or the unacked
// records.
func TestCompetingConsumers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := "compete-" + uuid.NewString()[:8]
	const perSide = 100
	conn := e.dial()

	py := e.startPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
		"until_stop": true, "timeout": 60,
	})
	py.expect("ready", 20*time.Second)
	gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil, kombu.WithConcurrency(2))

	var pyMsgs []any
	for i := range perSide {
		pyMsgs = append(pyMsgs, map[string]any{
			"routing_key": q, "priority": i % 10,
			"body":    map[string]any{"json": map[string]any{"from": "python", "i": i}},
			"headers": map[string]any{"id": fmt.Sprintf("py-%d", i)},
		})
	}
	pub := e.startPy("publish", map[string]any{"url": e.url, "options": e.pyOptions(), "messages": pyMsgs})
	prod := conn.Producer()
	for i := range perSide {
		_, err := prod.Publish(t.Context(), map[string]any{"from": "go", "i": i},
			kombu.WithRoutingKey(q), kombu.WithPriority(i%10), kombu.WithHeader("id", fmt.Sprintf("go-%d", i)))
		if err != nil {
			t.Fatalf("Go publish: %v", err)
		}
	}
	pub.expect("published", 30*time.Second)
	pub.expect("done", 10*time.Second)
	pub.wait(10 * time.Second)

	// Read Python's deliveries as they come until both sides have all.
	var pyGot []string
	deadline := time.Now().Add(30 * time.Second)
	for len(pyGot)+len(gc.messages()) < 2*perSide && time.Now().Before(deadline) {
		select {
		case ev, ok := <-py.events:
			if !ok {
				t.Fatalf("Python consumer ended: %v\n%s", py.err, py.stderr)
			}
			if ev.kind() == "message" {
				pyGot = append(pyGot, parsePyMsg(t, ev).header("id"))
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond) // let a duplicate show up, if any
	py.send("stop")
	for _, m := range py.collect(20 * time.Second) {
		pyGot = append(pyGot, m.header("id"))
	}
	py.wait(10 * time.Second)
	gc.stop()
	gc.checkNoErrors()

	count := map[string]int{}
	for _, id := range pyGot {
		count[id]++
	}
	var goGot []string
	for _, g := range gc.messages() {
		id := g.header("id")
		goGot = append(goGot, id)
		count[id]++
	}
	for _, side := range []string{"go", "py"} {
		for i := range perSide {
			id := fmt.Sprintf("%s-%d", side, i)
			if count[id] != 1 {
				t.Errorf("message %s delivered %d times, want once", id, count[id])
			}
		}
	}
	if len(count) != 2*perSide {
		ids := slices.Sorted(func(yield func(string) bool) {
			for k := range count {
				if !yield(k) {
					return
				}
			}
		})
		t.Errorf("unexpected message ids: %v", ids)
	}
	if n := e.queueLen(q); n != 0 {
		t.Errorf("queue still holds %d messages", n)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}
	t.Logf("competing consumers: Go took %d, Python took %d of %d messages", len(goGot), len(pyGot), 2*perSide)
}
