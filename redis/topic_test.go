package redis

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// matchDriver runs the Lua matcher alone: 1 match, 0 no match, -1 outside
// the subset (the Go fallback decides).
var matchDriver = goredis.NewScript(topicMatchLua + `
local cache, out = {}, {}
for i = 2, #ARGV do
  local r = topic_match(ARGV[1], ARGV[i], cache)
  if r == nil then out[#out + 1] = -1 elseif r then out[#out + 1] = 1 else out[#out + 1] = 0 end
end
return out
`)

// Binding keys whose Kombu patterns the table covers.
var matcherKeys = []string{
	"#", "*", "a.*", "a.#", "#.c", "a*", "ab-c_d", "*.x_y-z", "a.*.#",
	"", "a", "a.b", "#.#", "*.*", "a.#.b", "*.b.#", "a.*b", "a.b*", "b*.c",
	"é.*", "ключ.#", "日本.*.語", "😀.#", "ça-va.*",
	"a+b", "a(b)", "a[b]", "a{1}", "a|b", "a?b", "a$b", "a^b", `a\b`, "a b", "a/b:c@d", "a'b\"c",
	"a\x00b", "a\nb", "tab\there", "→.x", "x.→",
	"*a", "**", "a**", "#*", "a.**",
	"celery", "celery.pidbox", "worker.heartbeat", "task.multi",
}

// Raw stored patterns, as a Python producer or an older tool might write
// them.
var matcherPatterns = []string{
	"", "^", "^$", "$", "^a", "a$", "^a.b$", "^a.*$", "^a.*?$", `^a\..*?[^\.]$`,
	`^a(b|c)$`, `^\d$`, `^a\\$`, `^[abc]$`, `^a+$`, `^a?$`, `^\000$`, `^\0$`, `^\01$`, `^\12$`,
	`^a{2}$`, `^\w+$`, `^a$b$`, `^.$`, `^[^\.]*$`, `^a*?b$`, `^\.*$`, "^\xffa$",
	// Edge cases of the Lua pattern rewrite (topic_lua_pattern).
	`^a\-b$`, `^a#b$`, `^a\*?$`, `^ab*c$`, `^a.*b*$`, `^\*$`, `^a\.*?$`, `^a*?*$`, `^[^\.]*?x$`,
	`^a b$`, `^a%b$`, `^a\%b$`, `^a%%$`, `^a[^\.]$`, `^a[^.]$`, `^a\$`, `^a\`, `^a*+$`, `^a*?{$`,
	`a.b`, `^\\*$`, `^a\^b$`, `^x\]$`, `^x]$`, `^%w$`, `^.-$`, `^a}$`, `^a.b*?c*$`, `^ab\.$`,
	`^a\(b\)$`, `^\[^\.]$`, `^a*`, `*a`, `^*a$`, `^a\0$`, "^a\x00$", "^a\nb$", "^a\tb$",
}

var matcherRoutingKeys = []string{
	"", "a", "b", "c", "a.", "a.b", "a.b.c", "a.bc", "ab", "aaa", "ab-c_d", "x.x_y-z", "a.x_y-z",
	"z.x_y-z", "a.b.c.d", "a..b", ".a", "..", "a.b.", "a\n", "a.b\n", "\n", "a\nb", "a.\n",
	"é.b", "é.", "ключ.", "ключ.x", "日本.x.語", "日本.x.y.語", "😀.x", "ça-va.z",
	"a+b", "a(b)", "a[b]", "a{1}", "a|b", "a?b", "a$b", "a^b", `a\b`, "a b", "a/b:c@d", "a'b\"c",
	"a\x00b", "\x00", "\x01", "a\nb", "tab\there", "→.x", "x.→", "ac", "aa", "a.b.c.d.e.f",
	"\xff", "a.\xff", "\xffa", "a-b", "a#b", "a*", "abbc", "ac", "a%b", "a%%", "a%", "%w", "x]", "x", "a}",
	"a(b)", "[^.]", "a^b", "\\", "\\\\", "a\tb", "*", "a.%", "ab.", "abbbc", "a.bcc", "celery", "celery.pidbox", "worker.heartbeat", "task.multi", "aab", "b.c",
}

// testTopicMatcherEquivalence proves: for every pattern (Kombu's
// translation of many binding keys, plus raw patterns) and every routing
// key, the Lua matcher either answers exactly what Go's transport.MatchTopic
// answers (Python's re.match semantics) or declines (-1), in which case the
// publish script writes nothing and Go routes; and that it never declines a
// pattern Kombu writes for a key made of letters, digits, '-', '_', '.',
// '*', '#' and non-ASCII letters that Python can compile.
func testTopicMatcherEquivalence(t *testing.T, e *env) {
	type pat struct{ key, pattern string }
	var pats []pat
	for _, k := range matcherKeys {
		pats = append(pats, pat{k, transport.KeyToPattern(k)})
	}
	for _, p := range matcherPatterns {
		pats = append(pats, pat{"", p})
	}
	supported, declined, pairs := 0, 0, 0
	for _, p := range pats {
		args := make([]any, 0, 1+len(matcherRoutingKeys))
		args = append(args, p.pattern)
		for _, rk := range matcherRoutingKeys {
			args = append(args, rk)
		}
		res, err := matchDriver.Run(bg, e.client, nil, args...).Int64Slice()
		if err != nil {
			t.Fatalf("pattern %q: %v", p.pattern, err)
		}
		for i, rk := range matcherRoutingKeys {
			pairs++
			lua := res[i]
			goMatch, goErr := transport.MatchTopic(transport.BindingRow{RoutingKey: p.key, Pattern: p.pattern}, rk)
			if lua == -1 {
				declined++
				continue
			}
			supported++
			if goErr != nil {
				t.Errorf("pattern %q key %q: Lua answered %d, Go fails: %v", p.pattern, rk, lua, goErr)
				continue
			}
			if goMatch != (lua == 1) {
				t.Errorf("pattern %q key %q: Lua %d, Go %v", p.pattern, rk, lua, goMatch)
			}
		}
		if simpleKey(p.key) && p.pattern == transport.KeyToPattern(p.key) {
			if _, err := transport.MatchTopic(transport.BindingRow{RoutingKey: p.key, Pattern: p.pattern}, "x"); err == nil && res[0] == -1 {
				t.Errorf("Kombu pattern %q of key %q declined by the Lua matcher", p.pattern, p.key)
			}
		}
	}
	t.Logf("%d pairs: %d answered in Lua (all equal to Go), %d left to Go", pairs, supported, declined)
}

// testTopicMatcherRandom is testTopicMatcherEquivalence over random
// patterns: Kombu translations of random keys and random strings of the
// characters that matter to the regex parser, each against random routing
// keys (fixed seed, so a failure repeats).
func testTopicMatcherRandom(t *testing.T, e *env) {
	rng := rand.New(rand.NewPCG(6, 6))
	const keyAlphabet = "ab.#*-_:$\\x00\n%é"
	const regexAlphabet = "ab.*?^$\\[]()+{}|-%#0\x00\n"
	pick := func(alphabet string, n int) string {
		rs := []rune(alphabet)
		var b strings.Builder
		for range n {
			b.WriteRune(rs[rng.IntN(len(rs))])
		}
		return b.String()
	}
	answered, pairs := 0, 0
	for i := range 400 {
		var key, pattern string
		switch i % 4 {
		case 0, 1:
			key = pick(keyAlphabet, rng.IntN(7))
			pattern = transport.KeyToPattern(key)
		case 2:
			pattern = "^" + pick(regexAlphabet, rng.IntN(8)) + "$"
		default:
			pattern = pick(regexAlphabet, rng.IntN(9))
		}
		args := []any{pattern}
		var rks []string
		for range 12 {
			rk := pick(keyAlphabet, rng.IntN(7))
			if key != "" && rng.IntN(3) == 0 {
				rk = strings.NewReplacer("#", pick("ab.", rng.IntN(4)), "*", pick("ab.", 1+rng.IntN(3))).Replace(key)
			}
			rks = append(rks, rk)
			args = append(args, rk)
		}
		res, err := matchDriver.Run(bg, e.client, nil, args...).Int64Slice()
		if err != nil {
			t.Fatalf("pattern %q: %v", pattern, err)
		}
		for j, rk := range rks {
			pairs++
			if res[j] == -1 {
				continue
			}
			answered++
			goMatch, goErr := transport.MatchTopic(transport.BindingRow{RoutingKey: key, Pattern: pattern}, rk)
			if goErr != nil {
				t.Errorf("pattern %q key %q: Lua answered %d, Go fails: %v", pattern, rk, res[j], goErr)
			} else if goMatch != (res[j] == 1) {
				t.Errorf("pattern %q key %q: Lua %d, Go %v", pattern, rk, res[j], goMatch)
			}
		}
	}
	t.Logf("%d random pairs: %d answered in Lua (all equal to Go)", pairs, answered)
}

func simpleKey(k string) bool {
	return !strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.*#", r) ||
			r > 0x7f && (unicode.IsLetter(r) || unicode.IsNumber(r)))
	})
}

// TestMatcherKnownAnswers proves the Lua matcher gives the answers of the
// wire spec §6.2 table (Kombu's non-AMQP semantics), on miniredis.
func TestMatcherKnownAnswers(t *testing.T) {
	e := newMiniEnv(t)
	cases := []struct {
		key     string
		match   []string
		nomatch []string
	}{
		{"#", []string{"", "a", "a.b"}, nil},
		{"*", []string{"a", "a.b", "a.b.c"}, []string{"", "a."}},
		{"a.*", []string{"a.b", "a.b.c", "a.bc"}, []string{"a", "a."}},
		{"a.#", []string{"a.b", "a.b.c", "a."}, []string{"a"}},
		{"#.c", []string{"a.b.c"}, []string{"c"}},
		{"a*", []string{"", "a", "aaa"}, []string{"ab"}},
		{"ab-c_d", []string{"ab-c_d"}, []string{"abXc_d"}},
	}
	for _, c := range cases {
		args := []any{transport.KeyToPattern(c.key)}
		for _, k := range c.match {
			args = append(args, k)
		}
		for _, k := range c.nomatch {
			args = append(args, k)
		}
		res, err := matchDriver.Run(bg, e.client, nil, args...).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			want := int64(0)
			if i < len(c.match) {
				want = 1
			}
			if r != want {
				t.Errorf("key %q, routing key %q: got %d want %d", c.key, fmt.Sprint(args[i+1]), r, want)
			}
		}
	}
}
