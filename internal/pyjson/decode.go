package pyjson

import (
	"encoding/json"
	"strconv"
	"sync"
	"unicode/utf8"
)

// SyntaxError describes input that json.loads would refuse. Offset is the
// byte offset in the input where the problem was found, and Msg says what is
// wrong (without the "pyjson: " prefix that Error adds).
type SyntaxError struct {
	Offset int64
	Msg    string
}

// Error returns "pyjson: " followed by the message and the offset.
func (e *SyntaxError) Error() string {
	return "pyjson: " + e.Msg + " at offset " + strconv.FormatInt(e.Offset, 10)
}

// Unmarshal parses one JSON value the way Python's json.loads does, including
// the non-standard NaN, Infinity and -Infinity. Objects become map[string]any
// (when a key repeats, the last value wins, as in Python), arrays []any,
// numbers json.Number holding their exact text (NaN, Infinity and -Infinity
// too), strings string, true and false bool, and null nil. Whitespace around
// the value is allowed; anything else after it is an error.
//
// Strings are decoded as Python decodes them, except that Go strings cannot
// hold lone UTF-16 surrogates: an unpaired \ud800-\udfff escape and each
// invalid UTF-8 byte become U+FFFD. Nesting deeper than 10000 arrays and
// objects is refused, as encoding/json refuses it.
//
// Errors are *SyntaxError. Unescaped strings and numbers in the result share
// one copy of data, so data itself is not retained.
func Unmarshal(data []byte) (any, error) {
	return decode(data, false)
}

// UnmarshalOrdered is Unmarshal, except that objects become Object, keeping
// the order of their keys. When a key repeats, the member stays at the
// position where the key first appeared and takes the last value, which is
// what a Python dict built by json.loads does; so Marshal(UnmarshalOrdered(x))
// writes what json.dumps(json.loads(x)) writes, number text aside.
func UnmarshalOrdered(data []byte) (any, error) {
	return decode(data, true)
}

// Valid reports whether data holds exactly one JSON value that json.loads
// accepts (NaN, Infinity and -Infinity included), with Unmarshal's limits.
func Valid(data []byte) bool {
	bp := bufPool.Get().(*[]byte)
	b, err := transcode((*bp)[:0], data, 0)
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	return err == nil
}

// decoder holds the state of one parse. Decoders are pooled so that their
// scratch stacks are reused across calls.
type decoder struct {
	data    []byte
	str     string // string(data): unescaped strings and numbers are substrings of it
	ordered bool
	depth   int
	members []Member // members of the objects being parsed, innermost last
	elems   []any    // elements of the arrays being parsed, innermost last
	buf     []byte   // scratch for unescaping strings
	index   map[string]int
	starts  []int // Walker: offsets of the objects entered
}

var decPool = sync.Pool{New: func() any { return new(decoder) }}

func getDecoder(data []byte) *decoder {
	d := decPool.Get().(*decoder)
	d.data = data
	d.depth = 0
	return d
}

func putDecoder(d *decoder) {
	d.data = nil
	d.str = ""
	if cap(d.members) > 1024 {
		d.members = nil
	}
	if cap(d.elems) > 1024 {
		d.elems = nil
	}
	if cap(d.buf) > maxPooledBuf {
		d.buf = nil
	}
	d.index = nil
	decPool.Put(d)
}

func decode(data []byte, ordered bool) (any, error) {
	d := getDecoder(data)
	d.ordered = ordered
	d.str = string(data)
	v, err := d.parseAll()
	putDecoder(d)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (d *decoder) parseAll() (any, error) {
	i := skipSpace(d.data, 0)
	v, i, err := d.value(i)
	if err != nil {
		return nil, err
	}
	if i = skipSpace(d.data, i); i != len(d.data) {
		return nil, d.errAt(i, "extra data after the JSON value")
	}
	return v, nil
}

func (d *decoder) errAt(i int, msg string) error {
	return &SyntaxError{Offset: int64(i), Msg: msg}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// hasLiteral reports whether data holds lit at i.
func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// expectValueError explains why no value starts at i.
func (d *decoder) expectValueError(i int) error {
	if i >= len(d.data) {
		return d.errAt(i, "expecting value, found end of input")
	}
	if i == 0 && hasLiteral(d.data, 0, "\xef\xbb\xbf") {
		return d.errAt(0, "unexpected UTF-8 byte order mark")
	}
	return d.errAt(i, "expecting value")
}

func (d *decoder) value(i int) (any, int, error) {
	if i >= len(d.data) {
		return nil, i, d.expectValueError(i)
	}
	switch c := d.data[i]; c {
	case '"':
		s, j, err := d.parseString(i)
		if err != nil {
			return nil, j, err
		}
		return s, j, nil
	case '{':
		return d.object(i)
	case '[':
		return d.array(i)
	case 't':
		if hasLiteral(d.data, i, "true") {
			return true, i + 4, nil
		}
	case 'f':
		if hasLiteral(d.data, i, "false") {
			return false, i + 5, nil
		}
	case 'n':
		if hasLiteral(d.data, i, "null") {
			return nil, i + 4, nil
		}
	case 'N':
		if hasLiteral(d.data, i, "NaN") {
			return json.Number("NaN"), i + 3, nil
		}
	case 'I':
		if hasLiteral(d.data, i, "Infinity") {
			return json.Number("Infinity"), i + 8, nil
		}
	default:
		if c == '-' && hasLiteral(d.data, i, "-Infinity") {
			return json.Number("-Infinity"), i + 9, nil
		}
		if j := scanNumber(d.data, i); j > i {
			return json.Number(d.str[i:j]), j, nil
		}
	}
	return nil, i, d.expectValueError(i)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the end of the longest JSON number starting at i, or i
// when there is none. Like Python's scanner it stops before a '.' or an
// exponent that is not followed by digits, so "1." reads as 1 followed by
// extra data.
func scanNumber[S ~string | ~[]byte](s S, i int) int {
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return start
	case s[i] == '0':
		i++
	case '1' <= s[i] && s[i] <= '9':
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return start
	}
	if i+1 < len(s) && s[i] == '.' && isDigit(s[i+1]) {
		i += 2
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			i = j + 1
			for i < len(s) && isDigit(s[i]) {
				i++
			}
		}
	}
	return i
}

// plain reports the bytes that stand for themselves inside a JSON string and
// need no checking: printable ASCII except '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// scanString checks the string whose opening quote is at i. It returns the
// offset of the closing quote, and whether the bytes between the quotes are
// the string itself (no escapes, valid UTF-8).
func (d *decoder) scanString(i int) (end int, verbatim bool, err error) {
	data := d.data
	j := i + 1
	verbatim = true
	for {
		for j < len(data) && plain[data[j]] {
			j++
		}
		if j >= len(data) {
			return j, false, d.errAt(i, "unterminated string")
		}
		switch c := data[j]; {
		case c == '"':
			return j, verbatim, nil
		case c == '\\':
			verbatim = false
			if j+1 >= len(data) {
				return j, false, d.errAt(i, "unterminated string")
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if len(data)-j < 6 || unhex(data[j+2])|unhex(data[j+3])|unhex(data[j+4])|unhex(data[j+5]) < 0 {
					return j, false, d.errAt(j, `invalid \uXXXX escape`)
				}
				j += 6
			default:
				return j, false, d.errAt(j, `invalid \escape`)
			}
		case c < 0x20:
			return j, false, d.errAt(j, "invalid control character in string")
		default: // c >= 0x80
			r, size := utf8.DecodeRune(data[j:])
			if r == utf8.RuneError && size == 1 {
				verbatim = false
			}
			j += size
		}
	}
}

// unescape decodes the checked contents of a string (between the quotes) into
// d.buf and returns it. Unpaired surrogate escapes and invalid UTF-8 bytes
// become U+FFFD.
func (d *decoder) unescape(raw []byte) []byte {
	b := d.buf[:0]
	for k := 0; k < len(raw); {
		c := raw[k]
		switch {
		case c == '\\':
			e := raw[k+1]
			k += 2
			switch e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(raw[k:])
				k += 4
				if 0xd800 <= r && r < 0xe000 {
					if r < 0xdc00 && len(raw)-k >= 6 && raw[k] == '\\' && raw[k+1] == 'u' {
						if lo := hex4(raw[k+2:]); 0xdc00 <= lo && lo < 0xe000 {
							r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
							k += 6
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default: // '"', '\\', '/'
				b = append(b, e)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			k++
		default:
			r, size := utf8.DecodeRune(raw[k:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, raw[k:k+size]...)
			}
			k += size
		}
	}
	d.buf = b
	return b
}

func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

func (d *decoder) parseString(i int) (string, int, error) {
	end, verbatim, err := d.scanString(i)
	if err != nil {
		return "", end, err
	}
	if verbatim {
		return d.str[i+1 : end], end + 1, nil
	}
	return string(d.unescape(d.data[i+1 : end])), end + 1, nil
}

func (d *decoder) object(i int) (any, int, error) {
	d.depth++
	if d.depth > maxDepth {
		return nil, i, d.errAt(i, "nesting deeper than 10000 levels")
	}
	start := i
	base := len(d.members)
	i = skipSpace(d.data, i+1)
	if i < len(d.data) && d.data[i] == '}' {
		d.depth--
		if d.ordered {
			return Object{}, i + 1, nil
		}
		return map[string]any{}, i + 1, nil
	}
	for {
		if i >= len(d.data) {
			return d.failObject(base, d.errAt(start, "unterminated object"))
		}
		if d.data[i] != '"' {
			return d.failObject(base, d.errAt(i, "expecting property name enclosed in double quotes"))
		}
		key, j, err := d.parseString(i)
		if err != nil {
			return d.failObject(base, err)
		}
		i = skipSpace(d.data, j)
		if i >= len(d.data) || d.data[i] != ':' {
			return d.failObject(base, d.errAt(i, "expecting ':' delimiter"))
		}
		i = skipSpace(d.data, i+1)
		v, j, err := d.value(i)
		if err != nil {
			return d.failObject(base, err)
		}
		d.members = append(d.members, Member{Key: key, Value: v})
		i = skipSpace(d.data, j)
		if i < len(d.data) && d.data[i] == ',' {
			i = skipSpace(d.data, i+1)
			continue
		}
		if i < len(d.data) && d.data[i] == '}' {
			i++
			break
		}
		return d.failObject(base, d.errAt(i, "expecting ',' delimiter"))
	}
	d.depth--
	ms := d.members[base:]
	var out any
	if d.ordered {
		o := make(Object, len(ms))
		copy(o, ms)
		out = d.dedupe(o)
	} else {
		m := make(map[string]any, len(ms))
		for _, mb := range ms {
			m[mb.Key] = mb.Value
		}
		out = m
	}
	clear(ms)
	d.members = d.members[:base]
	return out, i, nil
}

func (d *decoder) failObject(base int, err error) (any, int, error) {
	clear(d.members[base:])
	d.members = d.members[:base]
	return nil, 0, err
}

// dedupe merges members with the same key the way a Python dict does: the
// member stays where the key first appeared and takes the last value.
func (d *decoder) dedupe(o Object) Object {
	if len(o) < 2 {
		return o
	}
	if len(o) <= 16 {
		dup := false
	outer:
		for i := 1; i < len(o); i++ {
			for j := 0; j < i; j++ {
				if o[i].Key == o[j].Key {
					dup = true
					break outer
				}
			}
		}
		if !dup {
			return o
		}
	}
	if d.index == nil {
		d.index = make(map[string]int, len(o))
	}
	idx := d.index
	n := 0
	for _, m := range o {
		if at, ok := idx[m.Key]; ok {
			o[at].Value = m.Value
			continue
		}
		idx[m.Key] = n
		o[n] = m
		n++
	}
	clear(idx)
	clear(o[n:])
	return o[:n:n]
}

func (d *decoder) array(i int) (any, int, error) {
	d.depth++
	if d.depth > maxDepth {
		return nil, i, d.errAt(i, "nesting deeper than 10000 levels")
	}
	start := i
	base := len(d.elems)
	i = skipSpace(d.data, i+1)
	if i < len(d.data) && d.data[i] == ']' {
		d.depth--
		return []any{}, i + 1, nil
	}
	for {
		if i >= len(d.data) {
			return d.failArray(base, d.errAt(start, "unterminated array"))
		}
		v, j, err := d.value(i)
		if err != nil {
			return d.failArray(base, err)
		}
		d.elems = append(d.elems, v)
		i = skipSpace(d.data, j)
		if i < len(d.data) && d.data[i] == ',' {
			i = skipSpace(d.data, i+1)
			continue
		}
		if i < len(d.data) && d.data[i] == ']' {
			i++
			break
		}
		return d.failArray(base, d.errAt(i, "expecting ',' delimiter"))
	}
	d.depth--
	es := d.elems[base:]
	out := make([]any, len(es))
	copy(out, es)
	clear(es)
	d.elems = d.elems[:base]
	return out, i, nil
}

func (d *decoder) failArray(base int, err error) (any, int, error) {
	clear(d.elems[base:])
	d.elems = d.elems[:base]
	return nil, 0, err
}

// transcode appends the one JSON value in raw (as json.loads accepts it) to
// dst in Python's json.dumps style, keeping key order. depth is the nesting
// depth raw is written at. On error it returns dst unchanged in length.
func transcode(dst, raw []byte, depth int) ([]byte, error) {
	d := getDecoder(raw)
	d.depth = depth
	n := len(dst)
	i := skipSpace(raw, 0)
	out, i, err := d.transcodeValue(dst, i)
	if err == nil {
		if i = skipSpace(raw, i); i != len(raw) {
			err = d.errAt(i, "extra data after the JSON value")
		}
	}
	putDecoder(d)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func (d *decoder) transcodeValue(dst []byte, i int) ([]byte, int, error) {
	data := d.data
	if i >= len(data) {
		return dst, i, d.expectValueError(i)
	}
	switch c := data[i]; c {
	case '"':
		end, verbatim, err := d.scanString(i)
		if err != nil {
			return dst, i, err
		}
		if verbatim {
			return appendQuoted(dst, data[i+1:end]), end + 1, nil
		}
		return appendQuoted(dst, d.unescape(data[i+1:end])), end + 1, nil
	case '{', '[':
		d.depth++
		if d.depth > maxDepth {
			return dst, i, d.errAt(i, "nesting deeper than 10000 levels")
		}
		return d.transcodeContainer(dst, i)
	case 't':
		if hasLiteral(data, i, "true") {
			return append(dst, "true"...), i + 4, nil
		}
	case 'f':
		if hasLiteral(data, i, "false") {
			return append(dst, "false"...), i + 5, nil
		}
	case 'n':
		if hasLiteral(data, i, "null") {
			return append(dst, "null"...), i + 4, nil
		}
	case 'N':
		if hasLiteral(data, i, "NaN") {
			return append(dst, "NaN"...), i + 3, nil
		}
	case 'I':
		if hasLiteral(data, i, "Infinity") {
			return append(dst, "Infinity"...), i + 8, nil
		}
	default:
		if c == '-' && hasLiteral(data, i, "-Infinity") {
			return append(dst, "-Infinity"...), i + 9, nil
		}
		if j := scanNumber(data, i); j > i {
			return append(dst, data[i:j]...), j, nil
		}
	}
	return dst, i, d.expectValueError(i)
}

// transcodeContainer transcodes the object or array opening at i.
func (d *decoder) transcodeContainer(dst []byte, i int) ([]byte, int, error) {
	data := d.data
	isObject := data[i] == '{'
	closer := byte(']')
	unterminated := "unterminated array"
	if isObject {
		closer = '}'
		unterminated = "unterminated object"
	}
	start := i
	dst = append(dst, data[i])
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == closer {
		d.depth--
		return append(dst, closer), i + 1, nil
	}
	var err error
	for {
		if i >= len(data) {
			return dst, i, d.errAt(start, unterminated)
		}
		if isObject {
			if data[i] != '"' {
				return dst, i, d.errAt(i, "expecting property name enclosed in double quotes")
			}
			if dst, i, err = d.transcodeValue(dst, i); err != nil {
				return dst, i, err
			}
			i = skipSpace(data, i)
			if i >= len(data) || data[i] != ':' {
				return dst, i, d.errAt(i, "expecting ':' delimiter")
			}
			dst = append(dst, ':', ' ')
			i = skipSpace(data, i+1)
		}
		if dst, i, err = d.transcodeValue(dst, i); err != nil {
			return dst, i, err
		}
		i = skipSpace(data, i)
		if i < len(data) && data[i] == ',' {
			dst = append(dst, ',', ' ')
			i = skipSpace(data, i+1)
			continue
		}
		if i < len(data) && data[i] == closer {
			d.depth--
			return append(dst, closer), i + 1, nil
		}
		return dst, i, d.errAt(i, "expecting ',' delimiter")
	}
}
