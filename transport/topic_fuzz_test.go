package transport

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzKeyToPattern: for any binding key, the pattern Kombu would store
// either routes (MatchTopic without error) or fails the same way every
// time, and a key without wildcards routes exactly the routing key equal
// to itself, as a literal.
func FuzzKeyToPattern(f *testing.F) {
	for _, k := range []string{"a.*.#", "a.#", "*.x_y-z", "#", "*", "", "a..b", "*a", "ü.→.x", "a\x00b", "a$", "a\n", "(a)|[b]{2}"} {
		f.Add(k, "a.b.c")
	}
	f.Fuzz(func(t *testing.T, key, rk string) {
		row := BindingRow{RoutingKey: key, Pattern: KeyToPattern(key), Queue: "q"}
		m1, err1 := MatchTopic(row, rk)
		m2, err2 := MatchTopic(row, rk)
		if m1 != m2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("MatchTopic not deterministic for %q / %q", key, rk)
		}
		if err1 != nil {
			return
		}
		if !utf8.ValidString(key) || strings.ContainsAny(key, "*#") {
			return
		}
		self, err := MatchTopic(row, key)
		if err != nil || !self {
			t.Fatalf("literal key %q (pattern %q) does not route itself: %v", key, row.Pattern, err)
		}
		if rk != key && rk != key+"\n" && m1 {
			t.Fatalf("literal key %q (pattern %q) routes %q", key, row.Pattern, rk)
		}
	})
}

// FuzzMatchTopic: any stored pattern (from Kombu or from a foreign writer)
// and routing key give the same answer twice (the compiled-pattern cache),
// and Lookup agrees with MatchTopic without panicking.
func FuzzMatchTopic(f *testing.F) {
	f.Add(`^a\..*?[^\.]\..*?$`, "a.b.c")
	f.Add(`^.*?$`, "")
	f.Add(`^*a$`, "a")
	f.Add(`^a\→b$`, "a→b")
	f.Add(`(`, "x")
	f.Add(`^a$`, "a\n")
	f.Fuzz(func(t *testing.T, pattern, rk string) {
		row := BindingRow{RoutingKey: "k", Pattern: pattern, Queue: "q"}
		m1, err1 := MatchTopic(row, rk)
		m2, err2 := MatchTopic(row, rk)
		if m1 != m2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("MatchTopic not deterministic for %q / %q", pattern, rk)
		}
		qs, err := Lookup([]BindingRow{row}, "topic", rk, "")
		if (err == nil) != (err1 == nil) || err == nil && (len(qs) == 1) != m1 {
			t.Fatalf("Lookup %v %v disagrees with MatchTopic %v %v", qs, err, m1, err1)
		}
	})
}
