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
