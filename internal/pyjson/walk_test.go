package pyjson

import (
	"reflect"
	"testing"
)

// walkAll reads data with a Walker, collecting every member of every
// object into maps through Enter/Next and the rest with Any, and returns
// what it built (nil for invalid input).
func walkAll(data []byte) (any, bool) {
	w := NewWalker(data)
	defer w.Release()
	var read func() (any, error)
	read = func() (any, error) {
		switch w.Kind() {
		case '{':
			if err := w.Enter(); err != nil {
				return nil, err
			}
			m := map[string]any{}
			for {
				key, ok, err := w.Next()
				if err != nil {
					return nil, err
				}
				if !ok {
					return m, nil
				}
				k := string(key)
				v, err := read()
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
		case '"':
			s, raw, err := w.String()
			if raw != nil {
				s = string(raw)
			}
			return s, err
		default:
			if text, ok := w.Number(); ok {
				return AsNumber(text), nil
			}
			return w.Any()
		}
	}
	v, err := read()
	if err == nil {
		err = w.End()
	}
	return v, err == nil
}

// skipAll checks data with Skip.
func skipAll(data []byte) bool {
	w := NewWalker(data)
	defer w.Release()
	return w.Skip() == nil && w.End() == nil
}

var walkCases = []string{
	`{}`, `{"a": 1}`, `{"a": {"b": [1, {"c": "\u00e9"}]}, "a": 2, "d": null}`, ` { "k" : "v" , "n" : -1.5e3 } `,
	`{"a": NaN, "b": -Infinity}`, `"s"`, `[1, 2]`, `12`, `{"a" 1}`, `{"a": 1,}`, `{"a": 1`, `{"a": "x\q"}`,
	`{"\u0041": 1}`, `{"a": 1} x`, `{`, ``, `{"a": }`, `{1: 2}`, `{"a": [1,]}`,
}

func TestWalkerMatchesUnmarshal(t *testing.T) {
	for _, c := range walkCases {
		checkWalk(t, []byte(c))
	}
}

func checkWalk(t *testing.T, data []byte) {
	t.Helper()
	want, err := Unmarshal(data)
	got, ok := walkAll(data)
	if ok != (err == nil) {
		t.Fatalf("%q: walker ok %v, Unmarshal error %v", data, ok, err)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: walker %#v, Unmarshal %#v", data, got, want)
	}
	if skipAll(data) != (err == nil) {
		t.Fatalf("%q: Skip disagrees with Unmarshal (%v)", data, err)
	}
}

// FuzzWalker: reading with a Walker (Enter/Next, String, Number, Any, or
// Skip) accepts exactly what Unmarshal accepts and yields the same value.
func FuzzWalker(f *testing.F) {
	for _, c := range walkCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkWalk(t, data) })
}
