package serialization

import "testing"

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
