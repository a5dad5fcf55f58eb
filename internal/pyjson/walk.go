package pyjson

import "encoding/json"

// Walker reads one JSON value with Unmarshal's rules, member by member, so
// a caller that wants a few fields of an object (a Kombu envelope) need
// not build maps for all of it. Values read with Any are exactly what
// Unmarshal returns for them; everything the walker skips is still checked,
// so the input is refused exactly when Unmarshal refuses it.
//
// Objects are read by pulling their members:
//
//	if err := w.Enter(); err != nil { ... }   // at a '{'
//	for {
//		key, ok, err := w.Next()
//		if err != nil || !ok { ... }          // !ok: the object ended
//		// read the value with one of String, Number, Any, Enter, Skip
//	}
//
// A Walker is used by one goroutine and must be released with Release.
type Walker struct {
	d     *decoder // d.starts: offsets of the objects entered, innermost last
	i     int      // offset of the next token
	first bool     // the innermost object has not returned a member yet
}

// NewWalker returns a walker at the start of data's one value.
func NewWalker(data []byte) Walker {
	d := getDecoder(data)
	d.ordered = false
	d.str = ""
	d.starts = d.starts[:0]
	return Walker{d: d, i: skipSpace(data, 0)}
}

// Release returns the walker's scratch space; the walker must not be used
// afterwards.
func (w *Walker) Release() {
	if w.d != nil {
		putDecoder(w.d)
		w.d = nil
	}
}

// Kind returns the first byte of the next value ('{', '[', '"', 't', 'f',
// 'n', a digit, '-', 'N', 'I'), or 0 at the end of the input.
func (w *Walker) Kind() byte {
	if w.i >= len(w.d.data) {
		return 0
	}
	return w.d.data[w.i]
}

// Any reads the next value as Unmarshal would.
func (w *Walker) Any() (any, error) {
	if w.Kind() == '{' {
		if j := skipSpace(w.d.data, w.i+1); j < len(w.d.data) && w.d.data[j] == '}' {
			w.i = j + 1
			return map[string]any{}, nil
		}
	}
	w.str()
	v, j, err := w.d.value(w.i)
	if err != nil {
		return nil, err
	}
	w.i = j
	return v, nil
}

// Skip checks and passes over the next value.
func (w *Walker) Skip() error {
	switch w.Kind() {
	case '"':
		end, _, err := w.d.scanString(w.i)
		if err != nil {
			return err
		}
		w.i = end + 1
		return nil
	case '{':
		if err := w.Enter(); err != nil {
			return err
		}
		for {
			_, ok, err := w.Next()
			if err != nil || !ok {
				return err
			}
			if err := w.Skip(); err != nil {
				return err
			}
		}
	default:
		if j := scanNumber(w.d.data, w.i); j > w.i {
			w.i = j
			return nil
		}
		_, err := w.Any()
		return err
	}
}

// String reads the next value, which must be a string (Kind '"'). When
// the string has no escapes and is valid UTF-8, raw is its bytes inside
// the input (not a copy) and s is empty; otherwise raw is nil and s is the
// decoded string.
func (w *Walker) String() (s string, raw []byte, err error) {
	end, verbatim, err := w.d.scanString(w.i)
	if err != nil {
		return "", nil, err
	}
	start := w.i + 1
	w.i = end + 1
	if verbatim {
		return "", w.d.data[start:end:end], nil
	}
	return string(w.d.unescape(w.d.data[start:end])), nil, nil
}

// str returns the decoder's one string copy of the input, which strings
// and numbers read with String and Any point into.
func (w *Walker) str() string {
	if w.d.str == "" && len(w.d.data) > 0 {
		w.d.str = string(w.d.data)
	}
	return w.d.str
}

// Number reads the next value if it is a JSON number (not NaN or the
// infinities) and returns its text inside the input; ok is false, and
// nothing is read, for any other value.
func (w *Walker) Number() (text []byte, ok bool) {
	j := scanNumber(w.d.data, w.i)
	if j == w.i {
		return nil, false
	}
	text = w.d.data[w.i:j:j]
	w.i = j
	return text, true
}

// AsNumber returns number text read by Number as Unmarshal returns it.
func AsNumber(text []byte) json.Number { return json.Number(text) }

// Enter starts reading the object at the walker (Kind '{').
func (w *Walker) Enter() error {
	d := w.d
	d.depth++
	if d.depth > maxDepth {
		return d.errAt(w.i, "nesting deeper than 10000 levels")
	}
	w.d.starts = append(w.d.starts, w.i)
	w.i = skipSpace(d.data, w.i+1)
	w.first = true
	return nil
}

// Next returns the key of the entered object's next member, leaving the
// walker at its value, which must then be read. ok is false when the
// object ended (the walker is then after it). key is valid only until the
// value is read: copy it to keep it. Keys that repeat are returned each
// time (Unmarshal keeps the last value).
func (w *Walker) Next() (key []byte, ok bool, err error) {
	d := w.d
	i := w.i
	start := w.d.starts[len(w.d.starts)-1]
	if w.first {
		w.first = false
		if i < len(d.data) && d.data[i] == '}' {
			return nil, false, w.leave(i + 1)
		}
	} else {
		i = skipSpace(d.data, i)
		switch {
		case i < len(d.data) && d.data[i] == ',':
			i = skipSpace(d.data, i+1)
		case i < len(d.data) && d.data[i] == '}':
			return nil, false, w.leave(i + 1)
		default:
			return nil, false, d.errAt(i, "expecting ',' delimiter")
		}
	}
	if i >= len(d.data) {
		return nil, false, d.errAt(start, "unterminated object")
	}
	if d.data[i] != '"' {
		return nil, false, d.errAt(i, "expecting property name enclosed in double quotes")
	}
	end, verbatim, err := d.scanString(i)
	if err != nil {
		return nil, false, err
	}
	key = d.data[i+1 : end : end]
	if !verbatim {
		key = d.unescape(key)
	}
	i = skipSpace(d.data, end+1)
	if i >= len(d.data) || d.data[i] != ':' {
		return nil, false, d.errAt(i, "expecting ':' delimiter")
	}
	w.i = skipSpace(d.data, i+1)
	if w.i >= len(d.data) {
		return nil, false, d.expectValueError(w.i)
	}
	return key, true, nil
}

func (w *Walker) leave(i int) error {
	w.d.depth--
	w.d.starts = w.d.starts[:len(w.d.starts)-1]
	w.i = i
	w.first = false
	return nil
}

// End checks that only whitespace follows the value read.
func (w *Walker) End() error {
	if i := skipSpace(w.d.data, w.i); i != len(w.d.data) {
		return w.d.errAt(i, "extra data after the JSON value")
	}
	return nil
}
