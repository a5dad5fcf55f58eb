package interop

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// Tricky topic binding keys: wildcards in every position, regex
// metacharacters, non-ASCII letters, digits and punctuation, combining
// marks, astral characters, whitespace, NUL, backslash, quotes.
var topicKeys = []string{
	"#", "*", "a.*", "a.#", "#.c", "a*", "ab-c_d", "*.x_y-z", "a.*.#", "#.#", "*.*",
	"a..b", "", ".", "x+y.(z)|w$^[a]{2}?", "→.*", "ü.#", "²½Ⅻ.*", "e\u0301.#", "日本.*",
	"a b.#", "tab\tx", "emoji😀.#", `back\slash`, `quo"te`, "nul\x00.#", "*a.b*", "a.*b",
	"#a", "a#.#", "new\nline.#", "a.#.c", "*.#.*", "%+@!~`'=,;:<>/?&",
}

// Routing keys to route through every binding key.
var topicRoutingKeys = []string{
	"", "a", "a.", "a.b", "a.b.c", "a.bc", "ab", "aaa", "c", "x.c", "a.b.c.d", "q.x_y-z",
	"a.x_y-z", "ab-c_d", "a..b", ".", "..", "x+y.(z)|w$^[a]{2}?", "x+y.(z)|w$^[a]{2}",
	"→.x", "→.", "ü.z", "ü", "²½Ⅻ.1", "e\u0301.x", "日本.語", "a b.x", "tab\tx", "emoji😀.x",
	`back\slash`, `quo"te`, "nul\x00.z", "xa.b", "za.bz", "a.zb", "#a", "a#.x", "new\nline.x",
	"a.b\n", "a.x.c", "a.c", "x.y.z", "%+@!~`'=,;:<>/?&",
}

// TestTopicPatternsLikePython proves that Go translates topic binding keys
// into exactly the regex text Python Kombu stores (wire spec §6.2), over
// tricky keys and over every Unicode code point (Kombu escapes what
// str.isalnum rejects), and that Go's routing through the patterns in
// Redis gives the queues Python's re.match gives: Python binds one queue
// per key on a topic exchange, Go publishes every routing key, and each
// queue must hold exactly the routing keys Python says match its pattern.
func TestTopicPatternsLikePython(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.runPy("topic", map[string]any{"keys": topicKeys, "routing_keys": topicRoutingKeys, "alnum": true}, 60*time.Second)
	if len(evs) != 1 {
		t.Fatalf("peer.py topic: %v", evs)
	}
	ev := evs[0]
	pyPatterns := ev["patterns"].([]any)
	pyMatches := ev["matches"].([]any)
	pyErrors := ev["errors"].([]any)

	// 1. The stored text, key by key.
	for i, k := range topicKeys {
		if got, want := transport.KeyToPattern(k), pyPatterns[i].(string); got != want {
			t.Errorf("KeyToPattern(%q) = %q, Python stores %q", k, got, want)
		}
	}

	// 2. Which characters are escaped: Python's str.isalnum over all of
	// Unicode, against Go's translation of each single character.
	pyAlnum := codePoints(ev["alnum"])
	pyUnassigned := codePoints(ev["unassigned"])
	var differ, skew []string
	n, nSkew := 0, 0
	for c := rune(1); c <= unicode.MaxRune; c++ {
		if !utf8.ValidRune(c) || c == '.' || c == '#' || c == '*' {
			continue
		}
		bare := transport.KeyToPattern(string(c)) == "^"+string(c)+"$"
		if bare == pyAlnum[c] {
			continue
		}
		desc := fmt.Sprintf("U+%04X %q (Python isalnum %v)", c, c, pyAlnum[c])
		if pyUnassigned[c] {
			// Not a character yet in Python's Unicode version.
			if nSkew++; len(skew) < 5 {
				skew = append(skew, desc)
			}
			continue
		}
		if n++; len(differ) < 12 {
			differ = append(differ, desc)
		}
	}
	if n > 0 {
		t.Errorf("Go and Python disagree on escaping %d code points assigned in Python's Unicode %v, e.g. %s",
			n, ev["unidata_version"], strings.Join(differ, ", "))
	}
	if nSkew > 0 {
		t.Logf("known difference: %d code points unassigned in Python's Unicode %v are letters or numbers in Go's Unicode %s, so Go leaves them bare in topic patterns where this Python escapes them (e.g. %s)",
			nSkew, ev["unidata_version"], unicode.Version, strings.Join(skew, ", "))
	}

	// 3. Routing through Redis: Python binds, Go publishes. Keys whose
	// pattern Python cannot compile make every publish to their exchange
	// raise re.error in Python; they get an exchange of their own, where a
	// Go publish must fail too.
	id := uuid.NewString()[:8]
	ex := kombu.Exchange{Name: "topics-" + id, Type: kombu.Topic}
	var queues []any
	var bad []int
	for i, k := range topicKeys {
		bex := ex
		if pyErrors[i] != nil {
			bad = append(bad, i)
			bex = kombu.Exchange{Name: fmt.Sprintf("topics-bad%d-%s", i, id), Type: kombu.Topic}
		}
		queues = append(queues, map[string]any{"name": fmt.Sprintf("tq%d-%s", i, id),
			"bindings": []any{map[string]any{"exchange": pyExchange(bex), "routing_key": k}}})
	}
	e.runPy("publish", map[string]any{"url": e.url, "options": e.pyOptions(), "declare_queues": queues}, 30*time.Second)
	members, err := e.rdb.SMembers(context.Background(), e.key("_kombu.binding."+ex.Name)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range topicKeys {
		want := k + sep + transport.KeyToPattern(k) + sep + fmt.Sprintf("tq%d-%s", i, id)
		if pyErrors[i] == nil && !slices.Contains(members, want) {
			t.Errorf("binding key %q: Python's member is not %s", k, quoteKey(want))
		}
	}
	conn := e.dial()
	prod := conn.Producer(kombu.WithExchange(ex))
	for j, rk := range topicRoutingKeys {
		if _, err := prod.Publish(t.Context(), map[string]any{"rk": j}, kombu.WithRoutingKey(rk)); err != nil {
			t.Fatalf("publish %q: %v", rk, err)
		}
	}
	for _, i := range bad {
		bex := kombu.Exchange{Name: fmt.Sprintf("topics-bad%d-%s", i, id), Type: kombu.Topic}
		_, err := conn.Producer(kombu.WithExchange(bex)).Publish(t.Context(), "x", kombu.WithRoutingKey("a.b"))
		if err == nil {
			t.Errorf("binding key %q (pattern %q, which Python rejects: %v): Go published without error", topicKeys[i], pyPatterns[i], pyErrors[i])
		}
	}
	checked, wrong := 0, 0
	for i, k := range topicKeys {
		if pyErrors[i] != nil {
			continue
		}
		vals, err := e.rdb.LRange(context.Background(), e.key(fmt.Sprintf("tq%d-%s", i, id)), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]bool{}
		for _, v := range vals {
			env, err := envelope.Parse([]byte(v))
			if err != nil {
				t.Fatal(err)
			}
			got[indexOfRK(env.RoutingKey)] = true
		}
		for j, rk := range topicRoutingKeys {
			checked++
			want := pyMatches[i].([]any)[j].(bool)
			if got[j] != want {
				wrong++
				t.Errorf("binding key %q (pattern %q), routing key %q: Go routed %v, Python's re.match says %v", k, pyPatterns[i], rk, got[j], want)
			}
		}
	}
	t.Logf("topic: %d binding keys, %d code points compared, %d (key, routing key) routings checked, %d wrong", len(topicKeys), unicode.MaxRune, checked, wrong)
}

func indexOfRK(rk string) int { return slices.Index(topicRoutingKeys, rk) }

// codePoints expands peer.py's [first, last] ranges into a lookup table.
func codePoints(ranges any) []bool {
	out := make([]bool, unicode.MaxRune+1)
	for _, r := range ranges.([]any) {
		lo, _ := strconv.Atoi(fmt.Sprint(r.([]any)[0]))
		hi, _ := strconv.Atoi(fmt.Sprint(r.([]any)[1]))
		for c := lo; c <= hi; c++ {
			out[c] = true
		}
	}
	return out
}
