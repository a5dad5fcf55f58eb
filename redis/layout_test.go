package redis

import (
	"testing"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// TestPriorityKey is wire spec §7.2: the largest step ≤ the clamped
// priority, the last step when the priority is below the first, the bare
// name for step 0.
func TestPriorityKey(t *testing.T) {
	sep := DefaultSep
	def := transport.DefaultPrioritySteps
	ten := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	cases := []struct {
		priority int
		steps    []int
		sep      string
		step     int
		key      string
	}{
		{0, def, sep, 0, "q"}, {1, def, sep, 0, "q"}, {2, def, sep, 0, "q"},
		{3, def, sep, 3, "q\x06\x163"}, {4, def, sep, 3, "q\x06\x163"}, {5, def, sep, 3, "q\x06\x163"},
		{6, def, sep, 6, "q\x06\x166"}, {7, def, sep, 6, "q\x06\x166"}, {8, def, sep, 6, "q\x06\x166"},
		{9, def, sep, 9, "q\x06\x169"}, {12, def, sep, 9, "q\x06\x169"}, {-1, def, sep, 0, "q"},
		{0, ten, ":", 0, "q"}, {1, ten, ":", 1, "q:1"}, {7, ten, ":", 7, "q:7"}, {12, ten, ":", 9, "q:9"}, {-1, ten, ":", 0, "q"},
		// Steps not starting at 0: below the first step is the last step
		// (Python's steps[-1]).
		{0, []int{2, 5, 8}, sep, 8, "q\x06\x168"}, {1, []int{2, 5, 8}, sep, 8, "q\x06\x168"},
		{2, []int{2, 5, 8}, sep, 2, "q\x06\x162"}, {9, []int{2, 5, 8}, sep, 8, "q\x06\x168"},
		{5, nil, sep, 0, "q"},
	}
	for _, c := range cases {
		if got := transport.PriorityStep(c.priority, c.steps); got != c.step {
			t.Errorf("PriorityStep(%d, %v) = %d, want %d", c.priority, c.steps, got, c.step)
		}
		if got := PriorityKey("q", c.priority, c.steps, c.sep); got != c.key {
			t.Errorf("PriorityKey(q, %d, %v, %q) = %q, want %q", c.priority, c.steps, c.sep, got, c.key)
		}
	}
	for p, want := range map[int]int{-100: 0, -1: 0, 0: 0, 5: 5, 9: 9, 10: 9, 1 << 30: 9} {
		if got := envelope.ClampPriority(p); got != want {
			t.Errorf("ClampPriority(%d) = %d, want %d", p, got, want)
		}
	}
}

// TestQueueFromKey is wire spec §7.3: the queue name is the key up to the
// last sep.
func TestQueueFromKey(t *testing.T) {
	cases := []struct{ key, sep, want string }{
		{"celery", DefaultSep, "celery"},
		{"celery\x06\x166", DefaultSep, "celery"},
		{"celery.pidbox\x06\x169", DefaultSep, "celery.pidbox"},
		{"q:9", ":", "q"},
		{"a:b:3", ":", "a:b"}, // names containing sep do not round-trip
		{"q\x06\x16", DefaultSep, "q"},
		{"q:9", "", "q:9"},
		{"", ":", ""},
	}
	for _, c := range cases {
		if got := QueueFromKey(c.key, c.sep); got != c.want {
			t.Errorf("QueueFromKey(%q, %q) = %q, want %q", c.key, c.sep, got, c.want)
		}
	}
	for _, p := range []int{0, 3, 5, 9} {
		k := PriorityKey("my.queue", p, transport.DefaultPrioritySteps, DefaultSep)
		if got := QueueFromKey(k, DefaultSep); got != "my.queue" {
			t.Errorf("QueueFromKey(PriorityKey(%d)) = %q", p, got)
		}
	}
}
