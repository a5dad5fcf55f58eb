package interop

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// TestPythonDiesGoRestoresInOrder proves that when a Python consumer dies
// holding several unacked messages, a Go consumer's visibility restore
// gives them all back in their original order (Kombu restores newest first
// with RPUSH, so the oldest is consumed first again: wire spec §9.4), and
// re-routes a message that came through a topic exchange to its queue
// through the exchange, at its own priority.
func TestPythonDiesGoRestoresInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := uuid.NewString()[:8]
	q := "order-py-" + id
	ex := kombu.Exchange{Name: "order-ex-" + id, Type: kombu.Topic}
	queue := kombu.Queue{Name: q, Bindings: []kombu.Binding{{Exchange: ex, RoutingKey: "order.#"}}}
	conn := e.dial("visibility_timeout", "1", "unacked_restore_interval", "0.2")
	if _, err := conn.DeclareQueue(t.Context(), queue); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 3 {
		goPublishOne(t, conn, q, map[string]any{"i": i}, kombu.WithHeader("id", fmt.Sprintf("m%d", i)))
		want = append(want, fmt.Sprintf("m%d", i))
	}
	if _, err := conn.Producer().Publish(t.Context(), map[string]any{"topic": true}, kombu.WithExchange(ex),
		kombu.WithRoutingKey("order.x"), kombu.WithPriority(6), kombu.WithHeader("id", "topic")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "topic")

	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions(), "count": 4, "action": "none", "timeout": 20, "prefetch": 4,
		"queues": []any{map[string]any{"name": q, "bindings": []any{map[string]any{"exchange": pyExchange(ex), "routing_key": "order.#"}}}},
	}, 30*time.Second)
	var took []string
	for _, ev := range evs {
		if ev.kind() == "message" {
			took = append(took, parsePyMsg(t, ev).header("id"))
		}
	}
	if !slices.Equal(took, want) {
		t.Fatalf("Python took %v, want %v", took, want)
	}
	if h, _ := e.unackedCount(); h != 4 {
		t.Fatalf("Python left %d unacked records, want 4", h)
	}

	gc := startGoConsumer(t, conn, []kombu.Queue{queue}, nil, kombu.WithPrefetch(1))
	gc.waitFor(4, 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	gc.stop()
	gc.checkNoErrors()
	var got []string
	for _, g := range gc.messages() {
		got = append(got, g.header("id"))
		if !g.m.Redelivered {
			t.Errorf("%s: Redelivered false after a restore", g.header("id"))
		}
		if g.header("id") == "topic" && (g.m.DeliveryInfo.Exchange != ex.Name || g.m.DeliveryInfo.RoutingKey != "order.x" || g.m.Properties.Priority != 6) {
			t.Errorf("restored topic message: delivery info %+v, priority %d", g.m.DeliveryInfo, g.m.Properties.Priority)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Go consumed the restored messages as %v, want the original order %v", got, want)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}
	if n := e.queueLen(q); n != 0 {
		t.Errorf("queue still holds %d messages", n)
	}
}

// TestGoKilledPythonRestoresInOrder proves the reverse: a Go consumer with
// prefetch 3 takes three messages (recording each as unacked, with
// increasing receive-time scores), is killed with SIGKILL, and Python
// Kombu's restore_visible gives all three back in their original order.
func TestGoKilledPythonRestoresInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := "order-go-" + uuid.NewString()[:8]
	conn := e.dial()
	var want []string
	for i := range 3 {
		goPublishOne(t, conn, q, map[string]any{"i": i}, kombu.WithHeader("id", fmt.Sprintf("m%d", i)))
		want = append(want, fmt.Sprintf("m%d", i))
	}
	_, kill := e.startHangingGoConsumer(q, 3)
	deadline := time.Now().Add(10 * time.Second)
	for h, _ := e.unackedCount(); h < 3 && time.Now().Before(deadline); h, _ = e.unackedCount() {
		time.Sleep(20 * time.Millisecond)
	}
	zs, err := e.rdb.ZRangeWithScores(context.Background(), e.key("unacked_index"), 0, -1).Result()
	if err != nil || len(zs) != 3 {
		t.Fatalf("Go consumer recorded %v (%v), want 3 unacked messages", zs, err)
	}
	killedAt := time.Now()
	kill()
	time.Sleep(time.Until(killedAt.Add(1200 * time.Millisecond)))

	evs := e.runPy("consume", map[string]any{
		"url": e.url, "options": e.pyOptions("visibility_timeout", 1), "queues": []any{map[string]any{"name": q}},
		"count": 3, "timeout": 20, "restore_visible": true, "prefetch": 1,
	}, 40*time.Second)
	var got []string
	for _, ev := range evs {
		if ev.kind() == "message" {
			m := parsePyMsg(t, ev)
			got = append(got, m.header("id"))
			if !m.Redelivered {
				t.Errorf("%s: not redelivered", m.header("id"))
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Python consumed the restored messages as %v, want the original order %v (Go's unacked_index: %v)", got, want, zs)
	}
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}
}
