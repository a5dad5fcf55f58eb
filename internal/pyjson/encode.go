package pyjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of arrays and objects that Marshal writes
// and Unmarshal reads. It is the same limit as encoding/json's, so every
// document encoding/json accepts is accepted here too. On the encode side it
// also stops a value that contains itself from recursing forever.
const maxDepth = 10000

// maxPooledBuf is the largest buffer capacity Marshal keeps for reuse.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

var keysPool = sync.Pool{New: func() any {
	k := make([]string, 0, 16)
	return &k
}}

// Marshal returns v encoded exactly as Python's json.dumps(v) with default
// arguments writes it: ", " and ": " separators, ensure_ascii escaping with
// lowercase hex, floats as Python's repr, NaN/Infinity/-Infinity allowed, and
// no trailing newline.
//
// These types are encoded natively, without reflection: nil, bool, string,
// every int and uint kind, float32 and float64, json.Number, json.RawMessage,
// Object, *Object, []Object, []any, []string, []int, []float64,
// map[string]any and map[string]string.
//
//   - Object keeps its keys in order, like a Python dict. A nil Object is
//     written as {} because an Object always stands for a JSON object.
//   - map[string]any and map[string]string are written with their keys sorted
//     (by Unicode code point), because Go maps have no order. Use Object when
//     the order matters.
//   - nil maps and nil slices other than Object are written as null, as
//     encoding/json does.
//   - float32 values are written with the shortest digits that round-trip as
//     a float32 (float32(0.1) is 0.1), in Python's repr layout.
//   - json.Number is written as its text, which must be a JSON number or one
//     of NaN, Infinity and -Infinity; an empty json.Number is written as 0, as
//     encoding/json does.
//   - json.RawMessage must hold one JSON value (as json.loads accepts it); it
//     is re-encoded in Python's style with its keys kept in order. A nil or
//     empty RawMessage is written as null.
//
// Any other value (structs, other maps and slices, pointers, json.Marshaler
// implementations) is encoded with encoding/json and the result re-encoded in
// Python's style, keeping the key order encoding/json wrote (struct field
// order; sorted keys for maps, including maps with non-string keys). Numbers
// in such values keep encoding/json's text, so a float64 field holding 1.0 is
// written as 1, not as Python's 1.0; pass floats natively or in an Object
// where that matters. Such values cannot hold NaN or infinities either,
// because encoding/json refuses them.
func Marshal(v any) ([]byte, error) {
	bp := bufPool.Get().(*[]byte)
	b, err := appendValue((*bp)[:0], v, 0)
	var out []byte
	if err == nil {
		out = make([]byte, len(b))
		copy(out, b)
	}
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	return out, err
}

// Append appends the encoding of v, as Marshal writes it, to dst and returns
// the extended buffer. On error it returns dst with its original length.
func Append(dst []byte, v any) ([]byte, error) {
	b, err := appendValue(dst, v, 0)
	if err != nil {
		return dst, err
	}
	return b, nil
}

// AppendString appends s to dst as a quoted JSON string written the way
// Python's json.dumps writes it (ensure_ascii=True): printable ASCII as is
// (including <, > and &), \" \\ \n \r \t \b \f as two-character escapes, other
// control characters and DEL as \u00XX, every non-ASCII rune as \uXXXX with
// lowercase hex and runes outside the BMP as a surrogate pair. Each byte of s
// that is not valid UTF-8 is written as \ufffd.
func AppendString(dst []byte, s string) []byte {
	return appendQuoted(dst, s)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendQuoted(dst, x), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uintptr:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case float64:
		return appendFloat(dst, x, 64), nil
	case float32:
		return appendFloat(dst, float64(x), 32), nil
	case json.Number:
		return appendNumber(dst, x)
	case Object:
		return appendObject(dst, x, depth)
	case *Object:
		if x == nil {
			return append(dst, "null"...), nil
		}
		return appendObject(dst, *x, depth)
	case map[string]any:
		return appendMapAny(dst, x, depth)
	case map[string]string:
		return appendMapString(dst, x, depth)
	case []any:
		return appendSliceAny(dst, x, depth)
	case []Object:
		return appendSliceObject(dst, x, depth)
	case []string:
		if x == nil {
			return append(dst, "null"...), nil
		}
		if depth+1 > maxDepth {
			return dst, errTooDeep
		}
		dst = append(dst, '[')
		for i, s := range x {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendQuoted(dst, s)
		}
		return append(dst, ']'), nil
	case []int:
		if x == nil {
			return append(dst, "null"...), nil
		}
		if depth+1 > maxDepth {
			return dst, errTooDeep
		}
		dst = append(dst, '[')
		for i, n := range x {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = strconv.AppendInt(dst, int64(n), 10)
		}
		return append(dst, ']'), nil
	case []float64:
		if x == nil {
			return append(dst, "null"...), nil
		}
		if depth+1 > maxDepth {
			return dst, errTooDeep
		}
		dst = append(dst, '[')
		for i, f := range x {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendFloat(dst, f, 64)
		}
		return append(dst, ']'), nil
	case json.RawMessage:
		if len(x) == 0 {
			return append(dst, "null"...), nil
		}
		return transcode(dst, x, depth)
	default:
		return appendFallback(dst, v, depth)
	}
}

var errTooDeep = errors.New("pyjson: value nested deeper than 10000 levels (does it contain itself?)")

func appendObject(dst []byte, o Object, depth int) ([]byte, error) {
	depth++
	if depth > maxDepth {
		return dst, errTooDeep
	}
	dst = append(dst, '{')
	var err error
	for i := range o {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendQuoted(dst, o[i].Key)
		dst = append(dst, ": "...)
		if dst, err = appendValue(dst, o[i].Value, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendSliceAny(dst []byte, a []any, depth int) ([]byte, error) {
	if a == nil {
		return append(dst, "null"...), nil
	}
	depth++
	if depth > maxDepth {
		return dst, errTooDeep
	}
	dst = append(dst, '[')
	var err error
	for i, v := range a {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		if dst, err = appendValue(dst, v, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

func appendSliceObject(dst []byte, a []Object, depth int) ([]byte, error) {
	if a == nil {
		return append(dst, "null"...), nil
	}
	depth++
	if depth > maxDepth {
		return dst, errTooDeep
	}
	dst = append(dst, '[')
	var err error
	for i, o := range a {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		if dst, err = appendObject(dst, o, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// sortedKeys returns m's keys in sorted order in a pooled slice; the caller
// must hand it back with putKeys.
func sortedKeys[V any](m map[string]V) *[]string {
	kp := keysPool.Get().(*[]string)
	keys := (*kp)[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	*kp = keys
	return kp
}

func putKeys(kp *[]string) {
	clear(*kp)
	*kp = (*kp)[:0]
	if cap(*kp) <= 4096 {
		keysPool.Put(kp)
	}
}

func appendMapAny(dst []byte, m map[string]any, depth int) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	depth++
	if depth > maxDepth {
		return dst, errTooDeep
	}
	if len(m) == 0 {
		return append(dst, "{}"...), nil
	}
	kp := sortedKeys(m)
	defer putKeys(kp)
	dst = append(dst, '{')
	var err error
	for i, k := range *kp {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendQuoted(dst, k)
		dst = append(dst, ": "...)
		if dst, err = appendValue(dst, m[k], depth); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendMapString(dst []byte, m map[string]string, depth int) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	if depth+1 > maxDepth {
		return dst, errTooDeep
	}
	if len(m) == 0 {
		return append(dst, "{}"...), nil
	}
	kp := sortedKeys(m)
	dst = append(dst, '{')
	for i, k := range *kp {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendQuoted(dst, k)
		dst = append(dst, ": "...)
		dst = appendQuoted(dst, m[k])
	}
	putKeys(kp)
	return append(dst, '}'), nil
}

// appendNumber writes a json.Number after checking that it is a number
// json.loads would read.
func appendNumber(dst []byte, n json.Number) ([]byte, error) {
	s := string(n)
	switch s {
	case "":
		return append(dst, '0'), nil
	case "NaN", "Infinity", "-Infinity":
		return append(dst, s...), nil
	}
	if scanNumber(s, 0) != len(s) {
		return dst, fmt.Errorf("pyjson: invalid number literal %q", s)
	}
	return append(dst, s...), nil
}

// appendFallback encodes v with encoding/json and re-encodes the result in
// Python's style, keeping the key order encoding/json chose.
func appendFallback(dst []byte, v any, depth int) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("pyjson: %w", err)
	}
	return transcode(dst, raw, depth)
}

const hexDigits = "0123456789abcdef"

// asIs reports the ASCII bytes Python's ensure_ascii encoder writes
// unescaped: ' ' through '~' except '"' and '\\'.
var asIs = func() (t [256]bool) {
	for c := ' '; c <= '~'; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendQuoted is AppendString for both strings and byte slices.
func appendQuoted[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if asIs[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		r, size := decodeRune(s[i:])
		if r >= 0x10000 {
			r -= 0x10000
			dst = appendU(dst, 0xd800+(r>>10))
			dst = appendU(dst, 0xdc00+(r&0x3ff))
		} else {
			// An invalid byte decodes as utf8.RuneError (U+FFFD), size 1.
			dst = appendU(dst, r)
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// decodeRune is utf8.DecodeRune for both strings and byte slices.
func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	var b [utf8.UTFMax]byte
	n := copy(b[:], s)
	return utf8.DecodeRune(b[:n])
}

// appendU writes \uXXXX for a rune below 0x10000, with lowercase hex.
func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u',
		hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendFloat writes f as Python's float.__repr__ does: the shortest digits
// that round-trip, in positional notation with at least one digit after the
// point when the decimal exponent is in [-4, 16), otherwise in scientific
// notation with a signed exponent of at least two digits (1e+16, 1.5e-05).
// bits is 32 for a float32, whose shortest float32 digits are used.
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	var buf [32]byte
	// Shortest round-trip digits as [-]d[.ddd]e±dd[d].
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, bits)
	if b[0] == '-' {
		dst = append(dst, '-')
		b = b[1:]
	}
	e := len(b) - 4 // the exponent has two or three digits
	for b[e] != 'e' {
		e--
	}
	exp := 0
	for _, c := range b[e+2:] {
		exp = exp*10 + int(c-'0')
	}
	if b[e+1] == '-' {
		exp = -exp
	}
	// Gather the digits without the point, in place.
	digits := b[:e]
	if len(digits) > 1 {
		copy(digits[1:], digits[2:])
		digits = digits[:len(digits)-1]
	}
	switch {
	case exp < -4 || exp >= 16:
		dst = append(dst, digits[0])
		if len(digits) > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		dst = strconv.AppendInt(dst, int64(exp), 10)
	case exp >= 0:
		if len(digits) <= exp+1 {
			dst = append(dst, digits...)
			for range exp + 1 - len(digits) {
				dst = append(dst, '0')
			}
			dst = append(dst, '.', '0')
		} else {
			dst = append(dst, digits[:exp+1]...)
			dst = append(dst, '.')
			dst = append(dst, digits[exp+1:]...)
		}
	default:
		dst = append(dst, '0', '.')
		for range -exp - 1 {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	}
	return dst
}
