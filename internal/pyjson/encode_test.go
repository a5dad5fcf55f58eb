package pyjson

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

type encodeCase struct {
	name string
	in   any
	want string
}

func runEncodeCases(t *testing.T, cases []encodeCase) {
	t.Helper()
	for _, c := range cases {
		got, err := Marshal(c.in)
		if err != nil {
			t.Errorf("%s: Marshal(%#v) error: %v", c.name, c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s: Marshal(%#v)\n got %s\nwant %s", c.name, c.in, got, c.want)
		}
	}
}

// TestMarshalStrings proves strings are escaped exactly as json.dumps escapes
// them with ensure_ascii=True: lowercase \u escapes for non-ASCII, surrogate
// pairs above the BMP, short escapes for the usual control characters, \u00XX
// for the others and for DEL, and <, >, & and / left alone.
func TestMarshalStrings(t *testing.T) {
	runEncodeCases(t, []encodeCase{
		{"empty", "", `""`},
		{"ascii", "hello world", `"hello world"`},
		{"latin1", "café", `"caf\u00e9"`},
		{"uppercase hex digits stay lowercase", "\u00c9\u00ff", `"\u00c9\u00ff"`},
		{"bmp", "日本", `"\u65e5\u672c"`},
		{"emoji", "😀", `"\ud83d\ude00"`},
		{"max rune", "\U0010ffff", `"\udbff\udfff"`},
		{"short escapes", "\"\\\n\r\t\b\f", `"\"\\\n\r\t\b\f"`},
		{"other controls", "\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"html chars unescaped", "<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`},
		{"slash unescaped", "a/b", `"a/b"`},
		{"DEL escaped", "\x7f", `"\u007f"`},
		{"tilde kept", "~", `"~"`},
		{"line separator", "\u2028\u2029", `"\u2028\u2029"`},
		{"BOM char", "\ufeff", `"\ufeff"`},
		{"replacement char", "\ufffd", `"\ufffd"`},
		{"invalid utf8 byte", "a\xffb", `"a\ufffdb"`},
		{"truncated utf8", "\xe6\x97", `"\ufffd\ufffd"`},
		{"utf8-encoded surrogate is invalid", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
	})
}

// TestAppendString proves AppendString appends to an existing buffer and
// writes the same bytes as Marshal of the string.
func TestAppendString(t *testing.T) {
	got := AppendString([]byte("x="), "é<")
	if string(got) != `x="\u00e9<"` {
		t.Fatalf("got %s", got)
	}
}

// TestMarshalFloats proves floats are written as Python's float repr: shortest
// round-trip digits, ".0" on integral values, scientific notation below 1e-4
// and from 1e16 with a signed two-digit exponent, NaN and the infinities as
// json.dumps writes them, and -0.0 keeping its sign.
func TestMarshalFloats(t *testing.T) {
	runEncodeCases(t, []encodeCase{
		{"0.1", 0.1, "0.1"},
		{"1.0", 1.0, "1.0"},
		{"zero", 0.0, "0.0"},
		{"negative zero", math.Copysign(0, -1), "-0.0"},
		{"1e16", 1e16, "1e+16"},
		{"below 1e16", 1e15, "1000000000000000.0"},
		{"9999999999999998", 9999999999999998.0, "9999999999999998.0"},
		{"1e-5", 1e-5, "1e-05"},
		{"1.5e-5", 1.5e-5, "1.5e-05"},
		{"1e-4", 1e-4, "0.0001"},
		{"0.00012345", 0.00012345, "0.00012345"},
		{"123456789.123", 123456789.123, "123456789.123"},
		{"timestamp", 1795550496.3968723, "1795550496.3968723"},
		{"negative big", -2.5e20, "-2.5e+20"},
		{"1e22", 1e22, "1e+22"},
		{"three-digit exponent", 1e100, "1e+100"},
		{"smallest denormal", 5e-324, "5e-324"},
		{"max float", math.MaxFloat64, "1.7976931348623157e+308"},
		{"1/3", 1.0 / 3, "0.3333333333333333"},
		{"NaN", math.NaN(), "NaN"},
		{"+Inf", math.Inf(1), "Infinity"},
		{"-Inf", math.Inf(-1), "-Infinity"},
		{"float32 shortest digits", float32(0.1), "0.1"},
		{"float32 integral", float32(3), "3.0"},
		{"float32 big", float32(1e20), "1e+20"},
		{"float slice", []float64{1, 0.5, 1e-7}, "[1.0, 0.5, 1e-07]"},
	})
}

// TestMarshalInts proves every integer kind is written in decimal over its
// whole range, including values that do not fit in a float64 exactly.
func TestMarshalInts(t *testing.T) {
	runEncodeCases(t, []encodeCase{
		{"int", 42, "42"},
		{"negative", -7, "-7"},
		{"int64 max", int64(math.MaxInt64), "9223372036854775807"},
		{"int64 min", int64(math.MinInt64), "-9223372036854775808"},
		{"uint64 max", uint64(math.MaxUint64), "18446744073709551615"},
		{"int8", int8(-128), "-128"},
		{"int16", int16(300), "300"},
		{"int32", int32(-70000), "-70000"},
		{"uint", uint(7), "7"},
		{"uint8", uint8(255), "255"},
		{"uint16", uint16(65535), "65535"},
		{"uint32", uint32(4294967295), "4294967295"},
		{"uintptr", uintptr(9), "9"},
		{"int slice", []int{1, -2, 3}, "[1, -2, 3]"},
		{"json.Number int", json.Number("123456789012345678901234567890"), "123456789012345678901234567890"},
		{"json.Number float", json.Number("1E5"), "1E5"},
		{"json.Number NaN", json.Number("NaN"), "NaN"},
		{"json.Number -Infinity", json.Number("-Infinity"), "-Infinity"},
		{"empty json.Number", json.Number(""), "0"},
	})
}

// TestMarshalContainers proves containers use Python's ", " and ": "
// separators, that Object keeps its order while Go maps are sorted, that
// empty containers are {} and [], and that nil maps and slices are null as in
// encoding/json while a nil Object is {}.
func TestMarshalContainers(t *testing.T) {
	runEncodeCases(t, []encodeCase{
		{"nil", nil, "null"},
		{"bools", []any{true, false}, "[true, false]"},
		{"empty object", Object{}, "{}"},
		{"nil Object", Object(nil), "{}"},
		{"empty map", map[string]any{}, "{}"},
		{"empty array", []any{}, "[]"},
		{"nil slice", []any(nil), "null"},
		{"nil map", map[string]any(nil), "null"},
		{"nil string slice", []string(nil), "null"},
		{"nil *Object", (*Object)(nil), "null"},
		{"object order kept", Object{{"b", 1}, {"a", 2}}, `{"b": 1, "a": 2}`},
		{"*Object", &Object{{"z", true}}, `{"z": true}`},
		{"map keys sorted", map[string]any{"b": 1, "a": 2, "é": 3, "B": 4}, `{"B": 4, "a": 2, "b": 1, "\u00e9": 3}`},
		{"map of strings sorted", map[string]string{"y": "1", "x": "<"}, `{"x": "<", "y": "1"}`},
		{"string slice", []string{"a", "é"}, `["a", "\u00e9"]`},
		{"object slice", []Object{{{"a", 1}}, {}}, `[{"a": 1}, {}]`},
		{"nested", Object{
			{"list", []any{1, "two", 3.0, nil, Object{{"k", []any{}}}}},
			{"map", map[string]any{"n": []any{[]any{}}}},
		}, `{"list": [1, "two", 3.0, null, {"k": []}], "map": {"n": [[]]}}`},
		{"raw message reformatted, order kept", json.RawMessage(` {"b":[1,2.50,"\u00E9\/"],"a":{"x":NaN}} `),
			`{"b": [1, 2.50, "\u00e9/"], "a": {"x": NaN}}`},
		{"nil raw message", json.RawMessage(nil), "null"},
	})
}

type fallbackStruct struct {
	Zeta  string            `json:"zeta"`
	Alpha int               `json:"alpha"`
	HTML  string            `json:"html"`
	Inner Object            `json:"inner"`
	Map   map[string]string `json:"map"`
	Skip  string            `json:"-"`
	Ptr   *int              `json:"ptr"`
}

type textKey int

func (k textKey) MarshalText() ([]byte, error) { return []byte{byte('a' + k)}, nil }

// TestMarshalFallback proves values Marshal does not know natively go through
// encoding/json and come out in Python's style: struct field order kept, no
// HTML escaping, ensure_ascii escapes, Objects inside structs kept in order,
// and maps with non-string keys following encoding/json's rules.
func TestMarshalFallback(t *testing.T) {
	runEncodeCases(t, []encodeCase{
		{"struct", fallbackStruct{Zeta: "é", Alpha: 1, HTML: "<&>", Inner: Object{{"y", 1}, {"x", 2}}, Map: map[string]string{"b": "", "a": ""}},
			`{"zeta": "\u00e9", "alpha": 1, "html": "<&>", "inner": {"y": 1, "x": 2}, "map": {"a": "", "b": ""}, "ptr": null}`},
		{"int keys", map[int]bool{10: true, 9: false}, `{"10": true, "9": false}`},
		{"text keys", map[textKey]int{1: 1, 0: 0}, `{"a": 0, "b": 1}`},
		{"bytes as base64", []byte("hi"), `"aGk="`},
		{"pointer to string", new(string), `""`},
		{"slice of maps", []map[string]int{{"b": 1, "a": 2}}, `[{"a": 2, "b": 1}]`},
		{"float field keeps encoding/json text", struct{ F float64 }{1}, `{"F": 1}`},
	})
}

// TestMarshalErrors proves Marshal reports values it cannot write instead of
// writing something Python could not read, and that Append then leaves the
// buffer's length alone.
func TestMarshalErrors(t *testing.T) {
	bad := []any{
		json.Number("1.2.3"),
		json.Number("nan"),
		json.Number("01"),
		json.RawMessage(`{"a":`),
		json.RawMessage(`1 2`),
		make(chan int),
		[]any{1, func() {}},
		map[string]any{"x": json.Number("x")},
		Object{{"c", complex(1, 2)}},
	}
	for _, v := range bad {
		if out, err := Marshal(v); err == nil {
			t.Errorf("Marshal(%#v) = %s, want an error", v, out)
		} else if !strings.HasPrefix(err.Error(), "pyjson: ") {
			t.Errorf("Marshal(%#v) error %q lacks the pyjson prefix", v, err)
		}
		dst := []byte("keep")
		got, err := Append(dst, v)
		if err == nil || string(got) != "keep" {
			t.Errorf("Append(%#v) = %q, %v; want the original buffer and an error", v, got, err)
		}
	}
	var se *SyntaxError
	if _, err := Marshal(json.RawMessage(`[1,`)); !errors.As(err, &se) {
		t.Errorf("invalid RawMessage error %v is not a *SyntaxError", err)
	}
}

// TestMarshalCycle proves a value that contains itself fails with an error
// instead of overflowing the stack.
func TestMarshalCycle(t *testing.T) {
	a := []any{nil}
	a[0] = a
	if _, err := Marshal(a); err == nil {
		t.Fatal("Marshal of a cyclic slice succeeded")
	}
	m := map[string]any{}
	m["m"] = m
	if _, err := Marshal(m); err == nil {
		t.Fatal("Marshal of a cyclic map succeeded")
	}
}

// TestMarshalDepthLimit proves Marshal writes values nested exactly as deep
// as Unmarshal reads (10000 levels) and refuses one level more.
func TestMarshalDepthLimit(t *testing.T) {
	var v any = []any{}
	for range maxDepth - 1 {
		v = []any{v}
	}
	if _, err := Marshal(v); err != nil {
		t.Fatalf("Marshal at the depth limit: %v", err)
	}
	if _, err := Marshal([]any{v}); err == nil {
		t.Fatal("Marshal past the depth limit succeeded")
	}
	if _, err := Marshal([]string{}); err != nil {
		t.Fatal(err)
	}
}

// TestObjectMethods proves Get, Set and Delete behave like a Python dict:
// Set replaces in place without moving the key or appends at the end, and
// Delete keeps the order of the remaining keys.
func TestObjectMethods(t *testing.T) {
	var o Object
	o.Set("a", 1)
	o.Set("b", 2)
	o.Set("c", 3)
	o.Set("a", 10)
	if v, ok := o.Get("a"); !ok || v != 10 {
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	if _, ok := o.Get("zz"); ok {
		t.Fatal("Get of a missing key reported ok")
	}
	o.Delete("b")
	o.Delete("missing")
	got, _ := Marshal(o)
	if string(got) != `{"a": 10, "c": 3}` {
		t.Fatalf("got %s", got)
	}
}

// TestObjectJSONInterop proves an Object field survives encoding/json in both
// directions with its key order kept.
func TestObjectJSONInterop(t *testing.T) {
	type wrap struct {
		O Object `json:"o"`
	}
	b, err := json.Marshal(wrap{O: Object{{"z", 1}, {"a", "<"}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"o":{"z":1,"a":"\u003c"}}` {
		t.Fatalf("json.Marshal = %s", b)
	}
	var w wrap
	if err := json.Unmarshal([]byte(`{"o":{"z":1,"a":{"y":2,"b":3}}}`), &w); err != nil {
		t.Fatal(err)
	}
	got, _ := Marshal(w.O)
	if string(got) != `{"z": 1, "a": {"y": 2, "b": 3}}` {
		t.Fatalf("round trip = %s", got)
	}
	if err := json.Unmarshal([]byte(`{"o":[1]}`), &w); err == nil {
		t.Fatal("decoding an array into an Object succeeded")
	}
	if err := json.Unmarshal([]byte(`{"o":null}`), &w); err != nil || w.O == nil {
		t.Fatalf("null changed the Object: %v %v", w.O, err)
	}
}

// TestMarshalNoAllocs proves Append of the native types allocates nothing
// beyond the output buffer (here preallocated), including sorted maps and
// float formatting, and that Marshal allocates only its result.
func TestMarshalNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	// v is an interface already, so that passing it allocates nothing.
	var v any = Object{
		{"s", "caf\u00e9 😀 <x>"},
		{"f", 1795550496.3968723},
		{"g", 1.5e-05},
		{"i", int64(-5)},
		{"n", json.Number("12.5")},
		{"m", map[string]any{"b": 1, "a": []any{true, nil, 0.5}}},
		{"ms", map[string]string{"k": "v", "j": "w"}},
		{"l", []string{"x"}},
		{"raw", json.RawMessage(`{"a":[1,"\u00e9"]}`)},
	}
	buf := make([]byte, 0, 4096)
	if _, err := Append(buf, v); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Append(buf[:0], v) }); n != 0 {
		t.Errorf("Append allocated %v times per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Marshal(v) }); n != 1 {
		t.Errorf("Marshal allocated %v times per run, want 1", n)
	}
}
