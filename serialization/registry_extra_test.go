package serialization

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDecodeIntoStringAndBytes proves that text and binary bodies, empty or
// not, decode into a *string and a *[]byte whatever the content type gives
// back (a string for text/plain, bytes for application/data), so an empty
// text message does not fail (and get requeued forever).
func TestDecodeIntoStringAndBytes(t *testing.T) {
	cases := []struct {
		body     string
		ct, ce   string
		wantText string
	}{
		{"", "text/plain", "utf-8", ""},
		{"hello", "text/plain", "utf-8", "hello"},
		{"", "application/data", "binary", ""},
		{"\x00\x01", "application/data", "binary", "\x00\x01"},
		{"hé", "", "", "hé"},
	}
	for _, c := range cases {
		var s string
		if err := DecodeInto([]byte(c.body), c.ct, c.ce, nil, &s); err != nil {
			t.Errorf("%q as %s into *string: %v", c.body, c.ct, err)
		} else if s != c.wantText {
			t.Errorf("%q as %s into *string: got %q", c.body, c.ct, s)
		}
		var b []byte
		if err := DecodeInto([]byte(c.body), c.ct, c.ce, nil, &b); err != nil {
			t.Errorf("%q as %s into *[]byte: %v", c.body, c.ct, err)
		} else if string(b) != c.wantText {
			t.Errorf("%q as %s into *[]byte: got %q", c.body, c.ct, b)
		}
	}
	var n int
	if err := DecodeInto([]byte("x"), "text/plain", "utf-8", nil, &n); err == nil {
		t.Error("text into *int: want an error")
	}
}

// Proves bodies with Python's NaN and Infinity (json.dumps writes them for
// float('nan') and float('inf'); Celery's `inspect conf` has one) decode
// into an any, a map[string]any and a []any as json.Number tokens, and that
// a typed target that cannot hold them gets an error saying why, not a
// bare syntax error.
func TestDecodeIntoPythonNaNAndInfinity(t *testing.T) {
	r := NewRegistry()
	body := []byte(`{"max_retries": Infinity, "ratio": NaN, "low": -Infinity, "n": 1}`)
	var m map[string]any
	if err := r.DecodeInto(body, "application/json", "utf-8", nil, &m); err != nil {
		t.Fatal(err)
	}
	if m["max_retries"] != json.Number("Infinity") || m["ratio"] != json.Number("NaN") || m["low"] != json.Number("-Infinity") || m["n"] != json.Number("1") {
		t.Errorf("map: %#v", m)
	}
	var a any
	if err := r.DecodeInto(body, "application/json", "utf-8", nil, &a); err != nil || a.(map[string]any)["max_retries"] != json.Number("Infinity") {
		t.Errorf("any: %#v %v", a, err)
	}
	var l []any
	if err := r.DecodeInto([]byte(`[NaN, 2]`), "application/json", "utf-8", nil, &l); err != nil || len(l) != 2 || l[0] != json.Number("NaN") {
		t.Errorf("list: %#v %v", l, err)
	}
	if err := r.DecodeInto([]byte(`[1]`), "application/json", "utf-8", nil, &m); err == nil || !strings.Contains(err.Error(), "array") {
		t.Errorf("an array into a map: %v", err)
	}
	var typed struct {
		MaxRetries float64 `json:"max_retries"`
	}
	err := r.DecodeInto(body, "application/json", "utf-8", nil, &typed)
	if err == nil || !strings.Contains(err.Error(), "NaN or Infinity") {
		t.Errorf("typed target: %v", err)
	}
}
