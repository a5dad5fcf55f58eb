package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// TestConcurrentRestoreNoDuplicates proves that Go and Python restoring the
// same expired unacked messages at the same time do not duplicate them.
// Kombu 5.2.x watches an unprefixed key in its restore transaction (wire
// spec §10), so with a global_keyprefix only the unacked_mutex keeps two
// restorers apart: Go must take and honour that lock as Kombu does (SET NX
// PX, token-checked release, §9.4). A Python consumer takes 50 messages and
// dies; then a Go consumer and a Python consumer, both with
// visibility_timeout=1 and both restoring, start together. Every message
// must be delivered exactly once.
func TestConcurrentRestoreNoDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := "restore-race-" + uuid.NewString()[:8]
	const n = 50
	conn := e.dial("visibility_timeout", "1", "unacked_restore_interval", "0.1")
	for i := range n {
		goPublishOne(t, conn, q, map[string]any{"i": i}, kombu.WithHeader("id", fmt.Sprintf("m%d", i)))
	}
	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
		"count": n, "action": "none", "timeout": 20,
	}, 30*time.Second)
	if len(evs) != n+1 {
		t.Fatalf("dying Python consumer took %d messages, want %d", len(evs)-1, n)
	}
	if h, _ := e.unackedCount(); h != n {
		t.Fatalf("%d unacked records, want %d", h, n)
	}
	time.Sleep(1200 * time.Millisecond)

	py := e.startPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions("visibility_timeout", 1), "queues": []any{map[string]any{"name": q}},
		"until_stop": true, "timeout": 60, "restore_visible": true, "wait_go": true,
	})
	py.expect("ready", 20*time.Second)
	// Python restores now, and so does Go.
	py.send("go")
	gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil)
	var pyIDs []string
	deadline := time.Now().Add(30 * time.Second)
	for len(pyIDs)+len(gc.messages()) < n && time.Now().Before(deadline) {
		select {
		case ev, ok := <-py.events:
			if !ok {
				t.Fatalf("Python consumer ended: %v\n%s", py.err, py.stderr)
			}
			if ev.kind() == "message" {
				pyIDs = append(pyIDs, parsePyMsg(t, ev).header("id"))
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(1500 * time.Millisecond) // more restore rounds on both sides
	py.send("stop")
	for _, m := range py.collect(20 * time.Second) {
		pyIDs = append(pyIDs, m.header("id"))
	}
	py.wait(10 * time.Second)
	gc.stop()
	gc.checkNoErrors()
	count := map[string]int{}
	for _, id := range pyIDs {
		count[id]++
	}
	for _, g := range gc.messages() {
		count[g.header("id")]++
		if !g.m.Redelivered {
			t.Errorf("%s: Go got it with Redelivered false", g.header("id"))
		}
	}
	for i := range n {
		if c := count[fmt.Sprintf("m%d", i)]; c != 1 {
			t.Errorf("m%d delivered %d times after concurrent restores, want once", i, c)
		}
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}
	if l := e.queueLen(q); l != 0 {
		t.Errorf("queue still holds %d messages", l)
	}
	t.Logf("concurrent restore: Go consumed %d, Python %d of %d", len(gc.messages()), len(pyIDs), n)
}

// TestGoHonoursKombuRestoreMutex proves that Go's visibility restore waits
// while a Kombu restorer holds unacked_mutex (SET token NX PX, wire spec
// §9.4), restores once the lock is gone, and releases its own lock after.
func TestGoHonoursKombuRestoreMutex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	q := "restore-mutex-" + uuid.NewString()[:8]
	conn := e.dial("visibility_timeout", "1", "unacked_restore_interval", "0.1")
	tag := goPublishOne(t, conn, q, map[string]any{"mutex": true})
	e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
		"count": 1, "action": "die", "timeout": 20,
	}, 30*time.Second)
	// A Python restorer holds the lock (redis-py's token: uuid1().hex).
	mutex := e.key("unacked_mutex")
	if ok, err := e.rdb.SetNX(ctx, mutex, "0123456789abcdef0123456789abcdef", 300*time.Second).Result(); err != nil || !ok {
		t.Fatalf("SET NX %s: %v %v", mutex, ok, err)
	}
	time.Sleep(1100 * time.Millisecond) // the record has expired
	gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil)
	time.Sleep(2 * time.Second)
	if n := len(gc.messages()); n != 0 {
		t.Fatalf("Go restored %d messages while Kombu's unacked_mutex was held", n)
	}
	if h, _ := e.unackedCount(); h != 1 {
		t.Fatalf("unacked record gone while the mutex was held (%d left)", h)
	}
	if err := e.rdb.Del(ctx, mutex).Err(); err != nil {
		t.Fatal(err)
	}
	gc.waitFor(1, 10*time.Second)
	gc.stop()
	gc.checkNoErrors()
	if g := gc.messages()[0]; g.m.DeliveryTag != tag || !g.m.Redelivered {
		t.Errorf("Go got tag %s redelivered=%v, want %s redelivered", g.m.DeliveryTag, g.m.Redelivered, tag)
	}
	if n, err := e.rdb.Exists(ctx, mutex).Result(); err != nil || n != 0 {
		t.Errorf("Go left unacked_mutex behind after restoring (%d, %v)", n, err)
	}
}
