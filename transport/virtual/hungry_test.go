package virtual_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Proves: a consumer with ConsumeOptions.Hungry asks it, not its own empty
// buffer, whether to fetch for a single free slot: while Hungry reports
// false a freed slot is not fetched into until a batch's worth (half the
// prefetch) is free, and then that batch comes at once; once Hungry turns
// true, QoS.Wake makes the consumer fetch into the one free slot at once.
func TestConsumeHungry(t *testing.T) {
	b := memory.New()
	tr, ctx := newTransport(t, b, nil)
	ids := make([]string, 30)
	for i := range ids {
		ids[i] = string(rune('a'+i%26)) + string(rune('0'+i/26))
	}
	send(t, tr, "", "q", ids...)
	ch, err := tr.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var hungry atomic.Bool
	qos := virtual.NewQoS(8)
	// Deferred acks free their slots without a fetch of their own, so
	// only the loop fetches.
	msgs, _ := consume(t, ch, virtual.ConsumeOptions{Queues: []string{"q"}, QoS: qos, DeferredAcks: time.Hour, Hungry: hungry.Load})
	var held []*entity.Message
	expect := func(step string, n int) {
		t.Helper()
		deadline := time.After(300 * time.Millisecond)
		got := 0
		for {
			select {
			case m := <-msgs:
				held = append(held, m)
				got++
				continue
			case <-deadline:
			}
			break
		}
		if got != n {
			t.Fatalf("%s: %d messages delivered, want %d", step, got, n)
		}
	}
	ack := func(n int) {
		t.Helper()
		for range n {
			if err := held[0].Ack(ctx); err != nil {
				t.Fatal(err)
			}
			held = held[1:]
		}
	}
	expect("start", 8)
	ack(1)
	expect("one slot free, not hungry", 0)
	hungry.Store(true)
	qos.Wake()
	expect("hungry, woken", 1)
	hungry.Store(false)
	ack(3)
	expect("three slots free, not hungry", 0)
	ack(1)
	expect("four slots free (half the prefetch)", 4)
}
