package virtual_test

import (
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Proves: consumers given one QoS share its prefetch limit (two consumers
// on two queues with QoS(2) hold two messages between them, not two each);
// Increment lets them take more at once; Decrement takes effect as
// messages settle (nothing new is delivered until fewer than the new limit
// are unsettled); Prefetch and Unsettled report the state. A QoS of 0 has
// no limit and ignores Increment.
func TestQoSShared(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	send(t, tr, "", "qa", "a1", "a2", "a3", "a4", "a5")
	send(t, tr, "", "qb", "b1", "b2", "b3", "b4", "b5")
	qos := virtual.NewQoS(2)
	var streams []<-chan *entity.Message
	for _, q := range []string{"qa", "qb"} {
		ch, err := tr.Channel()
		if err != nil {
			t.Fatal(err)
		}
		// Prefetch is ignored when QoS is set.
		msgs, _ := consume(t, ch, virtual.ConsumeOptions{Queues: []string{q}, QoS: qos, Prefetch: 100, Concurrency: 4})
		streams = append(streams, msgs)
	}
	var held []*entity.Message
	// collect gathers what the consumers deliver within d.
	collect := func(d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case m := <-streams[0]:
				held = append(held, m)
			case m := <-streams[1]:
				held = append(held, m)
			case <-deadline:
				return
			}
		}
	}
	expect := func(step string, n int) {
		t.Helper()
		collect(300 * time.Millisecond)
		if len(held) != n {
			t.Fatalf("%s: %d messages delivered and unsettled, want %d", step, len(held), n)
		}
		if u := qos.Unsettled(); u != n {
			t.Fatalf("%s: Unsettled() = %d, want %d", step, u, n)
		}
	}
	ack := func() {
		t.Helper()
		if err := held[0].Ack(ctx); err != nil {
			t.Fatal(err)
		}
		held = held[1:]
	}
	prefetch := func(q *virtual.QoS, step string, want int) {
		t.Helper()
		if p := q.Prefetch(); p != want {
			t.Fatalf("Prefetch() = %d %s, want %d", p, step, want)
		}
	}
	expect("shared limit 2", 2)
	qos.Increment(1)
	prefetch(qos, "after Increment(1)", 3)
	expect("after Increment(1)", 3)
	ack()
	expect("after one ack", 3)
	qos.Decrement(2)
	prefetch(qos, "after Decrement(2)", 1)
	ack()
	expect("after Decrement(2) and one ack", 2)
	ack()
	expect("one unsettled, limit 1", 1)
	ack()
	expect("next one", 1)
	qos.Decrement(10)
	prefetch(qos, "after Decrement below 1", 1)

	free := virtual.NewQoS(0)
	free.Increment(5)
	prefetch(free, "of an unlimited QoS after Increment", 0)
}
