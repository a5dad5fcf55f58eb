package interop

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// TestOtherDatabase proves both sides agree on a database other than 0:
// queue lists live in that database, and fanout channels carry its number
// ("/5." prefix, wire spec §2 and §6.3), in both directions.
func TestOtherDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t).withDB(5)
	id := uuid.NewString()[:8]
	ex := kombu.Exchange{Name: "db5-fan-" + id, Type: kombu.Fanout}
	qF := kombu.Queue{Name: "db5-qf-" + id, Bindings: []kombu.Binding{{Exchange: ex}}}
	qL := kombu.Queue{Name: "db5-ql-" + id}
	pyQueues := []any{
		map[string]any{"name": qF.Name, "bindings": []any{map[string]any{"exchange": pyExchange(ex), "routing_key": ""}}},
		map[string]any{"name": qL.Name},
	}
	conn := e.dial()
	if e.fanoutChannel(ex.Name, "") != e.prefix+"/5."+ex.Name {
		t.Fatalf("fanout channel %q", e.fanoutChannel(ex.Name, ""))
	}

	t.Run("GoToPython", func(t *testing.T) {
		py := e.startPy("consume", map[string]any{"url": e.url, "options": e.pyOptions(), "queues": pyQueues, "count": 2, "timeout": 30, "wait_go": true})
		py.expect("ready", 20*time.Second)
		goPublishOne(t, conn, qL.Name, map[string]any{"list": 5})
		if n, err := e.rdb.LLen(context.Background(), e.key(qL.Name)).Result(); err != nil || n != 1 {
			t.Errorf("LLEN %s in db 5: %d %v, want 1", qL.Name, n, err)
		}
		py.send("go")
		e.waitSubscribed(e.fanoutChannel(ex.Name, ""))
		if _, err := conn.Producer(kombu.WithExchange(ex)).Publish(t.Context(), map[string]any{"fan": 5}); err != nil {
			t.Fatal(err)
		}
		got := py.collect(30 * time.Second)
		py.wait(10 * time.Second)
		queues := map[string]bool{}
		for _, m := range got {
			queues[m.Queue] = true
		}
		if len(got) != 2 || !queues[qF.Name] || !queues[qL.Name] {
			t.Errorf("Python got %d messages from %v, want one from each of %s and %s", len(got), queues, qF.Name, qL.Name)
		}
	})

	t.Run("PythonToGo", func(t *testing.T) {
		gc := startGoConsumer(t, conn, []kombu.Queue{qF, qL}, nil)
		e.waitSubscribed(e.fanoutChannel(ex.Name, ""))
		e.runPy("publish", map[string]any{"url": e.url, "options": e.pyOptions(), "messages": []any{
			map[string]any{"routing_key": qL.Name, "body": map[string]any{"json": map[string]any{"list": 5}}},
			map[string]any{"exchange": pyExchange(ex), "routing_key": "", "body": map[string]any{"json": map[string]any{"fan": 5}}},
		}}, 30*time.Second)
		gc.waitFor(2, 20*time.Second)
		gc.stop()
		gc.checkNoErrors()
		queues := map[string]bool{}
		for _, g := range gc.messages() {
			queues[g.m.DeliveryInfo.Queue] = true
		}
		if !queues[qF.Name] || !queues[qL.Name] {
			t.Errorf("Go got messages from %v, want %s and %s", queues, qF.Name, qL.Name)
		}
	})
}
