package transport_test

import (
	"slices"
	"testing"

	"github.com/kombu-go/kombu/transport"
)

// TestKeyToPatternSpec is the table of wire spec §5 and §6.2, including
// the captured binding members.
func TestKeyToPatternSpec(t *testing.T) {
	cases := []struct{ key, pattern string }{
		{"#", `^.*?$`},
		{"*", `^.*?[^\.]$`},
		{"a.*", `^a\..*?[^\.]$`},
		{"a.#", `^a\..*?$`},
		{"#.c", `^.*?\.c$`},
		{"a*", `^a*$`},
		{"ab-c_d", `^ab\-c\_d$`},
		{"a.*.#", `^a\..*?[^\.]\..*?$`},    // captured member of q_topic1
		{"*.x_y-z", `^.*?[^\.]\.x\_y\-z$`}, // captured member of q_topic3
		{"a\x00b", `^a\000b$`},             // NUL is written as \000
		{"é.日本.٣", `^é\.日本\.٣$`},           // Unicode letters and digits are alphanumeric
		{"a→b", `^a\→b$`},                  // non-ASCII punctuation is escaped, as Python does
		{"", `^$`},
		{"a..b", `^a\.\.b$`},
	}
	for _, c := range cases {
		if got := transport.KeyToPattern(c.key); got != c.pattern {
			t.Errorf("KeyToPattern(%q) = %q, want %q", c.key, got, c.pattern)
		}
	}
}

// TestMatchTopic covers the matching rules that do not depend on Python:
// the empty pattern, Go's fallback for patterns RE2 refuses, Python's "$"
// before a final newline, and errors.
func TestMatchTopic(t *testing.T) {
	cases := []struct {
		row     transport.BindingRow
		rk      string
		want    bool
		wantErr bool
	}{
		{transport.BindingRow{RoutingKey: "x", Pattern: ""}, "anything.at.all", true, false},
		{transport.BindingRow{RoutingKey: "a→b", Pattern: `^a\→b$`}, "a→b", true, false},
		{transport.BindingRow{RoutingKey: "a→b", Pattern: `^a\→b$`}, "a-b", false, false},
		// RE2 refuses the stored text and the key does not produce it: the
		// stored text wins, so this is an error, not a guess.
		{transport.BindingRow{RoutingKey: "other", Pattern: `^a\→b$`}, "a→b", false, true},
		{transport.BindingRow{Pattern: `^a$`}, "a\n", true, false},
		{transport.BindingRow{Pattern: `^a$`}, "a\n\n", false, false},
		{transport.BindingRow{Pattern: `^a\$`}, "a$", true, false},
		{transport.BindingRow{Pattern: `^a`}, "abc", true, false}, // re.match anchors the start only
		{transport.BindingRow{Pattern: `a`}, "ba", false, false},
		{transport.BindingRow{RoutingKey: "*a", Pattern: `^*a$`}, "a", false, true},
		{transport.BindingRow{Pattern: `^a$+`}, "a", false, true},
		{transport.BindingRow{Pattern: `[$*]`}, "*", true, false}, // inside a class: no anchor
		{transport.BindingRow{Pattern: `^[^*]`}, "x", true, false},
		{transport.BindingRow{Pattern: `(`}, "x", false, true},
	}
	for _, c := range cases {
		got, err := transport.MatchTopic(c.row, c.rk)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("MatchTopic(%+v, %q) = %v, %v; want %v, error %v", c.row, c.rk, got, err, c.want, c.wantErr)
		}
	}
}

// TestLookup checks Kombu's ExchangeType.lookup: direct compares exactly
// and ignores patterns, topic uses the stored pattern and skips the
// dead-letter queue, fanout takes every queue; each queue once, in table
// order; a pattern Python cannot compile is an error.
func TestLookup(t *testing.T) {
	table := []transport.BindingRow{
		{RoutingKey: "a.b", Pattern: transport.KeyToPattern("a.b"), Queue: "q1"},
		{RoutingKey: "a.#", Pattern: transport.KeyToPattern("a.#"), Queue: "q2"},
		{RoutingKey: "#", Pattern: transport.KeyToPattern("#"), Queue: "dlq"},
		{RoutingKey: "a.b", Pattern: "", Queue: "q3"},
		{RoutingKey: "*.b", Pattern: transport.KeyToPattern("*.b"), Queue: "q1"},
		{RoutingKey: "a.b", Pattern: "", Queue: ""},
	}
	cases := []struct {
		typ, rk string
		want    []string
	}{
		{"direct", "a.b", []string{"q1", "q3"}},
		{"direct", "a.#", []string{"q2"}},
		{"direct", "A.B", nil},
		{"topic", "a.b", []string{"q1", "q2", "q3"}},
		{"topic", "x.b", []string{"q3", "q1"}},
		{"topic", "a", []string{"q3"}},
		{"fanout", "whatever", []string{"q1", "q2", "dlq", "q3"}},
	}
	for _, c := range cases {
		got, err := transport.Lookup(table, c.typ, c.rk, "dlq")
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Lookup(%s, %q) = %v, %v; want %v", c.typ, c.rk, got, err, c.want)
		}
	}
	if got, _ := transport.Lookup(table, "topic", "a.b", ""); !slices.Contains(got, "dlq") {
		t.Errorf("without a dead-letter queue, the queue named dlq is an ordinary queue: %v", got)
	}
	bad := append(slices.Clone(table), transport.BindingRow{RoutingKey: "*a", Pattern: transport.KeyToPattern("*a"), Queue: "q9"})
	if _, err := transport.Lookup(bad, "topic", "a.b", ""); err == nil {
		t.Errorf("Lookup through a pattern Python refuses succeeded")
	}
	if got, err := transport.Lookup(bad, "direct", "*a", ""); err != nil || !slices.Equal(got, []string{"q9"}) {
		t.Errorf("direct lookup ignores patterns: %v, %v", got, err)
	}
}

// TestPriorityKey is wire spec §7.2: the largest step ≤ the clamped
// priority, the last step when the priority is below the first, the bare
// name for step 0.
func TestPriorityKey(t *testing.T) {
	sep := transport.DefaultSep
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
		if got := transport.PriorityKey("q", c.priority, c.steps, c.sep); got != c.key {
			t.Errorf("PriorityKey(q, %d, %v, %q) = %q, want %q", c.priority, c.steps, c.sep, got, c.key)
		}
	}
	for p, want := range map[int]int{-100: 0, -1: 0, 0: 0, 5: 5, 9: 9, 10: 9, 1 << 30: 9} {
		if got := transport.ClampPriority(p); got != want {
			t.Errorf("ClampPriority(%d) = %d, want %d", p, got, want)
		}
	}
}

// TestQueueFromKey is wire spec §7.3: the queue name is the key up to the
// last sep.
func TestQueueFromKey(t *testing.T) {
	cases := []struct{ key, sep, want string }{
		{"celery", transport.DefaultSep, "celery"},
		{"celery\x06\x166", transport.DefaultSep, "celery"},
		{"celery.pidbox\x06\x169", transport.DefaultSep, "celery.pidbox"},
		{"q:9", ":", "q"},
		{"a:b:3", ":", "a:b"}, // names containing sep do not round-trip
		{"q\x06\x16", transport.DefaultSep, "q"},
		{"q:9", "", "q:9"},
		{"", ":", ""},
	}
	for _, c := range cases {
		if got := transport.QueueFromKey(c.key, c.sep); got != c.want {
			t.Errorf("QueueFromKey(%q, %q) = %q, want %q", c.key, c.sep, got, c.want)
		}
	}
	for _, p := range []int{0, 3, 5, 9} {
		k := transport.PriorityKey("my.queue", p, transport.DefaultPrioritySteps, transport.DefaultSep)
		if got := transport.QueueFromKey(k, transport.DefaultSep); got != "my.queue" {
			t.Errorf("QueueFromKey(PriorityKey(%d)) = %q", p, got)
		}
	}
}
