package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/redis"
	"github.com/kombu-go/kombu/transport"
)

// The script reads the cases as JSON on stdin and prints, from Debian's
// python3-kombu: key_to_pattern for each binding key; for each pair
// whether Python's re.match (as TopicExchange._match calls it) matches, or
// "error" when re refuses the pattern; and for each priority case the list
// key of Kombu's Redis channel (_get_message_priority then _q_for_pri).
const pythonScript = `
import json, re, sys
import kombu
from kombu.transport import redis
from kombu.transport.virtual.exchange import TopicExchange

cases = json.load(sys.stdin)
topic = TopicExchange(None)
patterns = [topic.key_to_pattern(k) for k in cases['keys']]
matches = []
for p in cases['pairs']:
    pattern = p['pattern'] if 'pattern' in p else topic.key_to_pattern(p['key'])
    try:
        matches.append(re.match(pattern, p['rk'], re.U) is not None)
    except re.error:
        matches.append('error')
prio = []
for c in cases['prios']:
    ch = object.__new__(redis.Channel)
    ch.priority_steps = c['steps']
    ch.sep = c['sep']
    msg = {'properties': {'priority': json.loads(c['raw'])}}
    prio.append(ch._q_for_pri('q', ch._get_message_priority(msg, reverse=False)))
json.dump({'version': kombu.__version__, 'patterns': patterns, 'matches': matches, 'prio': prio}, sys.stdout)
`

type pyPair struct {
	Key     string `json:"key,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	RK      string `json:"rk"`
	raw     bool   // Pattern is given (json omits an empty one: see MarshalJSON)
}

func (p pyPair) MarshalJSON() ([]byte, error) {
	if p.raw {
		return json.Marshal(map[string]string{"pattern": p.Pattern, "rk": p.RK})
	}
	return json.Marshal(map[string]string{"key": p.Key, "rk": p.RK})
}

type pyPrio struct {
	Steps []int  `json:"steps"`
	Sep   string `json:"sep"`
	Raw   string `json:"raw"` // JSON text of properties.priority
}

// runPython runs the script once; a missing interpreter or Kombu fails the
// test, it never skips.
func runPython(t *testing.T, in any) (out struct {
	Version  string `json:"version"`
	Patterns []string
	Matches  []any
	Prio     []string
}) {
	t.Helper()
	testenv.RequirePython(t, "kombu")
	stdin, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := testenv.PythonCommand(context.Background(), "-c", pythonScript)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("python output: %v: %s", err, b)
	}
	return out
}

// Binding keys and routing keys for the comparison with Python: wildcards,
// empty words, keys without dots, regex metacharacters (escaped by Kombu),
// Python's re.error for a quantified anchor ("*a" gives ^*a$), non-ASCII
// letters (not escaped) and punctuation (escaped: Go's RE2 refuses `\→`),
// newlines (Python's $ matches before a final one), NUL (\000).
var (
	pyKeys = []string{"#", "*", "a.#", "#.a", "#.c", "*.*", "a.*", "a..b", "a", "", "a*", "*a", "**", "*?", "#*",
		"a.*b", "ab-c_d", "é.*", "日本.#", "a→b", "😀.#", "a\nb", "a\tb", "x y", "a\x00b", "$^()[]{}|+?\\",
		"a.$", "a|b", "[a]", "a\\.b", "İ.*", "a.*.#", "*.x_y-z", "a.b.c", "*.b.#", "%", "a-", ".", ".."}
	pyRoutingKeys = []string{"", "a", "a.", "a.b", "a.b.c", "b.a", "x.a", "aa", "aaa", "ab", "c", "x.c", "a..b",
		"ab-c_d", "é.x", "日本.東京", "a→b", "😀.x", "a\nb", "a\n", "a.b\n", "a\n\n", "a\tb", "x y", "a\x00b",
		"$^()[]{}|+?\\", "a.$", "a|b", "[a]", "a\\.b", "a.xb", "İ.x", "a.b.", "q.x_y-z", "%", "a-", ".", "..", "*a", "xa"}
	// Stored patterns not produced by key_to_pattern: the empty pattern a
	// peer that thought the exchange direct stores, and hand-made ones.
	pyPatterns = []string{"", `^a$`, `^(a|b)$`, `^a\.b`, `a`, `^.*$`, `^a$*`, `^[^a]$`, `^$`}
)

// TestTopicAgainstPython compares KeyToPattern and MatchTopic with real
// Kombu and Python's re, for every pair of the keys above.
func TestTopicAgainstPython(t *testing.T) {
	var pairs []pyPair
	for _, k := range pyKeys {
		for _, rk := range pyRoutingKeys {
			pairs = append(pairs, pyPair{Key: k, RK: rk})
		}
	}
	for _, p := range pyPatterns {
		for _, rk := range pyRoutingKeys {
			pairs = append(pairs, pyPair{Pattern: p, RK: rk, raw: true})
		}
	}
	prios := priorityCases()
	out := runPython(t, map[string]any{"keys": pyKeys, "pairs": pairs, "prios": prios})
	t.Logf("python3-kombu %s: %d keys, %d pairs, %d priority cases", out.Version, len(pyKeys), len(pairs), len(prios))
	if len(out.Patterns) != len(pyKeys) || len(out.Matches) != len(pairs) || len(out.Prio) != len(prios) {
		t.Fatalf("python returned %d/%d/%d results", len(out.Patterns), len(out.Matches), len(out.Prio))
	}
	pyPattern := map[string]string{}
	for i, k := range pyKeys {
		pyPattern[k] = out.Patterns[i]
		if got := transport.KeyToPattern(k); got != out.Patterns[i] {
			t.Errorf("KeyToPattern(%q) = %q, Kombu %q", k, got, out.Patterns[i])
		}
	}
	errs := 0
	for i, p := range pairs {
		row := transport.BindingRow{RoutingKey: p.Key, Pattern: p.Pattern, Queue: "q"}
		if !p.raw {
			row.Pattern = pyPattern[p.Key] // as a Python peer stored it
		}
		got, err := transport.MatchTopic(row, p.RK)
		want := out.Matches[i]
		switch {
		case want == "error":
			errs++
			if err == nil {
				t.Errorf("MatchTopic(pattern %q, %q) = %v, nil; Python raises re.error", row.Pattern, p.RK, got)
			}
		case err != nil:
			t.Errorf("MatchTopic(pattern %q, %q): %v; Python matches: %v", row.Pattern, p.RK, err, want)
		case got != want:
			t.Errorf("MatchTopic(pattern %q, %q) = %v, Python %v", row.Pattern, p.RK, got, want)
		}
	}
	if errs == 0 {
		t.Errorf("no pair made Python raise re.error; the table lost its error cases")
	}
	for i, c := range prios {
		env, err := envelope.Parse([]byte(fmt.Sprintf(`{"body": "", "properties": {"priority": %s, "delivery_tag": "t"}}`, c.Raw)))
		if err != nil {
			t.Fatal(err)
		}
		if got := redis.PriorityKey("q", env.Priority(), c.Steps, c.Sep); got != out.Prio[i] {
			t.Errorf("priority %s with steps %v sep %q: list %q, Kombu %q", c.Raw, c.Steps, c.Sep, got, out.Prio[i])
		}
	}
}

func priorityCases() []pyPrio {
	var out []pyPrio
	stepSets := []struct {
		steps []int
		sep   string
	}{
		{transport.DefaultPrioritySteps, redis.DefaultSep},
		{[]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ":"},
		{[]int{2, 5, 8}, redis.DefaultSep}, // not starting at 0
		{[]int{0, 5}, "/"},
		{[]int{4}, ":"},
	}
	raws := []string{"null", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-1", "12", "7.9", "-1.5", "1e3",
		`"7"`, `" 5 "`, `"+4"`, `"x"`, `"5.0"`, "true", "false", "100000000000000000000", `"99999999999999999999"`}
	for _, s := range stepSets {
		for _, r := range raws {
			out = append(out, pyPrio{Steps: s.steps, Sep: s.sep, Raw: r})
		}
	}
	return out
}
