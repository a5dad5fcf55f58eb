package pyjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type decodeCase struct {
	name string
	in   string
	want any // as UnmarshalOrdered returns it
}

var decodeCases = []decodeCase{
	{"null", "null", nil},
	{"true", "true", true},
	{"false", " false ", false},
	{"int", "42", json.Number("42")},
	{"negative zero", "-0", json.Number("-0")},
	{"float text kept", "1.50E+3", json.Number("1.50E+3")},
	{"big int text kept", "18446744073709551616", json.Number("18446744073709551616")},
	{"NaN", "NaN", json.Number("NaN")},
	{"Infinity", "Infinity", json.Number("Infinity")},
	{"-Infinity", "-Infinity", json.Number("-Infinity")},
	{"string", `"abc"`, "abc"},
	{"raw utf8", `"é😀"`, "é😀"},
	{"escapes", `"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
	{"unicode escapes", `"\u00e9\u00E9\u0000"`, "éé\x00"},
	{"surrogate pair", `"\ud83d\ude00"`, "😀"},
	{"uppercase surrogate pair", `"\uD83D\uDE00"`, "😀"},
	{"lone high surrogate", `"\ud800"`, "\ufffd"},
	{"lone high then text", `"\ud800x"`, "\ufffdx"},
	{"lone low surrogate", `"\udc00"`, "\ufffd"},
	{"high then high then low", `"\ud800\ud800\udc00"`, "\ufffd\U00010000"},
	{"high then non-surrogate escape", `"\ud800\u0041"`, "\ufffdA"},
	{"reversed pair", `"\ude00\ud83d"`, "\ufffd\ufffd"},
	{"invalid utf8 byte", "\"a\xffb\"", "a\ufffdb"},
	{"DEL raw", "\"\x7f\"", "\x7f"},
	{"empty array", "[]", []any{}},
	{"empty object", "{ }", Object{}},
	{"array", `[1, "a", [true, null], {"k": NaN}]`,
		[]any{json.Number("1"), "a", []any{true, nil}, Object{{"k", json.Number("NaN")}}}},
	{"object order kept", `{"b":1,"a":2,"c":{"z":[],"y":{}}}`,
		Object{{"b", json.Number("1")}, {"a", json.Number("2")}, {"c", Object{{"z", []any{}}, {"y", Object{}}}}}},
	{"duplicate keys: first position, last value", `{"a":1,"b":2,"a":3}`,
		Object{{"a", json.Number("3")}, {"b", json.Number("2")}}},
	{"whitespace", " \t\r\n[ 1 ,\n2 ] \n", []any{json.Number("1"), json.Number("2")}},
	{"escaped key", `{"\u00e9":1}`, Object{{"é", json.Number("1")}}},
}

// toMap converts what UnmarshalOrdered returns into what Unmarshal returns.
func toMap(v any) any {
	switch x := v.(type) {
	case Object:
		m := make(map[string]any, len(x))
		for _, mb := range x {
			m[mb.Key] = toMap(mb.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toMap(e)
		}
		return out
	default:
		return v
	}
}

// TestUnmarshal proves both decoders read what json.loads reads into the
// documented Go types: exact number text, NaN and the infinities as
// json.Number, escapes and surrogate pairs decoded, unpaired surrogates and
// invalid UTF-8 as U+FFFD, key order kept by UnmarshalOrdered, and duplicate
// keys resolved as a Python dict resolves them.
func TestUnmarshal(t *testing.T) {
	for _, c := range decodeCases {
		got, err := UnmarshalOrdered([]byte(c.in))
		if err != nil {
			t.Errorf("%s: UnmarshalOrdered(%q) error: %v", c.name, c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: UnmarshalOrdered(%q)\n got %#v\nwant %#v", c.name, c.in, got, c.want)
		}
		gotMap, err := Unmarshal([]byte(c.in))
		if err != nil {
			t.Errorf("%s: Unmarshal(%q) error: %v", c.name, c.in, err)
			continue
		}
		if want := toMap(c.want); !reflect.DeepEqual(gotMap, want) {
			t.Errorf("%s: Unmarshal(%q)\n got %#v\nwant %#v", c.name, c.in, gotMap, want)
		}
		if !Valid([]byte(c.in)) {
			t.Errorf("%s: Valid(%q) = false", c.name, c.in)
		}
	}
}

// TestUnmarshalDoesNotAliasInput proves the result does not share memory
// with the input slice, so callers may reuse their buffer.
func TestUnmarshalDoesNotAliasInput(t *testing.T) {
	in := []byte(`{"key":"value","n":12}`)
	v, err := UnmarshalOrdered(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	got, _ := Marshal(v)
	if string(got) != `{"key": "value", "n": 12}` {
		t.Fatalf("result changed with the input: %s", got)
	}
}

var malformedCases = []string{
	"",
	"   ",
	"\ufeff1",
	"[",
	"[1",
	"[1,",
	"[1,]",
	"[,1]",
	"[1 2]",
	"{",
	`{"a"`,
	`{"a":`,
	`{"a":1`,
	`{"a":1,}`,
	`{"a" 1}`,
	`{a:1}`,
	`{1:1}`,
	`{"a":1 "b":2}`,
	`"abc`,
	`"\`,
	`"\x"`,
	`"\u12"`,
	`"\u12G4"`,
	`"\u`,
	"\"a\tb\"",
	"\"a\nb\"",
	"\"\x00\"",
	"1 2",
	"[] x",
	"1.",
	"1.e5",
	".5",
	"01",
	"-",
	"-a",
	"+1",
	"1e",
	"1e+",
	"0x10",
	"nan",
	"-NaN",
	"+Infinity",
	"infinity",
	"Infinit",
	"tru",
	"nul",
	"True",
	"None",
	"'a'",
	"]",
	"}",
	"[1]]",
}

// TestUnmarshalMalformed proves input json.loads refuses is refused with a
// *SyntaxError carrying the pyjson prefix and an offset inside the input, by
// both decoders and by Valid and Marshal of a RawMessage, without panicking.
func TestUnmarshalMalformed(t *testing.T) {
	for _, in := range malformedCases {
		for _, dec := range []func([]byte) (any, error){Unmarshal, UnmarshalOrdered} {
			v, err := dec([]byte(in))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("decoding %q = %#v, %v; want a *SyntaxError", in, v, err)
				continue
			}
			if se.Offset < 0 || se.Offset > int64(len(in)) {
				t.Errorf("decoding %q: offset %d outside the input", in, se.Offset)
			}
			if !strings.HasPrefix(err.Error(), "pyjson: ") || se.Msg == "" {
				t.Errorf("decoding %q: unhelpful error %q", in, err)
			}
		}
		if Valid([]byte(in)) {
			t.Errorf("Valid(%q) = true", in)
		}
		if _, err := Marshal(json.RawMessage(in)); err == nil && in != "" {
			t.Errorf("Marshal(RawMessage(%q)) succeeded", in)
		}
	}
}

// TestUnmarshalErrorOffsets proves the offsets point at the offending byte,
// so that error messages are useful.
func TestUnmarshalErrorOffsets(t *testing.T) {
	cases := []struct {
		in     string
		offset int64
		msg    string
	}{
		{"[1, x]", 4, "expecting value"},
		{`{"a": 1,}`, 8, "expecting property name"},
		{`"ab\qc"`, 3, `invalid \escape`},
		{"1 2", 2, "extra data"},
		{`  "abc`, 2, "unterminated string"},
		{"\"a\x01\"", 2, "invalid control character"},
	}
	for _, c := range cases {
		_, err := Unmarshal([]byte(c.in))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != c.offset || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Unmarshal(%q) error = %v; want offset %d and %q", c.in, err, c.offset, c.msg)
		}
	}
}

// TestUnmarshalDepthLimit proves nesting is accepted up to encoding/json's
// limit of 10000 levels and refused beyond it with a *SyntaxError rather than
// exhausting the stack.
func TestUnmarshalDepthLimit(t *testing.T) {
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := Unmarshal([]byte(ok)); err != nil {
		t.Fatalf("depth %d refused: %v", maxDepth, err)
	}
	if !json.Valid([]byte(ok)) {
		t.Fatal("encoding/json's depth limit changed")
	}
	deep := `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + "}"
	var se *SyntaxError
	if _, err := UnmarshalOrdered([]byte(deep)); !errors.As(err, &se) {
		t.Fatalf("depth %d: got %v, want a *SyntaxError", maxDepth+1, err)
	}
	if json.Valid([]byte(deep)) {
		t.Fatal("encoding/json's depth limit changed")
	}
	if Valid([]byte(deep)) {
		t.Fatal("Valid accepted nesting past the limit")
	}
}

// TestUnmarshalManyDuplicateKeys proves duplicate keys are merged the Python
// way in large objects too, where a map index replaces the linear scan.
func TestUnmarshalManyDuplicateKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + string(rune('a'+i%20)) + `":` + json.Number(strings.Repeat("1", i%5+1)).String())
	}
	b.WriteString("}")
	v, err := UnmarshalOrdered([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	o := v.(Object)
	if len(o) != 20 || o[0].Key != "ka" || o[19].Key != "kt" {
		t.Fatalf("got %d members %v", len(o), o)
	}
	// Key ka last appears at i=80, whose value is "1" repeated 80%5+1 = 1 time.
	if x, _ := o.Get("ka"); x != json.Number("1") {
		t.Fatalf("ka = %v", x)
	}
	if x, _ := o.Get("ke"); x != json.Number("11111") {
		t.Fatalf("ke = %v", x)
	}
}
