package serialization

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// python3-msgpack is not installed where these tests were written, so the
// msgpack codec is checked against hand-made byte vectors: each one is what
// msgpack-python's packb(value, use_bin_type=True) writes for the Python
// value in the comment, worked out from the msgpack specification (smallest
// integer form, uint family for non-negative values, str8 allowed, floats as
// float 64).

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var str31 = strings.Repeat("x", 31)
var str32 = strings.Repeat("x", 32)

// msgpackVectors pair a Go value with packb's bytes and the value unpackb
// (raw=False) gives back, as decoded in Go.
var msgpackVectors = []struct {
	py      string // the Python value
	in      any
	hex     string
	decoded any
}{
	{"None", nil, "c0", nil},
	{"True", true, "c3", true},
	{"False", false, "c2", false},
	{"0", 0, "00", int64(0)},
	{"127", int8(127), "7f", int64(127)},
	{"128", uint16(128), "cc 80", int64(128)},
	{"255", 255, "cc ff", int64(255)},
	{"256", 256, "cd 0100", int64(256)},
	{"65535", 65535, "cd ffff", int64(65535)},
	{"65536", int32(65536), "ce 00010000", int64(65536)},
	{"2**32", int64(1) << 32, "cf 0000000100000000", int64(1) << 32},
	{"2**64-1", uint64(math.MaxUint64), "cf ffffffffffffffff", uint64(math.MaxUint64)},
	{"-1", -1, "ff", int64(-1)},
	{"-32", -32, "e0", int64(-32)},
	{"-33", -33, "d0 df", int64(-33)},
	{"-128", -128, "d0 80", int64(-128)},
	{"-129", -129, "d1 ff7f", int64(-129)},
	{"-32768", -32768, "d1 8000", int64(-32768)},
	{"-32769", -32769, "d2 ffff7fff", int64(-32769)},
	{"-2**31", int64(math.MinInt32), "d2 80000000", int64(math.MinInt32)},
	{"-2**31-1", int64(math.MinInt32) - 1, "d3 ffffffff7fffffff", int64(math.MinInt32) - 1},
	{"1.5", 1.5, "cb 3ff8000000000000", 1.5},
	{"1.0", float32(1), "cb 3ff0000000000000", 1.0},
	{"''", "", "a0", ""},
	{"'a'", "a", "a1 61", "a"},
	{"'é'", "é", "a2 c3a9", "é"},
	{"'x'*31", str31, "bf" + strings.Repeat("78", 31), str31},
	{"'x'*32", str32, "d9 20" + strings.Repeat("78", 32), str32},
	{"b'\\x01'", []byte{1}, "c4 01 01", []byte{1}},
	{"b''", []byte{}, "c4 00", []byte{}},
	{"[1, 2]", []any{1, 2}, "92 01 02", []any{int64(1), int64(2)}},
	{"(1, 'a')", [2]any{1, "a"}, "92 01 a161", []any{int64(1), "a"}},
	{"[0]*16", make([]int, 16), "dc 0010" + strings.Repeat("00", 16), make16()},
	{"{'a': 1}", map[string]any{"a": 1}, "81 a161 01", map[string]any{"a": int64(1)}},
	{"{'hello': 'world', 'n': 1}", map[string]any{"n": 1, "hello": "world"},
		"82 a5 68656c6c6f a5 776f726c64 a1 6e 01", map[string]any{"hello": "world", "n": int64(1)}},
	{"{'z': None, 'a': [True]}", pyjson.Object{{Key: "z", Value: nil}, {Key: "a", Value: []any{true}}},
		"82 a17a c0 a161 91 c3", map[string]any{"z": nil, "a": []any{true}}},
	{"Timestamp(0)", time.Unix(0, 0), "d6 ff 00000000", time.Unix(0, 0).UTC()},
	{"Timestamp(1, 1)", time.Unix(1, 1), "d7 ff 0000000400000001", time.Unix(1, 1).UTC()},
	{"Timestamp(-1)", time.Unix(-1, 0), "c7 0c ff 00000000 ffffffffffffffff", time.Unix(-1, 0).UTC()},
	{"ExtType(5, b'ab')", MsgpackExt{Type: 5, Data: []byte("ab")}, "d5 05 6162", MsgpackExt{Type: 5, Data: []byte("ab")}},
	{"ExtType(5, b'abc')", MsgpackExt{Type: 5, Data: []byte("abc")}, "c7 03 05 616263", MsgpackExt{Type: 5, Data: []byte("abc")}},
}

func make16() []any {
	out := make([]any, 16)
	for i := range out {
		out[i] = int64(0)
	}
	return out
}

// TestMsgpackVectors proves the msgpack codec writes packb's bytes for each
// vector and reads them back as unpackb would.
func TestMsgpackVectors(t *testing.T) {
	c := msgpackCodec{}
	for _, v := range msgpackVectors {
		want := mustHex(t, v.hex)
		got, err := c.Marshal(v.in)
		if err != nil {
			t.Errorf("Marshal(%s): %v", v.py, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Marshal(%s) = % x, want % x", v.py, got, want)
		}
		back, err := c.Unmarshal(want)
		if err != nil {
			t.Errorf("Unmarshal(%s): %v", v.py, err)
			continue
		}
		if !reflect.DeepEqual(back, v.decoded) {
			t.Errorf("Unmarshal(%s) = %#v, want %#v", v.py, back, v.decoded)
		}
	}
}

// TestMsgpackGoTypes proves structs follow encoding/json's field rules,
// json.Number keeps int/float, float 32 input widens, and str8/16 lengths,
// arrays and maps of 16+ items use the longer headers.
func TestMsgpackGoTypes(t *testing.T) {
	c := msgpackCodec{}
	type Inner struct {
		C int `json:"c"`
	}
	type S struct {
		B    string `json:"b"`
		Skip int    `json:"-"`
		Omit string `json:"omit,omitempty"`
		A    *int
		Inner
		hidden int
	}
	got, err := c.Marshal(S{B: "x", Inner: Inner{C: 3}, hidden: 1})
	if err != nil {
		t.Fatal(err)
	}
	// {'b': 'x', 'A': None, 'c': 3}
	if want := mustHex(t, "83 a162 a178 a141 c0 a163 03"); !bytes.Equal(got, want) {
		t.Errorf("struct = % x, want % x", got, want)
	}
	// An embedded struct's fields sit where it is declared, and a shallower
	// field hides a deeper one of the same name, as with encoding/json.
	type E struct {
		X int
		Y int `json:"b"`
	}
	type S2 struct {
		E
		B string `json:"b"`
		Z int
	}
	got, err = c.Marshal(&S2{E: E{X: 1, Y: 9}, B: "s", Z: 2})
	if want := mustHex(t, "83 a158 01 a162 a173 a15a 02"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("embedded = % x, %v, want % x", got, err, want)
	}
	if j, _ := json.Marshal(S2{E: E{X: 1, Y: 9}, B: "s", Z: 2}); string(j) != `{"X":1,"b":"s","Z":2}` {
		t.Errorf("encoding/json disagrees with the vector: %s", j)
	}
	got, _ = c.Marshal([]any{json.Number("7"), json.Number("-0.5"), json.Number("18446744073709551615")})
	if want := mustHex(t, "93 07 cb bfe0000000000000 cf ffffffffffffffff"); !bytes.Equal(got, want) {
		t.Errorf("json.Number = % x, want % x", got, want)
	}
	// float 32 input from another msgpack writer.
	if v, err := c.Unmarshal(mustHex(t, "ca 3fc00000")); err != nil || v != 1.5 {
		t.Errorf("float32 = %v, %v", v, err)
	}
	long := strings.Repeat("y", 300)
	got, _ = c.Marshal(long)
	if !bytes.Equal(got[:3], []byte{0xda, 0x01, 0x2c}) {
		t.Errorf("str16 header % x", got[:3])
	}
	m := map[string]int{}
	for i := range 16 {
		m[string(rune('a'+i))] = i
	}
	got, _ = c.Marshal(m)
	if !bytes.Equal(got[:3], []byte{0xde, 0x00, 0x10}) {
		t.Errorf("map16 header % x", got[:3])
	}
	back, err := c.Unmarshal(got)
	if err != nil || len(back.(map[string]any)) != 16 {
		t.Errorf("map16 back: %v, %v", back, err)
	}
	// Bin map keys are allowed (strict_map_key allows bytes), int keys not.
	if v, err := c.Unmarshal(mustHex(t, "81 c401 6b 01")); err != nil || !reflect.DeepEqual(v, map[string]any{"k": int64(1)}) {
		t.Errorf("bin key: %v, %v", v, err)
	}
	if _, err := c.Unmarshal(mustHex(t, "81 01 01")); err == nil {
		t.Error("int map key accepted")
	}
	if _, err := c.Marshal(map[int]int{1: 1}); err == nil {
		t.Error("int map key encoded")
	}
}

// TestMsgpackMalformed proves bad input is an error, never a panic or a huge
// allocation: truncation, trailing bytes, reserved 0xc1, huge declared
// lengths, invalid UTF-8 in str, and nesting beyond 1024.
func TestMsgpackMalformed(t *testing.T) {
	c := msgpackCodec{}
	for _, h := range []string{"", "92 01", "01 01", "c1", "dd ffffffff", "db ffffffff 61", "a2 ff fe", "cd 01", "d6 ff 0000", "c7 05 ff 0000000000"} {
		if v, err := c.Unmarshal(mustHex(t, h)); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", h, v)
		}
	}
	deep := bytes.Repeat([]byte{0x91}, 2000)
	deep = append(deep, 0x00)
	if _, err := c.Unmarshal(deep); err == nil {
		t.Error("2000 levels of nesting accepted")
	}
	ok := append(bytes.Repeat([]byte{0x91}, 1000), 0x00)
	if _, err := c.Unmarshal(ok); err != nil {
		t.Errorf("1000 levels: %v", err)
	}
}
