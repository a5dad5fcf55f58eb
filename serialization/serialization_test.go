package serialization

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// spyCodec counts every call that would decode, so tests can prove a refused
// body never reaches a decoder.
type spyCodec struct {
	ct        string
	unmarshal atomic.Int64
	into      atomic.Int64
}

func (s *spyCodec) ContentType() string           { return s.ct }
func (s *spyCodec) ContentEncoding() string       { return "utf-8" }
func (s *spyCodec) Marshal(v any) ([]byte, error) { return []byte(fmt.Sprint(v)), nil }
func (s *spyCodec) Unmarshal(data []byte) (any, error) {
	s.unmarshal.Add(1)
	return "spied:" + string(data), nil
}
func (s *spyCodec) UnmarshalInto(data []byte, v any) error {
	s.into.Add(1)
	*(v.(*string)) = "spied:" + string(data)
	return nil
}
func (s *spyCodec) calls() int64 { return s.unmarshal.Load() + s.into.Load() }

// assertDisallowed checks that err is a content refusal by both errors.Is and
// errors.As, with the given content type and reason.
func assertDisallowed(t *testing.T, err error, ct, reason string) {
	t.Helper()
	if !errors.Is(err, ErrContentDisallowed) {
		t.Fatalf("err = %v, want ErrContentDisallowed", err)
	}
	var cd *ContentDisallowedError
	if !errors.As(err, &cd) {
		t.Fatalf("err = %T, want *ContentDisallowedError", err)
	}
	if cd.ContentType != ct || cd.Reason != reason {
		t.Fatalf("refusal = %+v, want content type %q reason %q", cd, ct, reason)
	}
}

// TestCodecRoundTrips proves every built-in codec that can encode gives back
// what it was given (json and msgpack as generic values).
func TestCodecRoundTrips(t *testing.T) {
	r := NewRegistry()
	cases := []struct {
		serializer string
		in         any
		want       any
	}{
		{"json", map[string]any{"a": []any{1, "x", nil, true}}, map[string]any{"a": []any{json.Number("1"), "x", nil, true}}},
		{"msgpack", map[string]any{"a": []any{1, "x", nil, true, 1.5, []byte{0}}}, map[string]any{"a": []any{int64(1), "x", nil, true, 1.5, []byte{0}}}},
		{"raw", []byte{0, 1, 0xff}, []byte{0, 1, 0xff}},
		{"raw", "héllo", "héllo"},
		{"binary", []byte("b"), []byte("b")},
		{"", "text body", "text body"},
		{"", []byte{0xff, 0}, []byte{0xff, 0}},
	}
	for _, c := range cases {
		e, err := r.Encode(c.in, c.serializer)
		if err != nil {
			t.Fatalf("Encode(%v, %q): %v", c.in, c.serializer, err)
		}
		got, err := r.Decode(e.Body, e.ContentType, e.ContentEncoding, []string{"json", "msgpack", "text/plain"})
		if err != nil {
			t.Fatalf("Decode(%q): %v", c.serializer, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q round trip: got %#v, want %#v", c.serializer, got, c.want)
		}
	}
}

// TestEncodeDefaults proves Encode picks content types as Kombu's dumps does
// when no serializer is given, and for raw.
func TestEncodeDefaults(t *testing.T) {
	r := NewRegistry()
	type point struct {
		Y int    `json:"y"`
		X string `json:"x"`
	}
	raw := []byte{0, 'r', 'a', 'w'}
	cases := []struct {
		in         any
		serializer string
		ct, ce     string
		body       string
	}{
		{raw, "", "application/data", "binary", "\x00raw"},
		{"héllo", "", "text/plain", "utf-8", "héllo"},
		{map[string]any{"b": 1, "a": "é"}, "", "application/json", "utf-8", `{"a": "\u00e9", "b": 1}`},
		{point{Y: 2, X: "<&>"}, "", "application/json", "utf-8", `{"y": 2, "x": "<&>"}`},
		{"a string", "json", "application/json", "utf-8", `"a string"`},
		{"héllo", "raw", "application/data", "utf-8", "héllo"},
		{raw, "raw", "application/data", "binary", "\x00raw"},
	}
	for _, c := range cases {
		e, err := r.Encode(c.in, c.serializer)
		if err != nil {
			t.Fatalf("Encode(%#v, %q): %v", c.in, c.serializer, err)
		}
		if e.ContentType != c.ct || e.ContentEncoding != c.ce || string(e.Body) != c.body || e.Compression != "" {
			t.Errorf("Encode(%#v, %q) = %+v / %q, want %s %s %q", c.in, c.serializer, e, e.Body, c.ct, c.ce, c.body)
		}
	}
	// A []byte body is sent as is, like Kombu returning the same object.
	if e, _ := r.Encode(raw, ""); &e.Body[0] != &raw[0] {
		t.Error("Encode copied a []byte body")
	}
}

// TestEncodeErrors proves the refusals of Encode: unknown, yaml and pickle
// names match ErrUnknownSerializer; raw of a non-string and invalid UTF-8
// are *EncodeError.
func TestEncodeErrors(t *testing.T) {
	r := NewRegistry()
	for _, name := range []string{"yaml", "pickle", "nosuch"} {
		_, err := r.Encode(map[string]any{"a": 1}, name)
		var ue *UnknownSerializerError
		if !errors.Is(err, ErrUnknownSerializer) || !errors.As(err, &ue) || ue.Name != name || ue.Op != OpEncode {
			t.Errorf("Encode(%q) err = %v, want *UnknownSerializerError", name, err)
		}
	}
	for _, c := range []struct {
		v          any
		serializer string
	}{{42, "raw"}, {"\xff", ""}, {"\xff", "raw"}, {func() {}, "json"}, {"\xff", "msgpack"}} {
		_, err := r.Encode(c.v, c.serializer)
		var ee *EncodeError
		if !errors.As(err, &ee) {
			t.Errorf("Encode(%T, %q) err = %v, want *EncodeError", c.v, c.serializer, err)
		}
	}
}

// TestAcceptRefusalNeverDecodes proves a refused content type returns
// ErrContentDisallowed (errors.Is and errors.As) and that the decoder is
// never called, for Decode and DecodeInto, with an accept list and with
// the default (nil) list for a disabled type.
func TestAcceptRefusalNeverDecodes(t *testing.T) {
	r := NewRegistry()
	spy := &spyCodec{ct: "application/x-spy"}
	r.Register("spy", spy)

	_, err := r.Decode([]byte("x"), "application/x-spy", "utf-8", []string{"json"})
	assertDisallowed(t, err, "application/x-spy", ReasonUntrusted)
	var s string
	err = r.DecodeInto([]byte("x"), "application/x-spy", "utf-8", []string{"json"}, &s)
	assertDisallowed(t, err, "application/x-spy", ReasonUntrusted)
	_, err = r.Decode([]byte("x"), "application/x-spy", "utf-8", []string{})
	assertDisallowed(t, err, "application/x-spy", ReasonUntrusted)
	if n := spy.calls(); n != 0 {
		t.Fatalf("decoder called %d times for refused content", n)
	}

	// A decoder registered for a disabled type (msgpack) stays unused
	// without an accept list.
	mspy := &spyCodec{ct: ContentTypeMsgpack}
	r.Register("msgpack", mspy)
	_, err = r.Decode([]byte{0x01}, ContentTypeMsgpack, "binary", nil)
	assertDisallowed(t, err, ContentTypeMsgpack, ReasonDisabled)
	if n := mspy.calls(); n != 0 {
		t.Fatalf("disabled decoder called %d times", n)
	}

	// Accepted, the same spy runs: the refusal above was the accept check.
	if v, err := r.Decode([]byte("x"), "application/x-spy", "utf-8", []string{"spy"}); err != nil || v != "spied:x" {
		t.Fatalf("accepted spy: %v, %v", v, err)
	}
	if err := r.DecodeInto([]byte("y"), "application/x-spy", "utf-8", []string{"application/x-spy"}, &s); err != nil || s != "spied:y" {
		t.Fatalf("accepted spy into: %q, %v", s, err)
	}
	// New content types are enabled by default, as in Kombu.
	if _, err := r.Decode([]byte("z"), "application/x-spy", "utf-8", nil); err != nil {
		t.Fatalf("nil accept refused a registered type: %v", err)
	}
}

// TestPickleAlwaysRefused proves pickle is refused whatever the accept list
// says, and that even a decoder registered for its content type never runs.
func TestPickleAlwaysRefused(t *testing.T) {
	r := NewRegistry()
	spy := &spyCodec{ct: ContentTypePickle}
	r.Register("pickle", spy)
	body := []byte("\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.") // pickle.dumps(1)
	for _, accept := range [][]string{nil, {"pickle"}, {ContentTypePickle}, {"json", "pickle", "msgpack"}} {
		_, err := r.Decode(body, ContentTypePickle, "binary", accept)
		assertDisallowed(t, err, ContentTypePickle, ReasonUnsafe)
		var v any
		err = r.DecodeInto(body, ContentTypePickle, "binary", accept, &v)
		assertDisallowed(t, err, ContentTypePickle, ReasonUnsafe)
	}
	if n := spy.calls(); n != 0 {
		t.Fatalf("pickle decoder called %d times", n)
	}
	// The built-in pickle codec, reached directly, refuses too.
	c, ok := NewRegistry().Lookup("pickle")
	if !ok {
		t.Fatal("pickle not registered")
	}
	if _, err := c.Unmarshal(body); !errors.Is(err, ErrContentDisallowed) {
		t.Fatalf("pickle Unmarshal err = %v", err)
	}
}

// TestAcceptNamesAndContentTypes proves accept lists take names and content
// types alike, that application/data and application/text (and a missing
// content type) are always trusted, that text/plain is not, and that an
// unknown name is an ErrUnknownSerializer error, as prepare_accept_content.
func TestAcceptNamesAndContentTypes(t *testing.T) {
	r := NewRegistry()
	js := []byte(`{"a": 1}`)
	for _, accept := range [][]string{{"json"}, {"application/json"}, {"msgpack", "json"}} {
		v, err := r.Decode(js, ContentTypeJSON, "utf-8", accept)
		if err != nil || !reflect.DeepEqual(v, map[string]any{"a": json.Number("1")}) {
			t.Errorf("accept %v: %v, %v", accept, v, err)
		}
	}
	mp := []byte{0x81, 0xa1, 'a', 0x01}
	if _, err := r.Decode(mp, ContentTypeMsgpack, "binary", []string{"json"}); !errors.Is(err, ErrContentDisallowed) {
		t.Errorf("msgpack with accept json: %v", err)
	}
	if v, err := r.Decode(mp, ContentTypeMsgpack, "binary", []string{"msgpack"}); err != nil || !reflect.DeepEqual(v, map[string]any{"a": int64(1)}) {
		t.Errorf("msgpack accepted: %v, %v", v, err)
	}
	// Always trusted, even with an empty accept list.
	for _, ct := range []string{"", ContentTypeData, ContentTypeAppText} {
		v, err := r.Decode([]byte("hi"), ct, "", []string{})
		if err != nil || v != "hi" {
			t.Errorf("trusted %q: %v, %v", ct, v, err)
		}
	}
	// text/plain must be listed.
	_, err := r.Decode([]byte("hi"), ContentTypeText, "utf-8", []string{"json"})
	assertDisallowed(t, err, ContentTypeText, ReasonUntrusted)
	if v, err := r.Decode([]byte("hi"), ContentTypeText, "utf-8", []string{"json", "text/plain"}); err != nil || v != "hi" {
		t.Errorf("text/plain listed: %v, %v", v, err)
	}
	// Unknown names fail before anything is decoded.
	_, err = r.Decode(js, ContentTypeJSON, "utf-8", []string{"json", "nosuch"})
	var ue *UnknownSerializerError
	if !errors.Is(err, ErrUnknownSerializer) || !errors.As(err, &ue) || ue.Name != "nosuch" || ue.Op != OpAccept {
		t.Errorf("unknown accept name: %v", err)
	}
	got, err := r.PrepareAccept([]string{"json", "application/x-custom", "raw", "yaml"})
	want := []string{ContentTypeJSON, "application/x-custom", ContentTypeData, ContentTypeYAML}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("PrepareAccept = %v, %v", got, err)
	}
	if got, err := r.PrepareAccept(nil); got != nil || err != nil {
		t.Errorf("PrepareAccept(nil) = %v, %v", got, err)
	}
}

// TestDefaultAcceptDisabled proves Decode with a nil accept list refuses
// exactly Kombu's disabled types (msgpack, yaml, pickle) and passes others.
func TestDefaultAcceptDisabled(t *testing.T) {
	r := NewRegistry()
	for _, ct := range []string{ContentTypeMsgpack, ContentTypeYAML} {
		_, err := r.Decode([]byte{1}, ct, "binary", nil)
		assertDisallowed(t, err, ct, ReasonDisabled)
	}
	for _, ct := range []string{ContentTypeJSON, ContentTypeText, ContentTypeData, "application/x-whatever"} {
		if _, err := r.Decode([]byte("1"), ct, "utf-8", nil); err != nil {
			t.Errorf("%s refused by default: %v", ct, err)
		}
	}
}

// TestDecodeFallbacks proves Kombu's loads rules after the accept check:
// empty bodies are returned undecoded, bodies without a decoder become text
// in their charset or stay bytes when binary, and failures are *DecodeError.
func TestDecodeFallbacks(t *testing.T) {
	r := NewRegistry()
	spy := &spyCodec{ct: "application/x-spy"}
	r.Register("spy", spy)
	if v, err := r.Decode(nil, "application/x-spy", "utf-8", nil); err != nil || !reflect.DeepEqual(v, []byte{}) || spy.calls() != 0 {
		t.Errorf("empty body: %#v, %v, decoder calls %d", v, err, spy.calls())
	}
	if v, err := r.Decode([]byte{}, ContentTypeJSON, "utf-8", nil); err != nil || !reflect.DeepEqual(v, []byte{}) {
		t.Errorf("empty json body: %#v, %v", v, err)
	}
	cases := []struct {
		body []byte
		ct   string
		ce   string
		want any
	}{
		{[]byte("plain"), "", "", "plain"},
		{[]byte("plain"), "application/x-unknown", "UTF-8", "plain"},
		{[]byte{0xe9}, "text/plain", "latin-1", "é"},
		{[]byte{0xe9}, "text/plain", "ISO-8859-1", "é"},
		{[]byte("abc"), "text/plain", "us-ascii", "abc"},
		{[]byte{0xff, 0}, "", "binary", []byte{0xff, 0}},
		{[]byte{0xff, 0}, "application/x-unknown", "ASCII-8BIT", []byte{0xff, 0}},
	}
	for _, c := range cases {
		v, err := r.Decode(c.body, c.ct, c.ce, nil)
		if err != nil || !reflect.DeepEqual(v, c.want) {
			t.Errorf("Decode(%q, %q, %q) = %#v, %v; want %#v", c.body, c.ct, c.ce, v, err, c.want)
		}
	}
	bad := []struct {
		body   []byte
		ct, ce string
	}{
		{[]byte{0xff}, "", "utf-8"},
		{[]byte{0xe9}, "text/plain", "ascii"},
		{[]byte("x"), "text/plain", "klingon"},
		{[]byte("{"), ContentTypeJSON, "utf-8"},
		{[]byte("\"\xff\""), ContentTypeJSON, "utf-8"},
		{[]byte{0x92, 0x01}, ContentTypeMsgpack, "binary"},
	}
	for _, c := range bad {
		_, err := r.Decode(c.body, c.ct, c.ce, []string{"json", "msgpack", "text/plain"})
		var de *DecodeError
		want := c.ct
		if want == "" {
			want = ContentTypeData
		}
		if !errors.As(err, &de) || de.ContentType != want {
			t.Errorf("Decode(%q, %q, %q) err = %v, want *DecodeError", c.body, c.ct, c.ce, err)
		}
	}
	// yaml, once accepted, is a clear "not installed" error, not a decode
	// failure.
	_, err := r.Decode([]byte("a: 1"), ContentTypeYAML, "utf-8", []string{"yaml"})
	var ue *UnknownSerializerError
	if !errors.Is(err, ErrUnknownSerializer) || !errors.As(err, &ue) || ue.Name != "yaml" || ue.Op != OpDecode {
		t.Errorf("yaml decode err = %v", err)
	}
}

// TestDecodeInto proves DecodeInto fills structs through the JSON codec and
// other values by assignment, and reports mismatches as *DecodeError.
func TestDecodeInto(t *testing.T) {
	r := NewRegistry()
	var p struct {
		Hello string `json:"hello"`
		N     int    `json:"n"`
		Any   any    `json:"any"`
	}
	if err := r.DecodeInto([]byte(`{"hello": "world", "n": 1, "any": 2.5}`), ContentTypeJSON, "utf-8", []string{"json"}, &p); err != nil {
		t.Fatal(err)
	}
	if p.Hello != "world" || p.N != 1 || p.Any != json.Number("2.5") {
		t.Errorf("got %+v", p)
	}
	var s string
	if err := r.DecodeInto([]byte("text"), ContentTypeText, "utf-8", nil, &s); err != nil || s != "text" {
		t.Errorf("string: %q, %v", s, err)
	}
	var b []byte
	if err := r.DecodeInto([]byte{1, 2}, "", "binary", nil, &b); err != nil || !bytes.Equal(b, []byte{1, 2}) {
		t.Errorf("bytes: %v, %v", b, err)
	}
	var m map[string]any
	if err := r.DecodeInto([]byte{0x81, 0xa1, 'k', 0xc0}, ContentTypeMsgpack, "binary", []string{"msgpack"}, &m); err != nil || !reflect.DeepEqual(m, map[string]any{"k": nil}) {
		t.Errorf("msgpack map: %v, %v", m, err)
	}
	var de *DecodeError
	// A text body converts into a []byte (see TestDecodeIntoStringAndBytes).
	if err := r.DecodeInto([]byte("text"), ContentTypeText, "utf-8", nil, &b); err != nil || string(b) != "text" {
		t.Errorf("string into []byte: %q, %v", b, err)
	}
	if err := r.DecodeInto([]byte(`{"n": 1} x`), ContentTypeJSON, "utf-8", nil, &p); !errors.As(err, &de) {
		t.Errorf("trailing data: %v", err)
	}
	if err := r.DecodeInto([]byte(`1`), ContentTypeJSON, "utf-8", nil, p); !errors.As(err, &de) {
		t.Errorf("non-pointer: %v", err)
	}
}

// TestPrepare proves Prepare follows Producer._prepare: explicit content
// types take the body as is (strings encoded with the given charset), and
// compression is applied last with the canonical header value.
func TestPrepare(t *testing.T) {
	r := NewRegistry()
	e, err := r.Prepare("é", PrepareOptions{ContentType: "text/x-custom", ContentEncoding: "latin-1"})
	if err != nil || e.ContentType != "text/x-custom" || e.ContentEncoding != "latin-1" || !bytes.Equal(e.Body, []byte{0xe9}) {
		t.Errorf("explicit latin-1: %+v, %v", e, err)
	}
	e, err = r.Prepare([]byte{1}, PrepareOptions{ContentType: "application/x-thing"})
	if err != nil || e.ContentEncoding != "binary" {
		t.Errorf("explicit bytes: %+v, %v", e, err)
	}
	e, err = r.Prepare("s", PrepareOptions{ContentType: "text/plain"})
	if err != nil || e.ContentEncoding != "utf-8" {
		t.Errorf("explicit string: %+v, %v", e, err)
	}
	if _, err = r.Prepare(1, PrepareOptions{ContentType: "application/x-thing"}); err == nil {
		t.Error("explicit content type with an int body: no error")
	}
	e, err = r.Prepare(map[string]any{"z": 1}, PrepareOptions{Compression: "zlib"})
	if err != nil || e.Compression != ContentTypeZlib || e.ContentType != ContentTypeJSON {
		t.Fatalf("compressed: %+v, %v", e, err)
	}
	plain, err := r.Decompress(e.Compression, e.Body)
	if err != nil || string(plain) != `{"z": 1}` {
		t.Errorf("decompressed %q, %v", plain, err)
	}
	if _, err = r.Prepare("x", PrepareOptions{Compression: "xz"}); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("xz: %v", err)
	}
}

// TestRegisterAndLookup proves Register's programmer-error panics, alias
// lookup and lookup by content type.
func TestRegisterAndLookup(t *testing.T) {
	r := NewRegistry()
	for name, f := range map[string]func(){
		"empty name":   func() { r.Register("", jsonCodec{}) },
		"nil codec":    func() { r.Register("x", nil) },
		"reserved raw": func() { r.Register("raw", jsonCodec{}) },
		"empty alias":  func() { r.Register("x", jsonCodec{}, "") },
		"no ctype":     func() { r.Register("x", &spyCodec{}) },
		"compress nil": func() { r.RegisterCompression("application/x", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	spy := &spyCodec{ct: "application/x-spy"}
	r.Register("spy", spy, "spy2")
	for _, k := range []string{"spy", "spy2", "application/x-spy"} {
		if c, ok := r.Lookup(k); !ok || c != spy {
			t.Errorf("Lookup(%q) = %v, %v", k, c, ok)
		}
	}
	if e, err := r.Encode(7, "spy2"); err != nil || e.ContentType != "application/x-spy" || string(e.Body) != "7" {
		t.Errorf("Encode via alias: %+v, %v", e, err)
	}
	for _, k := range []string{"json", "application/json", "msgpack", "yaml", "pickle", "raw", "binary"} {
		if _, ok := r.Lookup(k); !ok {
			t.Errorf("Lookup(%q) missing", k)
		}
	}
	if _, ok := r.Lookup(ContentTypeData); ok {
		t.Error("application/data has a decoder; Kombu has none")
	}
	if _, ok := r.Lookup("nosuch"); ok {
		t.Error("Lookup(nosuch) found something")
	}
}

// TestConcurrentUse proves the registry is safe under concurrent Register,
// Encode, Decode and compression (run with -race).
func TestConcurrentUse(t *testing.T) {
	r := NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				r.Register(fmt.Sprintf("c%d", i), &spyCodec{ct: fmt.Sprintf("application/x-c%d", j%3)})
				r.RegisterCompression(fmt.Sprintf("application/x-z%d", i), zlibCompressor{}, fmt.Sprintf("z%d", i))
				e, err := r.Encode(map[string]any{"i": i, "j": j}, "json")
				if err != nil {
					t.Error(err)
					return
				}
				ct, z, err := r.Compress(fmt.Sprintf("z%d", i), e.Body)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := r.DecompressLimit(ct, z, 1<<10)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Decode(body, e.ContentType, e.ContentEncoding, []string{"json"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestDefaultRegistryFunctions proves the package-level functions use
// Default.
func TestDefaultRegistryFunctions(t *testing.T) {
	e, err := Encode(pyjson.Object{{Key: "b", Value: 1}, {Key: "a", Value: 2}}, "")
	if err != nil || string(e.Body) != `{"b": 1, "a": 2}` {
		t.Fatalf("Encode: %q, %v", e.Body, err)
	}
	if _, err := Decode(e.Body, e.ContentType, e.ContentEncoding, []string{"json"}); err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := DecodeInto(e.Body, e.ContentType, e.ContentEncoding, nil, &v); err != nil || v["a"] != 2 {
		t.Fatalf("DecodeInto: %v, %v", v, err)
	}
	if _, ok := Lookup("json"); !ok {
		t.Fatal("Lookup(json)")
	}
	if got, err := PrepareAccept([]string{"json"}); err != nil || got[0] != ContentTypeJSON {
		t.Fatal(got, err)
	}
	p, err := Prepare("x", PrepareOptions{Serializer: "json", Compression: "gzip"})
	if err != nil || p.Compression != ContentTypeZlib {
		t.Fatal(p, err)
	}
	out, err := DecompressLimit("gzip", p.Body, 100)
	if err != nil || string(out) != `"x"` {
		t.Fatal(out, err)
	}
	ct, z, err := Compress("zlib", []byte("abc"))
	if err != nil || ct != ContentTypeZlib {
		t.Fatal(ct, err)
	}
	if out, err := Decompress(ct, z); err != nil || string(out) != "abc" {
		t.Fatal(out, err)
	}
}

// TestErrorMessages proves every error message carries the "kombu: " prefix
// and reads like Kombu's.
func TestErrorMessages(t *testing.T) {
	cases := map[error]string{
		&ContentDisallowedError{ContentType: ContentTypeMsgpack, Name: "msgpack", Reason: ReasonUntrusted}: "kombu: refusing to deserialize untrusted content of type msgpack (application/x-msgpack)",
		&ContentDisallowedError{ContentType: "application/x-foo", Reason: ReasonDisabled}:                  "kombu: refusing to deserialize disabled content of type application/x-foo",
		&UnknownSerializerError{Name: "foo", Op: OpAccept}:                                                 "kombu: no encoder/decoder installed for foo",
		&UnknownSerializerError{Name: "yaml", Op: OpEncode, Reason: yamlReason}:                            "kombu: no encoder installed for yaml: YAML is not implemented in kombu-go",
		&UnknownCompressionError{Name: "snappy", Op: OpCompress}:                                           `kombu: unknown compression method "snappy"`,
		&DecodeError{ContentType: ContentTypeJSON, Err: errors.New("bad")}:                                 "kombu: cannot decode application/json body: bad",
		&EncodeError{Serializer: "raw", Err: errors.New("bad")}:                                            "kombu: cannot encode with raw: bad",
	}
	for err, want := range cases {
		if err.Error() != want {
			t.Errorf("%T: %q, want %q", err, err.Error(), want)
		}
	}
	for _, err := range []error{ErrContentDisallowed, ErrUnknownSerializer, ErrUnknownCompression, ErrTooLarge,
		&ContentDisallowedError{ContentType: ContentTypePickle, Name: "pickle", Reason: ReasonUnsafe},
		&UnknownCompressionError{Name: "xz", ContentType: ContentTypeLZMA, Op: OpCompress, Reason: "r"}} {
		if msg := err.Error(); len(msg) < 7 || msg[:7] != "kombu: " {
			t.Errorf("%q lacks the kombu: prefix", msg)
		}
	}
}

// TestCheck proves Check refuses exactly what Decode refuses, without
// decoding: a missing content type is trusted application/data, pickle is
// always refused, and the spy decoder is never called.
func TestCheck(t *testing.T) {
	r := NewRegistry()
	spy := &spyCodec{ct: "application/x-spy"}
	r.Register("spy", spy)
	cases := []struct {
		ct     string
		accept []string
		reason string // "" means allowed
	}{
		{"", []string{}, ""},
		{ContentTypeAppText, []string{"json"}, ""},
		{ContentTypeJSON, nil, ""},
		{ContentTypeJSON, []string{"application/json"}, ""},
		{"application/x-spy", []string{"spy"}, ""},
		{"application/x-spy", []string{"json"}, ReasonUntrusted},
		{ContentTypeMsgpack, nil, ReasonDisabled},
		{ContentTypePickle, []string{"pickle"}, ReasonUnsafe},
		{ContentTypeText, []string{"json"}, ReasonUntrusted},
	}
	for _, c := range cases {
		err := r.Check(c.ct, c.accept)
		_, derr := r.Decode([]byte("1"), c.ct, "utf-8", c.accept)
		if c.reason == "" {
			if err != nil || derr != nil {
				t.Errorf("Check(%q, %v) = %v, Decode err %v; want allowed", c.ct, c.accept, err, derr)
			}
			continue
		}
		assertDisallowed(t, err, c.ct, c.reason)
		assertDisallowed(t, derr, c.ct, c.reason)
	}
	if n := spy.unmarshal.Load(); n != 1 {
		t.Errorf("spy decoded %d times, want once (the accepted Decode)", n)
	}
	if err := r.Check(ContentTypeJSON, []string{"nosuch"}); !errors.Is(err, ErrUnknownSerializer) {
		t.Errorf("unknown accept name: %v", err)
	}
}
