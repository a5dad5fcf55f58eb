package redis

import (
	"reflect"
	"testing"
	"time"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

func init() {
	sharedTests = append(sharedTests, struct {
		name string
		fn   func(*testing.T, *env)
	}{"Inspector", testInspector})
}

// Proves: the Inspector reads the Kombu layout without changing it: list
// lengths per step, exchanges from binding keys, the unacked count and
// oldest receive time, unacked entries oldest first, and Peek in Get's
// order.
func testInspector(t *testing.T, e *env) {
	t0 := time.Unix(1795550400, 250000000)
	clock := newFakeClock(t0)
	b := e.backend(WithClock(clock))
	for i, p := range []int{9, 0, 3, 0, 4} {
		mustPut(t, b, "iq", p, testEnvelope(string(rune('a'+i)), "", "iq", p))
	}
	lens, err := b.QueueLengths(bg, "iq")
	if err != nil {
		t.Fatal(err)
	}
	want := []transport.StepLength{{Step: 0, Length: 2}, {Step: 3, Length: 2}, {Step: 6, Length: 0}, {Step: 9, Length: 1}}
	if !reflect.DeepEqual(lens, want) {
		t.Fatalf("lengths %v", lens)
	}
	peek, err := b.Peek(bg, "iq", 4)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, d := range peek {
		tag, _ := envelope.ExtractTag(d.Envelope)
		order = append(order, tag)
	}
	if !reflect.DeepEqual(order, []string{"b", "d", "c", "e"}) {
		t.Fatalf("peek order %v", order)
	}
	for _, ex := range []string{"ex_b", "ex_a"} {
		if err := b.Bind(bg, ex, transport.BindingRow{RoutingKey: "k", Queue: "iq"}); err != nil {
			t.Fatal(err)
		}
	}
	exs, err := b.Exchanges(bg)
	if err != nil || !reflect.DeepEqual(exs, []string{"ex_a", "ex_b"}) {
		t.Fatalf("exchanges %v %v", exs, err)
	}
	mustGet(t, b, []string{"iq"}, true) // b at t0
	clock.Set(t0.Add(time.Minute))
	mustGet(t, b, []string{"iq"}, true) // d at t0+1m
	n, oldest, err := b.Unacked(bg)
	if err != nil || n != 2 || !oldest.Equal(t0) {
		t.Fatalf("unacked %d %v %v", n, oldest, err)
	}
	ents, err := b.UnackedEntries(bg, 0)
	if err != nil || len(ents) != 2 || ents[0].Tag != "b" || ents[1].Tag != "d" || ents[0].RoutingKey != "iq" {
		t.Fatalf("entries %+v %v", ents, err)
	}
	if !ents[0].Since.Equal(t0) {
		t.Fatalf("since %v", ents[0].Since)
	}
	if one, _ := b.UnackedEntries(bg, 1); len(one) != 1 || one[0].Tag != "b" {
		t.Fatalf("limit 1: %+v", one)
	}
	if sz, _ := b.Size(bg, "iq"); sz != 3 {
		t.Fatalf("inspection changed the queue: size %d", sz)
	}
}
