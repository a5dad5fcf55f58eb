package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/memory"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// TestConformance runs the backend conformance suite on the memory backend.
func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Features{
		Fanout:          true,
		DeadLetterQueue: memory.DeadLetterKey,
	}, func(t *testing.T, clock transport.Clock) transport.Backend {
		return memory.New(memory.WithClock(clock))
	})
}

// TestConformanceFallbacks runs the suite on the memory backend seen
// through transporttest.Faulty without faults, which hides every optional
// capability: it proves the core's fallbacks (routing in the engine, no
// fanout) meet the same contract.
func TestConformanceFallbacks(t *testing.T) {
	transporttest.Run(t, transporttest.Features{
		DeadLetterQueue: memory.DeadLetterKey,
		PollingInterval: 20 * time.Millisecond,
	}, func(t *testing.T, clock transport.Clock) transport.Backend {
		return &transporttest.Faulty{Backend: memory.New(memory.WithClock(clock))}
	})
}

func testEnvelope(id string, priority int) []byte {
	return fmt.Appendf(nil, `{"body": "", "headers": {"id": %q}, "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}, "priority": %d, "delivery_tag": "tag-%s"}}`, id, priority, id)
}

func ids(t *testing.T, b transport.Backend, queues ...string) []string {
	t.Helper()
	var out []string
	for {
		d, err := transporttest.FetchOne(t.Context(), b, queues, false, 0)
		if errors.Is(err, transport.ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := envelope.Parse(d.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := e.Headers["id"].(string)
		if e.Redelivered {
			id += "*"
		}
		out = append(out, id)
	}
}

// TestOpenURL checks the "memory" scheme: the same name is the same broker
// however it is spelled, other names are separate, options are refused.
func TestOpenURL(t *testing.T) {
	ctx := t.Context()
	open := func(u string) transport.Backend {
		t.Helper()
		b, _, err := transport.OpenURL(ctx, u)
		if err != nil {
			t.Fatalf("OpenURL(%q): %v", u, err)
		}
		return b
	}
	name := "tt-open-" + uuid.NewString() // brokers are process-wide
	a1, a2, a3, other := open("memory://"+name), open("memory:///"+name), open("memory://"+name+"/"), open("memory://"+name+"-other")
	if err := a1.Put(ctx, "q", 0, testEnvelope("x", 0)); err != nil {
		t.Fatal(err)
	}
	for i, b := range []transport.Backend{a1, a2, a3} {
		if n, _ := b.Size(ctx, "q"); n != 1 {
			t.Errorf("spelling %d of memory://%s sees %d messages, want 1", i, name, n)
		}
	}
	if n, _ := other.Size(ctx, "q"); n != 0 {
		t.Errorf("another name sees %d messages", n)
	}
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := a2.Size(ctx, "q"); n != 1 {
		t.Errorf("closing one backend cleared the shared broker")
	}
	if _, _, err := transport.OpenURL(ctx, "memory://?visibility_timeout=1"); !errors.Is(err, transport.ErrBadURL) {
		t.Errorf("memory URL with an option: %v, want ErrBadURL", err)
	}
	if !slices.Contains(transport.Schemes(), "memory") {
		t.Errorf("memory scheme not registered: %v", transport.Schemes())
	}
}

// TestFanoutMatch checks fanout binding keys follow Kombu's Redis channel
// naming: "" hears only the empty routing key, other keys are Redis globs
// with "#" read as "*".
func TestFanoutMatch(t *testing.T) {
	cases := []struct {
		binding, rk string
		want        bool
	}{
		{"", "", true}, {"", "a", false}, {"a", "", false}, {"#", "", false},
		{"#", "a.b", true}, {"*", "a/b.c", true}, {"ev.#", "ev.one", true}, {"ev.#", "ev.", true}, {"ev.#", "ev", false},
		{"ev.one", "ev.one", true}, {"ev.one", "ev.two", false}, {"ev.one", "ev.one.x", false},
		{"*.one", "ev.one", true}, {"a#b", "axyzb", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"[ab]x", "bx", true}, {"[ab]x", "cx", false}, {"[^a]x", "ax", false}, {"[^a]x", "bx", true},
		{"[a-c]x", "bx", true}, {"[a-c]x", "dx", false}, {`a\*b`, "a*b", true}, {`a\*b`, "axb", false},
		{"**.x", "a.x", true}, {"a*", "a", true},
	}
	for _, c := range cases {
		if got := memory.FanoutMatch(c.binding, c.rk); got != c.want {
			t.Errorf("FanoutMatch(%q, %q) = %v, want %v", c.binding, c.rk, got, c.want)
		}
	}
}

// TestListsSurviveCompaction checks the FIFO lists stay in order through
// the compaction of their backing slices and front pushes.
func TestListsSurviveCompaction(t *testing.T) {
	b := memory.New()
	ctx := t.Context()
	var want []string
	for i := range 300 {
		if err := b.Put(ctx, "q", 0, testEnvelope(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(i))
	}
	for range 200 {
		if _, err := transporttest.FetchOne(ctx, b, []string{"q"}, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	want = want[200:]
	// Take three with records and restore them to the front, newest first.
	var tags []string
	for range 3 {
		d, err := transporttest.FetchOne(ctx, b, []string{"q"}, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := envelope.Parse(d.Envelope)
		tags = append(tags, e.DeliveryTag)
	}
	route := func(context.Context, string, string) ([]string, error) { return []string{"q"}, nil }
	for i := len(tags) - 1; i >= 0; i-- {
		if err := b.Restore(ctx, tags[i], false, route); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		want[i] += "*"
	}
	if got := ids(t, b, "q"); !slices.Equal(got, want) {
		t.Errorf("order after compaction and restores:\n got %v\nwant %v", got, want)
	}
	if b.UnackedCount() != 0 {
		t.Errorf("%d records left", b.UnackedCount())
	}
}

// TestRestoreExpiredOrder checks a sweep restores only records at or before
// the deadline, to the front of their queue, oldest first, each at its own
// priority.
func TestRestoreExpiredOrder(t *testing.T) {
	clock := transporttest.NewClock(time.Unix(1_000_000, 0))
	b := memory.New(memory.WithClock(clock))
	ctx := t.Context()
	for _, p := range []struct {
		id  string
		pri int
	}{{"a", 0}, {"b", 0}, {"c", 6}, {"d", 0}, {"e", 0}} {
		if err := b.Put(ctx, "q", p.pri, testEnvelope(p.id, p.pri)); err != nil {
			t.Fatal(err)
		}
	}
	var taken []time.Time
	for range 5 { // a, b, d, e, then c from step 6
		if _, err := transporttest.FetchOne(ctx, b, []string{"q"}, true, 0); err != nil {
			t.Fatal(err)
		}
		taken = append(taken, clock.Now())
		clock.Advance(time.Second)
	}
	route := func(_ context.Context, ex, rk string) ([]string, error) { return []string{rk}, nil }
	n, err := b.RestoreExpired(ctx, taken[2], route) // a, b and d
	if err != nil || n != 3 {
		t.Fatalf("RestoreExpired = %d, %v; want 3", n, err)
	}
	if got := ids(t, b, "q"); !slices.Equal(got, []string{"a*", "b*", "d*"}) {
		t.Errorf("queue = %v", got)
	}
	if b.UnackedCount() != 2 {
		t.Errorf("UnackedCount = %d, want 2 (e and c)", b.UnackedCount())
	}
	if n, err := b.RestoreExpired(ctx, clock.Now(), route); err != nil || n != 2 {
		t.Errorf("second sweep = %d, %v", n, err)
	}
	if got := b.Stats("q"); got[0] != 1 || got[6] != 1 {
		t.Errorf("Stats = %v, want e in step 0 and c back in step 6", got)
	}
	if got := ids(t, b, "q"); !slices.Equal(got, []string{"e*", "c*"}) {
		t.Errorf("queue = %v", got)
	}
}

// TestPutBatch checks a batch lands in each queue's priority list in order.
func TestPutBatch(t *testing.T) {
	b := memory.New()
	err := b.PutBatch(t.Context(), []transport.PutItem{
		{Queue: "q1", Priority: 9, Envelope: testEnvelope("a", 9)},
		{Queue: "q2", Priority: 0, Envelope: testEnvelope("b", 0)},
		{Queue: "q1", Priority: 0, Envelope: testEnvelope("c", 0)},
		{Queue: "q1", Priority: 9, Envelope: testEnvelope("d", 9)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "q1", "q2"); !slices.Equal(got, []string{"c", "b", "a", "d"}) {
		t.Errorf("order = %v", got)
	}
}
