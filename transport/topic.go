package transport

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode"
)

// KeyToPattern translates a topic binding key into the regex text Kombu
// stores in the binding table (TopicExchange.key_to_pattern): every
// character that is not alphanumeric (Unicode-aware, like Python's
// str.isalnum) and not one of ".#*" is escaped with a backslash (NUL becomes
// `\000`); the key is split on "."; a segment that is exactly "*" becomes
// `.*?[^\.]`, one that is exactly "#" becomes `.*?`; the segments are joined
// with `\.` and wrapped in ^...$.
//
// This is Kombu's semantics, not AMQP's: "*" can match several words and
// "a.#" does not match "a".
func KeyToPattern(key string) string {
	return keyToPattern(key, pyEscape)
}

func pyEscape(b *strings.Builder, c rune) {
	switch {
	case c == 0:
		b.WriteString(`\000`)
	case isAlnum(c) || c == '.' || c == '#' || c == '*':
		b.WriteRune(c)
	default:
		b.WriteByte('\\')
		b.WriteRune(c)
	}
}

// goEscape escapes like pyEscape, but writes non-ASCII punctuation bare,
// which RE2 requires (it rejects `\→`) and which means the same thing.
func goEscape(b *strings.Builder, c rune) {
	if c >= 0x80 && !isAlnum(c) {
		b.WriteRune(c)
		return
	}
	pyEscape(b, c)
}

func keyToPattern(key string, esc func(*strings.Builder, rune)) string {
	var e strings.Builder
	for _, c := range key {
		esc(&e, c)
	}
	words := strings.Split(e.String(), ".")
	var b strings.Builder
	b.WriteByte('^')
	for i, w := range words {
		if i > 0 {
			b.WriteString(`\.`)
		}
		switch w {
		case "*":
			b.WriteString(`.*?[^\.]`)
		case "#":
			b.WriteString(`.*?`)
		default:
			b.WriteString(w)
		}
	}
	b.WriteByte('$')
	return b.String()
}

// isAlnum approximates Python's str.isalnum for one character: letters and
// numbers of every script.
func isAlnum(c rune) bool { return unicode.IsLetter(c) || unicode.IsNumber(c) }

// patternCache holds compiled topic patterns, keyed by stored pattern text.
var patternCache sync.Map // string -> *regexp.Regexp or error

var patternCacheSize int64
var patternCacheMu sync.Mutex

const maxCachedPatterns = 10000

// compilePattern compiles stored Python regex text for Go with Python's
// re.match semantics: anchored at the start only, and "$" at the very end
// also matching before one final newline.
func compilePattern(pattern string) (*regexp.Regexp, error) {
	if v, ok := patternCache.Load(pattern); ok {
		if re, ok := v.(*regexp.Regexp); ok {
			return re, nil
		}
		return nil, v.(error)
	}
	goPat := pattern
	if strings.HasSuffix(goPat, "$") && !escapedAt(goPat, len(goPat)-1) {
		goPat = goPat[:len(goPat)-1] + `\n?\z`
	}
	var re *regexp.Regexp
	var err error
	if pos := anchorRepeat(pattern); pos >= 0 {
		// Python's re refuses this ("nothing to repeat"); Go would accept it.
		err = fmt.Errorf("nothing to repeat at position %d", pos)
	} else {
		re, err = regexp.Compile(`\A(?:` + goPat + `)`)
	}
	var v any = re
	if err != nil {
		err = fmt.Errorf("kombu: topic pattern %q: %w", pattern, err)
		v = err
	}
	patternCacheMu.Lock()
	if patternCacheSize >= maxCachedPatterns {
		patternCache.Clear()
		patternCacheSize = 0
	}
	patternCacheSize++
	patternCacheMu.Unlock()
	patternCache.Store(pattern, v)
	if err != nil {
		return nil, err
	}
	return re, nil
}

// anchorRepeat returns the offset of a quantifier (*, +, ?, {n}) applied to
// an anchor (^ or $) outside a character class, or -1. Python's re refuses
// such a pattern with "nothing to repeat", Go's regexp accepts it; Kombu's
// translation produces one for binding keys such as "*a" (^*a$).
func anchorRepeat(p string) int {
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			i++
		case inClass:
			inClass = c != ']'
		case c == '[':
			inClass = true
			if i+1 < len(p) && p[i+1] == '^' {
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				i++
			}
		case (c == '^' || c == '$') && i+1 < len(p):
			switch n := p[i+1]; {
			case n == '*' || n == '+' || n == '?':
				return i + 1
			case n == '{' && i+2 < len(p) && (p[i+2] == ',' || '0' <= p[i+2] && p[i+2] <= '9'):
				return i + 1
			}
		}
	}
	return -1
}

// escapedAt reports whether the byte at i is preceded by an odd number of
// backslashes.
func escapedAt(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// MatchTopic reports whether a topic binding row routes routingKey, as
// Kombu's TopicExchange._match does with the stored pattern. An empty
// pattern matches everything (as an empty Python regex does). A stored
// pattern that Go's regexp cannot compile (for example a backslash before
// non-ASCII punctuation) is re-derived from the row's binding key; if that
// fails too, the error is returned, as Python raises re.error on publish.
func MatchTopic(row BindingRow, routingKey string) (bool, error) {
	re, err := compilePattern(row.Pattern)
	if err != nil {
		alt := keyToPattern(row.RoutingKey, goEscape)
		if row.Pattern != KeyToPattern(row.RoutingKey) {
			return false, err
		}
		if re, err = compilePattern(alt); err != nil {
			return false, err
		}
	}
	return re.MatchString(routingKey), nil
}

// Lookup returns the queues a message published to an exchange of type typ
// with routingKey goes to, given the exchange's binding table: Kombu's
// ExchangeType.lookup. Direct compares the routing key field exactly;
// topic matches the stored pattern (see MatchTopic) and skips
// deadLetterQueue; fanout takes every queue. Each queue appears once, in
// table order.
func Lookup(table []BindingRow, typ string, routingKey, deadLetterQueue string) ([]string, error) {
	var out []string
	var index map[string]struct{} // once out is long, for seen
	seen := func(q string) bool {
		if index != nil {
			_, ok := index[q]
			return ok
		}
		for _, x := range out {
			if x == q {
				return true
			}
		}
		return false
	}
	for _, row := range table {
		var ok bool
		switch typ {
		case "fanout":
			ok = true
		case "topic":
			m, err := MatchTopic(row, routingKey)
			if err != nil {
				return nil, err
			}
			ok = m && row.Queue != deadLetterQueue
		default:
			ok = row.RoutingKey == routingKey
		}
		if ok && row.Queue != "" && !seen(row.Queue) {
			out = append(out, row.Queue)
			if index != nil {
				index[row.Queue] = struct{}{}
			} else if len(out) == 16 {
				index = make(map[string]struct{}, 32)
				for _, x := range out {
					index[x] = struct{}{}
				}
			}
		}
	}
	return out, nil
}
