package celery

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// Celery's limits for the argsrepr and kwargsrepr headers
// (AMQP.argsrepr_maxsize, kwargsrepr_maxsize) and saferepr's default depth.
const (
	reprMaxSize   = 1024
	reprMaxLevels = 3
)

// pyTuple is a sequence Python represents as a tuple: (1, 2), (1,), ().
type pyTuple []any

// argsRepr returns Celery's argsrepr header for args: saferepr of the args
// tuple, at most 1024 characters.
func argsRepr(args []any) string { return safeRepr(pyTuple(normalizeSlice(args)), reprMaxSize) }

// kwargsRepr returns Celery's kwargsrepr header for kwargs.
func kwargsRepr(kwargs map[string]any) string {
	v := normalize(kwargs)
	if v == nil {
		v = pyjson.Object{}
	}
	return safeRepr(v, reprMaxSize)
}

// normalize turns a Go value into what Python sees after json.loads: an
// Object for every JSON object (keys in the order they are sent), []any,
// json.Number, string, bool or nil. Values that do not encode as JSON come
// back unchanged (and are written with %v).
func normalize(v any) any {
	b, err := pyjson.Marshal(v)
	if err != nil {
		return v
	}
	n, err := pyjson.UnmarshalOrdered(b)
	if err != nil {
		return v
	}
	return n
}

func normalizeSlice(a []any) []any {
	out := make([]any, len(a))
	for i, v := range a {
		out[i] = normalize(v)
	}
	return out
}

// A reprToken is one piece of Celery's streaming saferepr
// (celery/utils/saferepr.py): a literal (brackets, separators), a dict key, a
// quoted string or plain text.
type reprToken struct {
	kind     reprKind
	val      string
	truncate bool // literals only: separators may be cut, brackets may not
	open     int  // brackets only: index of the opening bracket's token
}

type reprKind uint8

const (
	reprLit reprKind = iota
	reprKey
	reprQuoted
	reprText
)

// safeRepr is Celery's saferepr(o, maxlen, maxlevels=3) for JSON values.
// Differences from repr() that Celery has and this keeps: strings are always
// in single quotes with only ' escaped; containers deeper than three levels
// are written [...]; past maxlen characters the text stops with ", ..." and
// only the closing brackets of containers already opened follow.
func safeRepr(v any, maxlen int) string {
	var toks []reprToken
	toks = reprTokens(toks, v, 0)
	var sb strings.Builder
	remaining := maxlen
	cut := -1
	for i, tok := range toks {
		if maxlen > 0 && remaining <= 0 {
			sb.WriteString(", ...")
			cut = i
			break
		}
		var s string
		switch tok.kind {
		case reprLit:
			s = tok.val
		case reprKey:
			s = safeRepr(tok.val, remaining)
		case reprQuoted:
			s = quoteRepr(tok.val, remaining)
		default:
			s = truncateText(tok.val, remaining)
		}
		sb.WriteString(s)
		remaining -= utf8.RuneCountInString(s)
	}
	if cut >= 0 {
		for _, tok := range toks[cut+1:] {
			// Closing brackets of containers opened before the cut (Python
			// drops the token it pulled at the cut, and skips the rest).
			if tok.kind == reprLit && !tok.truncate && tok.open <= cut {
				sb.WriteString(tok.val)
			}
		}
	}
	return sb.String()
}

func reprTokens(toks []reprToken, v any, level int) []reprToken {
	switch x := v.(type) {
	case nil:
		return append(toks, reprToken{kind: reprText, val: "None"})
	case bool:
		if x {
			return append(toks, reprToken{kind: reprText, val: "True"})
		}
		return append(toks, reprToken{kind: reprText, val: "False"})
	case string:
		return append(toks, reprToken{kind: reprQuoted, val: x})
	case json.Number:
		return append(toks, reprToken{kind: reprText, val: pyNumberStr(x)})
	case pyTuple:
		end := ")"
		if len(x) == 1 {
			end = ",)"
		}
		return reprSeq(toks, "(", end, []any(x), nil, level)
	case []any:
		return reprSeq(toks, "[", "]", x, nil, level)
	case pyjson.Object:
		return reprSeq(toks, "{", "}", nil, x, level)
	default:
		return reprTokens(toks, normalizeOrText(v), level)
	}
}

func normalizeOrText(v any) any {
	n := normalize(v)
	switch n.(type) {
	case nil, bool, string, json.Number, []any, pyjson.Object:
		return n
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func reprSeq(toks []reprToken, start, end string, items []any, obj pyjson.Object, level int) []reprToken {
	if level >= reprMaxLevels {
		return append(toks, reprToken{kind: reprText, val: start + "..." + end})
	}
	open := len(toks)
	toks = append(toks, reprToken{kind: reprLit, val: start, open: open})
	if obj != nil {
		for i, m := range obj {
			toks = append(toks, reprToken{kind: reprKey, val: m.Key})
			toks = append(toks, reprToken{kind: reprLit, val: ": ", truncate: true, open: -1})
			toks = reprTokens(toks, m.Value, level+1)
			if i < len(obj)-1 {
				toks = append(toks, reprToken{kind: reprLit, val: ", ", truncate: true, open: -1})
			}
		}
	} else {
		for i, it := range items {
			toks = reprTokens(toks, it, level+1)
			if i < len(items)-1 {
				toks = append(toks, reprToken{kind: reprLit, val: ", ", truncate: true, open: -1})
			}
		}
	}
	return append(toks, reprToken{kind: reprLit, val: end, open: open})
}

// quoteRepr is saferepr's _format_chars for str.
func quoteRepr(s string, maxlen int) string {
	return "'" + strings.ReplaceAll(truncateText(s, maxlen), "'", `\'`) + "'"
}

// truncateText is celery.utils.text.truncate(s, maxlen): at maxlen
// characters or more, cut to maxlen, drop the last partial word, add "...".
func truncateText(s string, maxlen int) string {
	if maxlen <= 0 || utf8.RuneCountInString(s) < maxlen {
		return s
	}
	r := []rune(s)[:maxlen]
	cut := string(r)
	if i := strings.LastIndexByte(cut, ' '); i >= 0 {
		cut = cut[:i]
	}
	return cut + "..."
}

// pyNumberStr is str() of the int or float json.loads makes of n.
func pyNumberStr(n json.Number) string {
	s := string(n)
	switch s {
	case "NaN":
		return "nan"
	case "Infinity":
		return "inf"
	case "-Infinity":
		return "-inf"
	}
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(i, 10) // "-0" is 0 in Python
		}
		return strings.TrimPrefix(s, "+")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	b, err := pyjson.Marshal(f)
	if err != nil {
		return s
	}
	out := string(b)
	switch out {
	case "Infinity":
		return "inf"
	case "-Infinity":
		return "-inf"
	}
	return out
}
