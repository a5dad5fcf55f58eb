package pyjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzUnmarshal proves, on arbitrary input, that the decoders never panic and
// fail only with a *SyntaxError; that everything encoding/json accepts is
// accepted; that both decoders and Valid agree on what is acceptable; and
// that what Marshal writes from a decoded value parses back to the same value
// and is written again identically, and equals the RawMessage re-encoding
// when the input has no duplicate keys.
func FuzzUnmarshal(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c.in))
	}
	for _, in := range malformedCases {
		f.Add([]byte(in))
	}
	f.Add([]byte(envelope))
	f.Add([]byte(`{"a":[1,2.5e-3,{"b":"\u00e9\ud83d\ude00<>&"}],"c":{"d":null,"e":true}}`))
	f.Add([]byte(`[NaN,Infinity,-Infinity,-0,1E400]`))
	f.Add([]byte("\"\xff\xfe\xed\xa0\x80\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		o, oerr := UnmarshalOrdered(data)
		valid := Valid(data)
		if (err == nil) != (oerr == nil) || (err == nil) != valid {
			t.Fatalf("disagreement on %q: Unmarshal %v, UnmarshalOrdered %v, Valid %v", data, err, oerr, valid)
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.As(oerr, &se) {
				t.Fatalf("error on %q is not a *SyntaxError: %v / %v", data, err, oerr)
			}
			if json.Valid(data) {
				t.Fatalf("encoding/json accepts %q but Unmarshal refused it: %v", data, err)
			}
			return
		}
		if !reflect.DeepEqual(m, toMap(o)) {
			t.Fatalf("Unmarshal and UnmarshalOrdered disagree on %q", data)
		}
		out, err := Marshal(o)
		if err != nil {
			t.Fatalf("Marshal of decoded %q: %v", data, err)
		}
		back, err := UnmarshalOrdered(out)
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", out, data, err)
		}
		if !reflect.DeepEqual(back, o) {
			t.Fatalf("value changed through Marshal: %q -> %q\n %#v\n %#v", data, out, o, back)
		}
		again, err := Marshal(back)
		if err != nil || string(again) != string(out) {
			t.Fatalf("Marshal not stable: %q then %q (%v)", out, again, err)
		}
		raw, err := Marshal(json.RawMessage(data))
		if err != nil {
			t.Fatalf("Marshal(RawMessage(%q)): %v", data, err)
		}
		if string(raw) != string(out) && !hasDuplicateKeys(t, raw) {
			t.Fatalf("RawMessage re-encoding differs: %q vs %q", raw, out)
		}
	})
}

// hasDuplicateKeys reports whether some object in the Python-style JSON text
// s repeats a key: decoding merges repeated keys, so it then holds fewer
// members than the text writes.
func hasDuplicateKeys(t *testing.T, s []byte) bool {
	v, err := UnmarshalOrdered(s)
	if err != nil {
		t.Fatalf("re-parsing %q: %v", s, err)
	}
	return countMembers(v) != countRawMembers(s)
}

// countMembers counts the object members in a decoded value.
func countMembers(v any) int {
	n := 0
	switch x := v.(type) {
	case Object:
		n += len(x)
		for _, m := range x {
			n += countMembers(m.Value)
		}
	case []any:
		for _, e := range x {
			n += countMembers(e)
		}
	}
	return n
}

// countRawMembers counts the ": " key separators outside strings in
// Python-style JSON text, one per object member as written.
func countRawMembers(s []byte) int {
	n := 0
	inString := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == ':':
			n++
		}
	}
	return n
}
