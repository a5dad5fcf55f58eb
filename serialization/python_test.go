package serialization

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/internal/testenv"
)

// runPython runs script with /usr/bin/python3, feeding stdin, and returns its
// standard output. A missing interpreter or Kombu is a test failure, never a
// skip.
func runPython(t *testing.T, script string, stdin []byte) []byte {
	t.Helper()
	testenv.RequirePython(t, "kombu")
	cmd := testenv.PythonCommand(context.Background(), "-c", script)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 failed: %v\n%s", err, stderr.String())
	}
	return out
}

// pythonRefs is what real Kombu produces, computed once by one python3
// process and shared by the tests below.
type pythonRefs struct {
	Version string `json:"version"`
	// Dumps holds kombu.serialization.dumps(value, serializer) per case.
	Dumps map[string]struct {
		ContentType     string `json:"ct"`
		ContentEncoding string `json:"ce"`
		Body            []byte `json:"body"`
	} `json:"dumps"`
	// Compressed holds kombu.compression.compress(payload, name).
	Compressed map[string]struct {
		ContentType string `json:"ct"`
		Body        []byte `json:"body"`
	} `json:"compressed"`
	Payload []byte `json:"payload"`
	// Aliases is kombu.compression._aliases.
	Aliases map[string]string `json:"aliases"`
	// Disabled is the registry's default disabled content types.
	Disabled []string `json:"disabled"`
}

const refScript = `
import base64, json, sys
import kombu
from kombu.serialization import dumps, registry
from kombu import compression

def b64(b):
    if isinstance(b, str):
        b = b.encode('utf-8')
    return base64.b64encode(b).decode()

cases = {
    'dict': ({'hello': 'world', 'n': 1, 'u': '\u00e9'}, 'json'),
    'nested': ({'b': [1, 2.5, None, True, False], 'a': {'<&>': '\U0001f600 \x7f "q"'}}, 'json'),
    'floats': ([1.0, 1e16, 1.5e-05, 0.1, -0.0, 123456789.123], 'json'),
    'celery': ([[2, 3], {}, {'callbacks': None, 'errbacks': None, 'chain': None, 'chord': None}], 'json'),
    'str_json': ('caf\u00e9', 'json'),
    'str_default': ('caf\u00e9', None),
    'bytes_default': (b'\x00\x01raw', None),
    'dict_default': ({'k': [1]}, None),
    'raw_str': ('caf\u00e9', 'raw'),
    'raw_bytes': (b'\xff\x00', 'raw'),
}
out = {'version': kombu.__version__, 'dumps': {}, 'compressed': {}}
for name, (value, ser) in cases.items():
    ct, ce, body = dumps(value, serializer=ser)
    out['dumps'][name] = {'ct': ct, 'ce': ce, 'body': b64(body)}
payload = json.dumps({'numbers': list(range(200)), 'text': 'x' * 500}).encode()
out['payload'] = b64(payload)
for name in ['zlib', 'gzip', 'application/x-gzip', 'bzip2', 'bzip']:
    body, ct = compression.compress(payload, name)
    out['compressed'][name] = {'ct': ct, 'body': b64(body)}
big, _ = compression.compress(b'\x00' * (1 << 20), 'bzip2')
out['compressed']['bzip2_big'] = {'ct': 'application/x-bz2', 'body': b64(big)}
two = compression.compress(b'abc', 'bzip2')[0] + compression.compress(b'def', 'bzip2')[0]
out['compressed']['bzip2_two_streams'] = {'ct': 'application/x-bz2', 'body': b64(two)}
out['aliases'] = dict(compression._aliases)
out['disabled'] = sorted(registry._disabled_content_types)
json.dump(out, sys.stdout)
`

var (
	refsOnce sync.Once
	refs     pythonRefs
	refsErr  string
)

func getRefs(t *testing.T) *pythonRefs {
	t.Helper()
	refsOnce.Do(func() {
		out := runPython(t, refScript, nil)
		if err := json.Unmarshal(out, &refs); err != nil {
			refsErr = err.Error()
		}
	})
	if refsErr != "" {
		t.Fatalf("python output: %s", refsErr)
	}
	if refs.Dumps == nil {
		t.Fatal("python reference output missing")
	}
	return &refs
}

// TestEncodeMatchesPythonDumps proves Encode writes exactly the content type,
// content encoding and bytes that Kombu's dumps writes, for JSON (including
// Python's float repr, ensure_ascii escapes and unescaped <&>) and for the
// default and raw cases.
func TestEncodeMatchesPythonDumps(t *testing.T) {
	r := getRefs(t)
	if !strings.HasPrefix(r.Version, "5.") {
		t.Fatalf("kombu %s; these references are for Kombu 5", r.Version)
	}
	cases := map[string]struct {
		v          any
		serializer string
	}{
		"dict":          {obj("hello", "world", "n", 1, "u", "é"), "json"},
		"nested":        {obj("b", []any{1, 2.5, nil, true, false}, "a", obj("<&>", "\U0001f600 \x7f \"q\"")), "json"},
		"floats":        {[]any{1.0, 1e16, 1.5e-05, 0.1, math.Copysign(0, -1), 123456789.123}, "json"},
		"celery":        {[]any{[]any{2, 3}, map[string]any{}, obj("callbacks", nil, "errbacks", nil, "chain", nil, "chord", nil)}, "json"},
		"str_json":      {"café", "json"},
		"str_default":   {"café", ""},
		"bytes_default": {[]byte("\x00\x01raw"), ""},
		"dict_default":  {map[string]any{"k": []any{1}}, ""},
		"raw_str":       {"café", "raw"},
		"raw_bytes":     {[]byte{0xff, 0}, "raw"},
	}
	for name, c := range cases {
		want, ok := r.Dumps[name]
		if !ok {
			t.Fatalf("no python reference for %s", name)
		}
		e, err := NewRegistry().Encode(c.v, c.serializer)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.ContentType != want.ContentType || e.ContentEncoding != want.ContentEncoding || !bytes.Equal(e.Body, want.Body) {
			t.Errorf("%s:\n go     %s %s %q\n python %s %s %q", name, e.ContentType, e.ContentEncoding, e.Body,
				want.ContentType, want.ContentEncoding, want.Body)
		}
	}
}

// TestPythonCompressedBodiesDecode proves bodies compressed by real Kombu
// (zlib under every alias, bzip2, concatenated bzip2 streams) decompress
// here, that header values and aliases resolve as in kombu.compression, and
// that a Python-made bzip2 bomb stops at the limit.
func TestPythonCompressedBodiesDecode(t *testing.T) {
	r := getRefs(t)
	reg := NewRegistry()
	for _, name := range []string{"zlib", "gzip", "application/x-gzip", "bzip2", "bzip"} {
		c := r.Compressed[name]
		if name == "zlib" && !bytes.HasPrefix(c.Body, []byte{0x78, 0x9c}) {
			t.Errorf("python zlib body starts % x, not a zlib header", c.Body[:2])
		}
		for _, key := range []string{c.ContentType, name} {
			out, err := reg.Decompress(key, c.Body)
			if err != nil || !bytes.Equal(out, r.Payload) {
				t.Errorf("Decompress(%q) of python %s body: %v", key, name, err)
			}
		}
		// Our Compress names the same header value as Kombu.
		if ct, _, err := reg.Compress(name, r.Payload); strings.HasPrefix(name, "bzip") {
			if err == nil {
				t.Errorf("Compress(%q) worked; bzip2 is read-only", name)
			}
		} else if err != nil || ct != c.ContentType {
			t.Errorf("Compress(%q) = %q, %v; kombu says %q", name, ct, err, c.ContentType)
		}
	}
	for alias, ct := range r.Aliases {
		_, _, err := reg.compressor(alias, OpDecompress)
		if strings.HasPrefix(alias, "bz") || alias == "zlib" || alias == "gzip" {
			if err != nil {
				t.Errorf("kombu alias %q -> %q unknown here: %v", alias, ct, err)
			}
		} else if ue := (*UnknownCompressionError)(nil); !errors.As(err, &ue) || ue.ContentType != ct {
			t.Errorf("kombu alias %q -> %q: %v", alias, ct, err)
		}
	}
	two, err := reg.Decompress("bzip2", r.Compressed["bzip2_two_streams"].Body)
	if err != nil || string(two) != "abcdef" {
		t.Errorf("two bzip2 streams: %q, %v", two, err)
	}
	big := r.Compressed["bzip2_big"].Body
	if _, err := reg.DecompressLimit(ContentTypeBzip2, big, 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("bzip2 over the limit: %v", err)
	}
	if out, err := reg.DecompressLimit(ContentTypeBzip2, big, 1<<20); err != nil || len(out) != 1<<20 {
		t.Errorf("bzip2 at the limit: %d bytes, %v", len(out), err)
	}
}

// TestDefaultDisabledMatchesKombu proves the content types refused without
// an accept list are exactly Kombu's defaults.
func TestDefaultDisabledMatchesKombu(t *testing.T) {
	r := getRefs(t)
	reg := NewRegistry()
	for _, ct := range r.Disabled {
		if _, err := reg.Decode([]byte{1}, ct, "binary", nil); !errors.Is(err, ErrContentDisallowed) {
			t.Errorf("%s is disabled in Kombu but decoded here: %v", ct, err)
		}
	}
	if len(r.Disabled) != 3 {
		t.Errorf("kombu disables %v; expected pickle, yaml, msgpack", r.Disabled)
	}
}

const loadsScript = `
import ast, base64, json, sys
from kombu.serialization import loads, prepare_accept_content
from kombu.compression import decompress

results = []
for c in json.load(sys.stdin):
    try:
        body = base64.b64decode(c['body'])
        if c['compression']:
            body = decompress(body, c['compression'])
        accept = prepare_accept_content(c['accept']) if c['accept'] is not None else None
        got = loads(body, c['ct'], c['ce'], accept=accept)
        want = ast.literal_eval(c['want'])
        ok = got == want and type(got) is type(want)
        results.append({'name': c['name'], 'ok': ok, 'got': repr(got)})
    except Exception as e:
        results.append({'name': c['name'], 'ok': False, 'got': '%s: %s' % (type(e).__name__, e)})
json.dump(results, sys.stdout)
`

// TestPythonDecodesOurBytes proves what Encode and Prepare write (json,
// zlib-compressed json, text, bytes, raw) is read back by Kombu's loads and
// decompress to the intended Python value, all in one python3 process.
func TestPythonDecodesOurBytes(t *testing.T) {
	reg := NewRegistry()
	type pyCase struct {
		Name        string   `json:"name"`
		Body        []byte   `json:"body"`
		ContentType string   `json:"ct"`
		ContentEnc  string   `json:"ce"`
		Compression string   `json:"compression"`
		Accept      []string `json:"accept"`
		Want        string   `json:"want"`
	}
	big := map[string]any{"text": strings.Repeat("kombu ", 1000), "n": []any{1, 2, 3}}
	inputs := []struct {
		name string
		v    any
		opts PrepareOptions
		want string
	}{
		{"json", obj("hello", "world", "n", 1, "u", "é", "f", 2.0), PrepareOptions{Serializer: "json"},
			`{'hello': 'world', 'n': 1, 'u': 'é', 'f': 2.0}`},
		{"json_default", map[string]any{"emoji": "😀", "nil": nil, "list": []any{true, false, -1.5}}, PrepareOptions{},
			`{'emoji': '😀', 'nil': None, 'list': [True, False, -1.5]}`},
		{"json_zlib", big, PrepareOptions{Serializer: "json", Compression: "zlib"},
			`{'text': '` + strings.Repeat("kombu ", 1000) + `', 'n': [1, 2, 3]}`},
		{"json_gzip_alias", []any{"a", 1}, PrepareOptions{Compression: "gzip"}, `['a', 1]`},
		{"text", "héllo", PrepareOptions{}, `'héllo'`},
		{"bytes", []byte{0, 1, 0xff}, PrepareOptions{}, `b'\x00\x01\xff'`},
		{"raw_str", "héllo", PrepareOptions{Serializer: "raw"}, `'héllo'`},
		{"raw_bytes_zlib", []byte{0, 1, 0xff}, PrepareOptions{Serializer: "raw", Compression: "application/x-gzip"}, `b'\x00\x01\xff'`},
		{"explicit_latin1", "é", PrepareOptions{ContentType: "text/x-custom", ContentEncoding: "latin-1"}, `'é'`},
	}
	var cases []pyCase
	for _, in := range inputs {
		e, err := reg.Prepare(in.v, in.opts)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		accept := []string{"json", "text/plain", "text/x-custom"}
		cases = append(cases, pyCase{in.name, e.Body, e.ContentType, e.ContentEncoding, e.Compression, accept, in.want})
	}
	stdin, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	out := runPython(t, loadsScript, stdin)
	var results []struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
		Got  string `json:"got"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	if len(results) != len(cases) {
		t.Fatalf("python returned %d results for %d cases", len(results), len(cases))
	}
	for i, res := range results {
		if !res.OK {
			t.Errorf("%s: python loads gave %s, want %s", res.Name, res.Got, cases[i].Want)
		}
	}
}

// obj builds an ordered JSON object from alternating keys and values, a
// Python dict literal's equivalent.
func obj(kv ...any) pyjson.Object {
	var o pyjson.Object
	for i := 0; i < len(kv); i += 2 {
		o = append(o, pyjson.Member{Key: kv[i].(string), Value: kv[i+1]})
	}
	return o
}
