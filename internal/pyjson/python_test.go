package pyjson

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
)

// pythonPath is the Debian interpreter the comparison runs against.
const pythonPath = "/usr/bin/python3"

// pythonScript prints, as one JSON document, json.dumps output for fixed
// values (matched by name with pythonValues below), for many floats (given by
// their bits) and strings (given by their code points), Python's
// dumps(loads(x)) for hand-written inputs, and random documents. The seed is
// fixed so a failure can be reproduced.
const pythonScript = `
import json, math, random, struct, sys

random.seed(20240611)
out = {}

values = {
    "ascii": "hello world",
    "e_acute": "caf\u00e9",
    "emoji": "\U0001F600",
    "max_rune": "\U0010FFFF",
    "controls": "".join(chr(c) for c in range(0x20)),
    "html": "<script>&amp;</script>",
    "del": "\x7f",
    "line_sep": "\u2028\u2029",
    "quotes": "\"\\/'",
    "floats": [0.1, 1.0, 0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, 1.5e-05, 123456789.123,
               1795550496.3968723, -2.5e20, 1e22, 1e100, 5e-324, 1.7976931348623157e308,
               1/3, 2.0**53, 2.0**53 + 2, 9007199254740993.0, 0.30000000000000004],
    "specials": [float("nan"), float("inf"), -float("inf")],
    "ints": [0, -1, 2**63 - 1, -2**63, 2**64 - 1],
    "bools": [True, False, None],
    "nested": {"b": [1, {"z": [], "a": {}}], "a": {"y": [[]], "x": "\u00e9"}},
    "empty_object": {},
    "empty_array": [],
    "envelope": {
        "body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"x": 1},
        "properties": {
            "correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2,
            "delivery_info": {"exchange": "ex_direct", "routing_key": "rk.direct"},
            "priority": 5, "body_encoding": "base64",
            "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed",
        },
    },
}
out["values"] = {k: json.dumps(v) for k, v in values.items()}

floats = []
for _ in range(3000):
    floats.append(struct.unpack("<d", struct.pack("<Q", random.getrandbits(64)))[0])
for _ in range(1000):
    floats.append(random.random() * 10.0 ** random.randint(-30, 30))
    floats.append(float(random.randint(-10**18, 10**18)))
    floats.append(round(random.uniform(-1e6, 1e6), random.randint(0, 8)))
    floats.append(random.choice([1, -1]) * 10.0 ** random.randint(-20, 20))
out["floats"] = [["%016x" % struct.unpack("<Q", struct.pack("<d", x))[0], json.dumps(x)] for x in floats]

def rand_cp():
    r = random.random()
    if r < 0.4:
        return random.randint(0, 0x7f)
    if r < 0.6:
        return random.randint(0x80, 0x7ff)
    if r < 0.85:
        return random.choice([random.randint(0x800, 0xd7ff), random.randint(0xe000, 0xffff)])
    return random.randint(0x10000, 0x10ffff)

strings = []
for _ in range(1000):
    cps = [rand_cp() for _ in range(random.randint(0, 12))]
    strings.append([cps, json.dumps("".join(map(chr, cps)))])
out["strings"] = strings

reparse = [
    '{"b":1,"a":[1,2,{"c":"\\u00e9<>&"}],"a":null}',
    '{"a":1,"b":2,"a":3}',
    '  [ "\\ud83d\\ude00" , "\\/" , "\\u00E9" , "\\u2028" ]  ',
    '{"x":NaN,"y":[Infinity,-Infinity],"z":-0.0}',
    '"\x7f\\u007f"',
    '{"": {"": []}}',
    '[1.5, 2.25e+30, 3e-07, -0.0001, 12345678901234567890123]',
]
def has_dups(s):
    dups = []
    def hook(pairs):
        keys = [k for k, _ in pairs]
        dups.append(len(keys) != len(set(keys)))
        return dict(pairs)
    json.loads(s, object_pairs_hook=hook)
    return any(dups)
out["reparse"] = [{"Input": s, "Dumps": json.dumps(json.loads(s)), "Dups": has_dups(s)} for s in reparse]

def rand_value(depth):
    r = random.random()
    if depth > 3 or r < 0.5:
        return random.choice([
            lambda: random.randint(-2**70, 2**70),
            lambda: random.randint(-100, 100),
            lambda: random.uniform(-1e20, 1e20) * 10.0 ** random.randint(-25, 0),
            lambda: random.choice([float("nan"), float("inf"), -float("inf"), -0.0]),
            lambda: "".join(chr(rand_cp()) for _ in range(random.randint(0, 8))),
            lambda: random.choice([True, False, None]),
        ])()
    if r < 0.75:
        return [rand_value(depth + 1) for _ in range(random.randint(0, 5))]
    return {"".join(chr(rand_cp()) for _ in range(random.randint(0, 5))): rand_value(depth + 1)
            for _ in range(random.randint(0, 5))}

out["docs"] = [json.dumps(rand_value(0)) for _ in range(500)]

sys.stdout.write(json.dumps(out))
`

// pythonValues are the Go equivalents of the script's fixed values.
var pythonValues = map[string]any{
	"ascii":    "hello world",
	"e_acute":  "café",
	"emoji":    "😀",
	"max_rune": "\U0010ffff",
	"controls": func() string {
		b := make([]byte, 0x20)
		for i := range b {
			b[i] = byte(i)
		}
		return string(b)
	}(),
	"html":     "<script>&amp;</script>",
	"del":      "\x7f",
	"line_sep": "\u2028\u2029",
	"quotes":   `"\/'`,
	"floats": []float64{0.1, 1.0, 0.0, math.Copysign(0, -1), 1e16, 1e15, 1e-5, 1e-4, 1.5e-05, 123456789.123,
		1795550496.3968723, -2.5e20, 1e22, 1e100, 5e-324, 1.7976931348623157e308,
		1.0 / 3, 1 << 53, 1<<53 + 2, 9007199254740993.0, 0.30000000000000004},
	"specials": []any{math.NaN(), math.Inf(1), math.Inf(-1)},
	"ints":     []any{0, -1, int64(math.MaxInt64), int64(math.MinInt64), uint64(math.MaxUint64)},
	"bools":    []any{true, false, nil},
	"nested": Object{
		{"b", []any{1, Object{{"z", []any{}}, {"a", map[string]any{}}}}},
		{"a", Object{{"y", []any{[]string{}}}, {"x", "é"}}},
	},
	"empty_object": map[string]string{},
	"empty_array":  []int{},
	"envelope":     envelopeObject(),
}

// TestAgainstPython proves, against the real interpreter in one process, that
// Marshal writes byte for byte what json.dumps writes for the same values
// (fixed cases, thousands of floats including random bit patterns, and
// thousands of random strings across all of Unicode), that Unmarshal reads
// Python's output including NaN and Infinity, and that UnmarshalOrdered then
// Marshal reproduces Python's output, and what Python's loads-then-dumps
// writes for hand-written input, exactly.
func TestAgainstPython(t *testing.T) {
	if _, err := os.Stat(pythonPath); err != nil {
		t.Fatalf("this test needs the Debian Python interpreter at %s: install python3 (apt-get install python3): %v", pythonPath, err)
	}
	cmd := exec.Command(pythonPath, "-I", "-c", pythonScript)
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("running %s: %v", pythonPath, err)
	}
	var py struct {
		Values     map[string]string    `json:"values"`
		Floats     [][2]string          `json:"floats"`
		RawStrings [][2]json.RawMessage `json:"strings"`
		Reparse    []struct {
			Input, Dumps string
			Dups         bool
		} `json:"reparse"`
		Docs []string `json:"docs"`
	}
	if err := json.Unmarshal(raw, &py); err != nil {
		t.Fatalf("reading the script's output: %v", err)
	}

	t.Run("values", func(t *testing.T) {
		if len(py.Values) != len(pythonValues) {
			t.Fatalf("python has %d values, Go %d", len(py.Values), len(pythonValues))
		}
		for name, want := range py.Values {
			v, ok := pythonValues[name]
			if !ok {
				t.Errorf("no Go value for %q", name)
				continue
			}
			got, err := Marshal(v)
			if err != nil || string(got) != want {
				t.Errorf("%s:\n  go %s (%v)\npython %s", name, got, err, want)
			}
		}
	})

	t.Run("floats", func(t *testing.T) {
		if len(py.Floats) < 7000 {
			t.Fatalf("only %d floats", len(py.Floats))
		}
		bad := 0
		for _, c := range py.Floats {
			bits, err := strconv.ParseUint(c[0], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			f := math.Float64frombits(bits)
			got, err := Marshal(f)
			if err != nil || string(got) != c[1] {
				t.Errorf("float %v (bits %s): go %s (%v), python %s", f, c[0], got, err, c[1])
				if bad++; bad > 20 {
					t.FailNow()
				}
			}
		}
	})

	t.Run("strings", func(t *testing.T) {
		if len(py.RawStrings) != 1000 {
			t.Fatalf("got %d strings", len(py.RawStrings))
		}
		for _, c := range py.RawStrings {
			var cps []rune
			var want string
			if err := json.Unmarshal(c[0], &cps); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(c[1], &want); err != nil {
				t.Fatal(err)
			}
			got, _ := Marshal(string(cps))
			if string(got) != want {
				t.Errorf("code points %x: go %s, python %s", cps, got, want)
				continue
			}
			back, err := Unmarshal([]byte(want))
			if err != nil || back != string(cps) {
				t.Errorf("Unmarshal(%s) = %q, %v; want %q", want, back, err, string(cps))
			}
		}
	})

	t.Run("reparse", func(t *testing.T) {
		dups := 0
		for _, c := range py.Reparse {
			v, err := UnmarshalOrdered([]byte(c.Input))
			if err != nil {
				t.Errorf("UnmarshalOrdered(%s): %v", c.Input, err)
				continue
			}
			got, err := Marshal(v)
			if err != nil || string(got) != c.Dumps {
				t.Errorf("input %s:\n  go %s (%v)\npython %s", c.Input, got, err, c.Dumps)
			}
			// A RawMessage is re-encoded as written, so duplicate keys stay.
			if c.Dups {
				dups++
				continue
			}
			got, err = Marshal(json.RawMessage(c.Input))
			if err != nil || string(got) != c.Dumps {
				t.Errorf("RawMessage %s:\n  go %s (%v)\npython %s", c.Input, got, err, c.Dumps)
			}
		}
		if dups != 2 {
			t.Errorf("%d inputs with duplicate keys, want 2", dups)
		}
	})

	t.Run("docs", func(t *testing.T) {
		specials := 0
		for _, doc := range py.Docs {
			v, err := UnmarshalOrdered([]byte(doc))
			if err != nil {
				t.Errorf("UnmarshalOrdered(%s): %v", doc, err)
				continue
			}
			got, err := Marshal(v)
			if err != nil || string(got) != doc {
				t.Errorf("round trip:\n  go %s (%v)\npython %s", got, err, doc)
			}
			if got, err := Marshal(json.RawMessage(doc)); err != nil || string(got) != doc {
				t.Errorf("RawMessage round trip:\n  go %s (%v)\npython %s", got, err, doc)
			}
			m, err := Unmarshal([]byte(doc))
			if err != nil {
				t.Errorf("Unmarshal(%s): %v", doc, err)
				continue
			}
			if !reflect.DeepEqual(m, toMap(v)) {
				t.Errorf("Unmarshal and UnmarshalOrdered disagree on %s", doc)
			}
			specials += countSpecials(m)
		}
		if specials == 0 {
			t.Error("no NaN or Infinity in the random documents: the test lost its coverage")
		}
	})
}

// countSpecials counts the NaN, Infinity and -Infinity numbers in v.
func countSpecials(v any) int {
	switch x := v.(type) {
	case json.Number:
		if x == "NaN" || x == "Infinity" || x == "-Infinity" {
			return 1
		}
	case []any:
		n := 0
		for _, e := range x {
			n += countSpecials(e)
		}
		return n
	case map[string]any:
		n := 0
		for _, e := range x {
			n += countSpecials(e)
		}
		return n
	}
	return 0
}
